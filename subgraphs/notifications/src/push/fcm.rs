//! Firebase Cloud Messaging, HTTP v1 API.
//!
//! Authentication is a Google service account: a JWT signed RS256 with the account's private
//! key (`iss` the account's email, `scope` firebase.messaging, `aud` its `token_uri`) is
//! exchanged at `token_uri` for an OAuth 2 access token (grant type `jwt-bearer`), which is
//! reused until a minute before it expires and refreshed once when FCM answers 401.
//!
//! Send: `POST {endpoint}/v1/projects/{project_id}/messages:send` with `{"message": ...}`.
//! Answers: 200 delivered; `UNREGISTERED` (404) and `SENDER_ID_MISMATCH` (403) mean the token
//! is dead here; `INVALID_ARGUMENT` (400) is a message FCM will never take; 429
//! (`QUOTA_EXCEEDED`), 500 and 503 are retried after `Retry-After`.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use super::{Outcome, PushMessage, PushProvider, retry_after};

/// The OAuth scope FCM sends need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Google's API host.
pub const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";

/// The fields of a service account key file (JSON, from the Google Cloud console) FCM needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Where access tokens are minted (`https://oauth2.googleapis.com/token`).
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccount {
    /// Reads a key file; names what is wrong with it.
    pub fn parse(json: &str) -> Result<Self, String> {
        let account: Self =
            serde_json::from_str(json).map_err(|e| format!("FCM service account: {e}"))?;
        for (name, value) in [
            ("project_id", &account.project_id),
            ("client_email", &account.client_email),
            ("token_uri", &account.token_uri),
        ] {
            if value.trim().is_empty() {
                return Err(format!("FCM service account: `{name}` is empty"));
            }
        }
        url::Url::parse(&account.token_uri)
            .map_err(|e| format!("FCM service account: `token_uri`: {e}"))?;
        Ok(account)
    }
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    3600
}

pub struct Fcm {
    account: ServiceAccount,
    send_url: String,
    key: EncodingKey,
    client: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    pub fn new(account: ServiceAccount, endpoint: &str) -> Result<Self, String> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("FCM service account `private_key`: {e}"))?;
        let endpoint = endpoint.trim_end_matches('/');
        url::Url::parse(endpoint).map_err(|e| format!("FCM endpoint {endpoint:?}: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            send_url: format!(
                "{endpoint}/v1/projects/{}/messages:send",
                account.project_id
            ),
            account,
            key,
            client,
            token: Mutex::new(None),
        })
    }

    /// A valid access token, minted when there is none or `stale` is the one just refused.
    async fn access_token(&self, stale: Option<&str>) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
            && stale != Some(token.as_str())
        {
            return Ok(token.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let assertion = jsonwebtoken::encode(
            &header,
            &Assertion {
                iss: &self.account.client_email,
                scope: SCOPE,
                aud: &self.account.token_uri,
                iat: now,
                exp: now + 3600,
            },
            &self.key,
        )
        .map_err(|e| Outcome::Rejected(format!("signing the FCM assertion: {e}")))?;
        let response = self
            .client
            .post(&self.account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| retry(format!("FCM token endpoint: {e}"), None))?;
        let status = response.status();
        if !status.is_success() {
            let after = retry_after(response.headers());
            let body = bounded_text(response).await;
            // A refused credential is a configuration fault that a retry will not fix, but
            // the pushes are kept (retried, then dead-lettered) rather than dropped.
            return Err(retry(
                format!("FCM token endpoint answered {status}: {body}"),
                after,
            ));
        }
        let minted: TokenResponse = response
            .json()
            .await
            .map_err(|e| retry(format!("FCM token endpoint: {e}"), None))?;
        let lifetime = Duration::from_secs(minted.expires_in.saturating_sub(60).max(1));
        *cached = Some((minted.access_token.clone(), Instant::now() + lifetime));
        Ok(minted.access_token)
    }

    fn body(token: &str, message: &PushMessage) -> serde_json::Value {
        json!({
            "message": {
                "token": token,
                "data": message.data,
                "android": {
                    "collapse_key": message.collapse_key,
                    "priority": "HIGH",
                    "notification": {
                        "body_loc_key": message.loc_key,
                        "body_loc_args": message.loc_args,
                        "tag": message.collapse_key,
                        "notification_count": message.badge,
                    },
                },
            }
        })
    }
}

fn retry(reason: String, after: Option<Duration>) -> Outcome {
    Outcome::Retry { reason, after }
}

/// At most 4 KiB of an error body, for the log.
async fn bounded_text(response: reqwest::Response) -> String {
    let bytes = response.bytes().await.unwrap_or_default();
    String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned()
}

/// The `errorCode` of an FCM error answer (`UNREGISTERED`, ...), else its `status`.
fn error_code(body: &str) -> String {
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let error = &parsed["error"];
    error["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| d["errorCode"].as_str())
        .or_else(|| error["status"].as_str())
        .unwrap_or("")
        .to_owned()
}

#[async_trait::async_trait]
impl PushProvider for Fcm {
    fn name(&self) -> &'static str {
        "fcm"
    }

    async fn send(&self, token: &str, message: &PushMessage) -> Outcome {
        let body = Self::body(token, message);
        let mut refused: Option<String> = None;
        for _ in 0..2 {
            let access = match self.access_token(refused.as_deref()).await {
                Ok(access) => access,
                Err(outcome) => return outcome,
            };
            let response = match self
                .client
                .post(&self.send_url)
                .bearer_auth(&access)
                .json(&body)
                .send()
                .await
            {
                Ok(response) => response,
                Err(e) => return retry(format!("FCM: {e}"), None),
            };
            let status = response.status().as_u16();
            let after = retry_after(response.headers());
            if status == 200 {
                return Outcome::Delivered;
            }
            let text = bounded_text(response).await;
            let code = error_code(&text);
            match (status, code.as_str()) {
                (_, "UNREGISTERED") | (404, _) => return Outcome::Unregistered(code),
                (_, "SENDER_ID_MISMATCH") => return Outcome::Unregistered(code),
                // The access token expired early or was revoked: mint one and try once more.
                (401, _) if refused.is_none() => {
                    refused = Some(access);
                    continue;
                }
                (429 | 500 | 502 | 503 | 504, _) => {
                    return retry(format!("FCM answered {status} {code}"), after);
                }
                (401 | 403, _) => {
                    return retry(format!("FCM answered {status} {code}: {text}"), after);
                }
                _ => return Outcome::Rejected(format!("FCM answered {status} {code}: {text}")),
            }
        }
        retry("FCM refused two fresh access tokens".into(), None)
    }
}
