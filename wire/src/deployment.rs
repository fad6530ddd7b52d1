//! Where a process runs (development or production) and the secrets it is given.
//!
//! The repository publishes development secrets so `switchyard dev` works with nothing set up.
//! Every process that could trust or sign with one of them decides here whether it may: only
//! in development, which is what `SWITCHYARD_ENV=development` says, or what an unset
//! `SWITCHYARD_ENV` means for a process that listens on a loopback address only. Anything else,
//! including a typo in `SWITCHYARD_ENV`, is production: the safe side.
//!
//! Secrets come from `NAME` or from the file `NAME_FILE` names (how Kubernetes mounts a
//! Secret), never both, and are held in [`Secret`], whose `Debug` does not print them.

use std::fmt;
use std::net::SocketAddr;

/// The HMAC key the development configs sign and trust access tokens with. Published here, so
/// worthless as a secret: refused outside development.
pub const DEV_HMAC_SECRET: &str = "switchyard-dev-only-hmac-secret-do-not-use-in-prod";
/// The router/subgraph shared secret of the development configs.
pub const DEV_ROUTER_SECRET: &str = "switchyard-dev-router-secret";
/// The response cache's invalidation token in the development config.
pub const DEV_CACHE_ADMIN_TOKEN: &str = "switchyard-dev-cache-admin-token";
/// Issuer and audience of development access tokens.
pub const DEV_ISSUER: &str = "https://auth.switchyard.local";
pub const DEV_AUDIENCE: &str = "switchyard-api";

/// The variable that names the environment.
pub const ENV_VAR: &str = "SWITCHYARD_ENV";

/// What a process may trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The published development secrets are allowed.
    Development,
    /// They are refused at start-up.
    Production,
}

/// Why the environment or a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    #[error("{ENV_VAR} must be `development` or `production`, got {0:?}")]
    UnknownEnvironment(String),
    #[error("set one of {name} and {name}_FILE, not both")]
    BothSet { name: String },
    #[error("{name}_FILE: cannot read {path}: {reason}")]
    Unreadable {
        name: String,
        path: String,
        reason: String,
    },
    #[error("{name}_FILE: {path} is not UTF-8 text")]
    NotText { name: String, path: String },
}

impl Environment {
    /// From `SWITCHYARD_ENV` (`development` or `production`); when it is unset or empty,
    /// development only if every address the process listens on is a loopback address.
    pub fn resolve(
        value: Option<&str>,
        listens_on: &[SocketAddr],
    ) -> Result<Self, DeploymentError> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            Some("development") => Ok(Self::Development),
            Some("production") => Ok(Self::Production),
            Some(other) => Err(DeploymentError::UnknownEnvironment(other.to_owned())),
            None if !listens_on.is_empty() && listens_on.iter().all(|a| a.ip().is_loopback()) => {
                Ok(Self::Development)
            }
            None => Ok(Self::Production),
        }
    }

    /// [`Environment::resolve`] with this process's `SWITCHYARD_ENV`.
    pub fn from_env(listens_on: &[SocketAddr]) -> Result<Self, DeploymentError> {
        Self::resolve(std::env::var(ENV_VAR).ok().as_deref(), listens_on)
    }

    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

/// A secret value. `Debug` and `Display` print its length only, so a config struct holding
/// one can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// One of the secrets this repository publishes for development.
    pub fn is_published(&self) -> bool {
        [DEV_HMAC_SECRET, DEV_ROUTER_SECRET, DEV_CACHE_ADMIN_TOKEN].contains(&self.0.as_str())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The secret in `name` or in the file `name_FILE` names; `None` when neither is set (empty
/// counts as unset). One trailing newline of a file is dropped (editors and `kubectl create
/// secret --from-file` leave one); anything else is kept as written.
pub fn secret_from_env(name: &str) -> Result<Option<Secret>, DeploymentError> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    secret_from(name, var(name), var(&format!("{name}_FILE")))
}

/// [`secret_from_env`] over given values (tests, and callers with their own environment).
pub fn secret_from(
    name: &str,
    value: Option<String>,
    file: Option<String>,
) -> Result<Option<Secret>, DeploymentError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(DeploymentError::BothSet {
            name: name.to_owned(),
        }),
        (Some(value), None) => Ok(Some(Secret(value))),
        (None, Some(path)) => {
            let bytes = std::fs::read(&path).map_err(|e| DeploymentError::Unreadable {
                name: name.to_owned(),
                path: path.clone(),
                reason: e.kind().to_string(),
            })?;
            let mut text = String::from_utf8(bytes).map_err(|_| DeploymentError::NotText {
                name: name.to_owned(),
                path: path.clone(),
            })?;
            let kept = without_file_newline(&text).len();
            text.truncate(kept);
            Ok(Some(Secret(text)).filter(|s| !s.0.is_empty()))
        }
        (None, None) => Ok(None),
    }
}

