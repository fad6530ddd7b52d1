//! The accounts subgraph's settings, read once at start-up: how tokens are signed and
//! rotated, how many password checks an account gets, and which identity providers apps can
//! sign in with.

use switchyard_kit::deployment::Environment;

use crate::attempts::SignInPolicy;
use crate::providers::Providers;
use crate::tokens::TokenConfig;

#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub tokens: TokenConfig,
    pub sign_in: SignInPolicy,
    /// Sign in with Apple / Google; none configured by default.
    pub providers: Providers,
}

impl AccountsConfig {
    /// The development signing key and the default policy (tests, SDL export, `switchyard dev`
    /// without settings).
    pub fn development() -> Self {
        Self {
            tokens: TokenConfig::development(),
            sign_in: SignInPolicy::default(),
            providers: Providers::default(),
        }
    }

    /// From the environment (see [`TokenConfig::from_env`], [`SignInPolicy::from_env`] and
    /// [`Providers::from_env`]).
    pub fn from_env(environment: Environment) -> Result<Self, String> {
        Ok(Self {
            tokens: TokenConfig::from_env(environment)?,
            sign_in: SignInPolicy::from_env()?,
            providers: Providers::from_env()?,
        })
    }
}
