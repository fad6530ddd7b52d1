//! What both sides of Switchyard's wire agree on, and the parsers of what crosses it.
//!
//! The router and the subgraph kit both depend on this crate, so a header name, a context key
//! or the shard hash is written once. Every parser of untrusted input the router owns that
//! needs nothing of apollo-router lives here too, where `fuzz/` can reach it without building
//! apollo-router: the HTTP request reader, client-address derivation, cache-key derivation, the
//! persisted-query manifest and the retired-versions file. And what every process decides
//! about where it runs: development or production, and the secrets it was given.

pub mod cache_key;
pub mod client_ip;
pub mod deployment;
pub mod entity_hints;
pub mod hash;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod manifest;
pub mod names;
pub mod request;
pub mod retired;
