//! Which push providers the push worker uses, read once at start-up from the environment.
//!
//! | Variable | Meaning |
//! |---|---|
//! | `SWITCHYARD_FCM_SERVICE_ACCOUNT` (or `_FILE`) | the service account key JSON; enables FCM |
//! | `SWITCHYARD_FCM_ENDPOINT` | default `https://fcm.googleapis.com` |
//! | `SWITCHYARD_APNS_KEY` (or `_FILE`) | the `.p8` key; enables APNs with the next three |
//! | `SWITCHYARD_APNS_KEY_ID`, `SWITCHYARD_APNS_TEAM_ID`, `SWITCHYARD_APNS_TOPIC` | key id, team id, bundle id |
//! | `SWITCHYARD_APNS_ENDPOINT` | default production; `https://api.sandbox.push.apple.com` for development builds |
//! | `SWITCHYARD_APNS_CA_FILE` | an extra CA to trust (a proxy) |
//! | `SWITCHYARD_PUSH_LOG_ONLY` | `true`: the log provider for platforms without one, in production too |
//!
//! A platform without a provider gets the log provider in development. In production that
//! would drop every push silently, so it is refused unless `SWITCHYARD_PUSH_LOG_ONLY=true`
//! says it is meant.

use std::sync::Arc;

use switchyard_kit::deployment::{self, Environment};

use super::apns::{self, Apns, ApnsConfig};
use super::fcm::{self, Fcm, ServiceAccount};
use super::log::LogProvider;
use super::{Providers, PushProvider};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn secret(name: &str) -> Result<Option<String>, String> {
    Ok(deployment::secret_from_env(name)
        .map_err(|e| e.to_string())?
        .map(|s| s.expose().to_owned()))
}

/// The providers the environment configures (see the module docs).
pub fn providers_from_env(environment: Environment) -> Result<Providers, String> {
    let log_only = match var("SWITCHYARD_PUSH_LOG_ONLY").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!(
                "SWITCHYARD_PUSH_LOG_ONLY must be `true` or `false`, got {other:?}"
            ));
        }
    };
    let android: Option<Arc<dyn PushProvider>> = match secret("SWITCHYARD_FCM_SERVICE_ACCOUNT")? {
        Some(json) => {
            let account = ServiceAccount::parse(&json)?;
            let endpoint =
                var("SWITCHYARD_FCM_ENDPOINT").unwrap_or_else(|| fcm::DEFAULT_ENDPOINT.into());
            Some(Arc::new(Fcm::new(account, &endpoint)?))
        }
        None => None,
    };
    let ios: Option<Arc<dyn PushProvider>> = match secret("SWITCHYARD_APNS_KEY")? {
        Some(key_pem) => {
            let required = |name: &str| {
                var(name).ok_or_else(|| format!("{name} is required with SWITCHYARD_APNS_KEY"))
            };
            let ca_pem = match var("SWITCHYARD_APNS_CA_FILE") {
                Some(path) => Some(
                    std::fs::read(&path)
                        .map_err(|e| format!("SWITCHYARD_APNS_CA_FILE {path}: {e}"))?,
                ),
                None => None,
            };
            Some(Arc::new(Apns::new(ApnsConfig {
                key_pem,
                key_id: required("SWITCHYARD_APNS_KEY_ID")?,
                team_id: required("SWITCHYARD_APNS_TEAM_ID")?,
                topic: required("SWITCHYARD_APNS_TOPIC")?,
                endpoint: var("SWITCHYARD_APNS_ENDPOINT")
                    .unwrap_or_else(|| apns::PRODUCTION_ENDPOINT.into()),
                ca_pem,
            })?))
        }
        None => {
            for name in [
                "SWITCHYARD_APNS_KEY_ID",
                "SWITCHYARD_APNS_TEAM_ID",
                "SWITCHYARD_APNS_TOPIC",
            ] {
                if var(name).is_some() {
                    return Err(format!(
                        "{name} is set but SWITCHYARD_APNS_KEY (or _FILE) is not"
                    ));
                }
            }
            None
        }
    };
    let fallback = |platform: &str, provider: Option<Arc<dyn PushProvider>>, stands_in_for| {
        match provider {
            Some(provider) => Ok(provider),
            None if environment.is_production() && !log_only => Err(format!(
                "no push provider for {platform} in production (configure it, or set SWITCHYARD_PUSH_LOG_ONLY=true to log pushes instead of sending them)"
            )),
            None => Ok(Arc::new(LogProvider::new(stands_in_for)) as Arc<dyn PushProvider>),
        }
    };
    Ok(Providers {
        ios: fallback("iOS (APNs)", ios, "apns")?,
        android: fallback("Android (FCM)", android, "fcm")?,
    })
}