/// `value` without the one trailing newline (`\n` or `\r\n`) a secret file usually ends
/// with. The router applies it to secrets apollo-router read with `${file.PATH}`, so both ends
/// of a shared secret read a mounted file the same way.
pub fn without_file_newline(value: &str) -> &str {
    value
        .strip_suffix("\r\n")
        .or_else(|| value.strip_suffix('\n'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unset_environment_is_development_only_on_loopback() {
        let loopback = [addr("127.0.0.1:4000"), addr("[::1]:4001")];
        assert_eq!(
            Environment::resolve(None, &loopback),
            Ok(Environment::Development)
        );
        assert_eq!(
            Environment::resolve(Some(" "), &loopback),
            Ok(Environment::Development)
        );
        for public in ["0.0.0.0:4000", "[::]:4000", "10.0.0.5:4000"] {
            assert_eq!(
                Environment::resolve(None, &[loopback[0], addr(public)]),
                Ok(Environment::Production),
                "{public}"
            );
        }
        assert_eq!(Environment::resolve(None, &[]), Ok(Environment::Production));
    }

    #[test]
    fn an_explicit_environment_wins_and_a_typo_is_an_error() {
        let public = [addr("0.0.0.0:4000")];
        assert_eq!(
            Environment::resolve(Some("development"), &public),
            Ok(Environment::Development)
        );
        assert_eq!(
            Environment::resolve(Some("production"), &[addr("127.0.0.1:1")]),
            Ok(Environment::Production)
        );
        assert_eq!(
            Environment::resolve(Some("prod"), &public),
            Err(DeploymentError::UnknownEnvironment("prod".into()))
        );
    }

    #[test]
    fn secrets_come_from_a_value_or_a_file_never_both() {
        let dir = std::env::temp_dir().join(format!("switchyard-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "s3cret value\n").unwrap();
        let path = file.display().to_string();
        assert_eq!(
            secret_from("K", None, Some(path.clone())).unwrap(),
            Some(Secret::new("s3cret value"))
        );
        std::fs::write(&file, "line one\nline two\r\n").unwrap();
        assert_eq!(
            secret_from("K", None, Some(path.clone()))
                .unwrap()
                .unwrap()
                .expose(),
            "line one\nline two"
        );
        assert_eq!(
            secret_from("K", Some("v".into()), None).unwrap(),
            Some(Secret::new("v"))
        );
        assert_eq!(
            secret_from("K", Some("v".into()), Some(path.clone())),
            Err(DeploymentError::BothSet { name: "K".into() })
        );
        let missing = dir.join("missing").display().to_string();
        let error = secret_from("K", None, Some(missing.clone())).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("K_FILE: cannot read {missing}: entity not found")
        );
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            secret_from("K", None, Some(path)),
            Err(DeploymentError::NotText { .. })
        ));
        assert_eq!(secret_from("K", None, None), Ok(None));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new(DEV_HMAC_SECRET);
        assert_eq!(
            format!("{secret:?} {secret}"),
            "Secret(<50 bytes>) Secret(<50 bytes>)"
        );
        assert!(secret.is_published());
        assert!(Secret::new(DEV_ROUTER_SECRET).is_published());
        assert!(Secret::new(DEV_CACHE_ADMIN_TOKEN).is_published());
        assert!(!Secret::new("a real secret of some length").is_published());
    }
}
