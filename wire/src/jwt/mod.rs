//! Verifying JSON Web Tokens against static keys and JSON Web Key Sets: the router's access
//! tokens (`jwt_auth`) and the accounts subgraph's Apple and Google ID tokens share it, so
//! both take the same care: the key decides the algorithm (never the token), `none` is never
//! accepted, a JWKS is bounded in bytes and keys, and an unknown key id refreshes the set at
//! most once per `min_refresh_gap`.
//!
//! Behind the `jwt` feature, so the fuzz targets build this crate without a TLS stack.

pub mod keys;
pub mod verify;

pub use keys::{JwksSource, Key, KeyStore, StaticKey};
pub use verify::{AuthError, Verified, Verifier, VerifierOptions};
