//! Apple Push Notification service, over HTTP/2 with token-based authentication.
//!
//! The provider token is a JWT signed ES256 with the team's `.p8` key (header `kid` the key
//! id, claims `iss` the team id and `iat`); Apple wants it refreshed no more often than every
//! 20 minutes and refuses it after an hour, so one is kept for 50 minutes and minted again
//! when APNs answers `ExpiredProviderToken`.
//!
//! Send: `POST {endpoint}/3/device/{token}` over HTTP/2 (APNs accepts nothing else) with
//! `apns-topic` (the app's bundle id), `apns-push-type: alert`, `apns-priority: 10`,
//! `apns-expiration` and `apns-collapse-id`. Answers: 200 delivered; 410 `Unregistered` and
//! 400 `BadDeviceToken` / `DeviceTokenNotForTopic` mean the token is dead for this app; 429,
//! 500 and 503 are retried; other 4xx are messages APNs will never take.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::{Outcome, PushMessage, PushProvider, retry_after};

pub const PRODUCTION_ENDPOINT: &str = "https://api.push.apple.com";
pub const SANDBOX_ENDPOINT: &str = "https://api.sandbox.push.apple.com";

/// How long one provider token is used (Apple: refresh after 20 minutes at the earliest,
/// valid for 60).
const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);
/// How long APNs keeps trying to reach an offline device.
const EXPIRATION: i64 = 24 * 3600;

#[derive(Clone)]
pub struct ApnsConfig {
    /// The `.p8` signing key (PKCS#8 PEM).
    pub key_pem: String,
    /// The key's id (10 characters, from the Apple developer account).
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id.
    pub topic: String,
    /// [`PRODUCTION_ENDPOINT`], [`SANDBOX_ENDPOINT`], or a test server.
    pub endpoint: String,
    /// An extra CA to trust (PEM), for a proxy or a test server.
    pub ca_pem: Option<Vec<u8>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

pub struct Apns {
    config: ApnsConfig,
    key: EncodingKey,
    client: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    pub fn new(config: ApnsConfig) -> Result<Self, String> {
        let key = EncodingKey::from_ec_pem(config.key_pem.as_bytes())
            .map_err(|e| format!("APNs key: {e} (expected the .p8 file Apple issued)"))?;
        for (name, value, len) in [
            ("key id", &config.key_id, 10),
            ("team id", &config.team_id, 10),
        ] {
            if value.len() != len || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "APNs {name} {value:?}: expected {len} letters and digits"
                ));
            }
        }
        if config.topic.trim().is_empty() {
            return Err("APNs topic (the app's bundle id) is empty".into());
        }
        url::Url::parse(&config.endpoint)
            .map_err(|e| format!("APNs endpoint {:?}: {e}", config.endpoint))?;
        let mut builder = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(60));
        if let Some(ca) = &config.ca_pem {
            let cert = reqwest::Certificate::from_pem(ca).map_err(|e| format!("APNs CA: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            key,
            client,
            token: Mutex::new(None),
        })
    }

    async fn provider_token(&self, stale: Option<&str>) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
            && stale != Some(token.as_str())
        {
            return Ok(token.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.typ = None;
        header.kid = Some(self.config.key_id.clone());
        let token = jsonwebtoken::encode(
            &header,
            &Claims {
                iss: &self.config.team_id,
                iat: chrono::Utc::now().timestamp(),
            },
            &self.key,
        )
        .map_err(|e| Outcome::Rejected(format!("signing the APNs provider token: {e}")))?;
        *cached = Some((token.clone(), Instant::now() + TOKEN_LIFETIME));
        Ok(token)
    }

    fn payload(message: &PushMessage) -> serde_json::Value {
        let mut payload = json!({
            "aps": {
                "alert": {
                    "loc-key": message.loc_key,
                    "loc-args": message.loc_args,
                },
                "badge": message.badge,
                "sound": "default",
                "thread-id": message.collapse_key,
            }
        });
        for (key, value) in &message.data {
            payload[key] = json!(value);
        }
        payload
    }
}

/// `apns-collapse-id` is at most 64 bytes.
fn collapse_id(key: &str) -> &str {
    let mut end = key.len().min(64);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

#[async_trait::async_trait]
impl PushProvider for Apns {
    fn name(&self) -> &'static str {
        "apns"
    }

    async fn send(&self, token: &str, message: &PushMessage) -> Outcome {
        // Tokens are stored checked (hex), so the path cannot be bent by one.
        let url = format!(
            "{}/3/device/{token}",
            self.config.endpoint.trim_end_matches('/')
        );
        let payload = Self::payload(message);
        let mut refused: Option<String> = None;
        for _ in 0..2 {
            let jwt = match self.provider_token(refused.as_deref()).await {
                Ok(jwt) => jwt,
                Err(outcome) => return outcome,
            };
            let expiration = chrono::Utc::now().timestamp() + EXPIRATION;
            let response = match self
                .client
                .post(&url)
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", &self.config.topic)
                .header("apns-push-type", "alert")
                .header("apns-priority", "10")
                .header("apns-expiration", expiration.to_string())
                .header("apns-collapse-id", collapse_id(&message.collapse_key))
                .json(&payload)
                .send()
                .await
            {
                Ok(response) => response,
                Err(e) => {
                    return Outcome::Retry {
                        reason: format!("APNs: {e}"),
                        after: None,
                    };
                }
            };
            let status = response.status().as_u16();
            let after = retry_after(response.headers());
            if status == 200 {
                return Outcome::Delivered;
            }
            let body = response.bytes().await.unwrap_or_default();
            let reason = serde_json::from_slice::<serde_json::Value>(&body[..body.len().min(4096)])
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned))
                .unwrap_or_default();
            match (status, reason.as_str()) {
                (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
                    return Outcome::Unregistered(reason);
                }
                (403, "ExpiredProviderToken" | "InvalidProviderToken") if refused.is_none() => {
                    refused = Some(jwt);
                    continue;
                }
                (429 | 500 | 503, _) | (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                    return Outcome::Retry {
                        reason: format!("APNs answered {status} {reason}"),
                        after,
                    };
                }
                _ => return Outcome::Rejected(format!("APNs answered {status} {reason}")),
            }
        }
        Outcome::Retry {
            reason: "APNs refused two fresh provider tokens".into(),
            after: None,
        }
    }
}
