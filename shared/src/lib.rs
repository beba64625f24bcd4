//! Gatehouse: the logic behind the Lambda functions.
//!
//! Each function enables the cargo feature named after it and links only those modules
//! (see `Cargo.toml` `[features]`): the authorizer has no prompt screen and no model client,
//! predict has no JWT verifier. The modules without a feature gate are the small core every
//! function shares. Lambda event types appear only in the edge modules (`authorizer`, and the
//! functions' own handlers); everything else is plain Rust, testable without AWS.
#![forbid(unsafe_code)]

// Core: every function.
pub mod aws;
pub mod clock;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod principal;
pub mod secrets;
pub mod text;

// Building blocks.
#[cfg(feature = "audit-core")]
pub mod audit;
#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "policy")]
pub mod policy;
#[cfg(feature = "ratelimit")]
pub mod ratelimit;
// The sanitizer and the screen are a crate of their own (`shared/screen`), compiled for speed.
#[cfg(feature = "screen")]
pub use gatehouse_screen as screen;
#[cfg(feature = "screen")]
pub use gatehouse_screen::sanitize;

// The authorizer's decision (the edge of API Gateway's authorizer event).
#[cfg(feature = "authorizer")]
pub mod authorizer;

// The HTTP API layer (errors and their one problem+json mapping): predict and the audit reader.
#[cfg(any(feature = "predict", feature = "audit-reader"))]
pub mod error;
#[cfg(any(feature = "predict", feature = "audit-reader"))]
pub mod http;

// predict: request validation and the pipeline.
#[cfg(feature = "predict")]
pub mod api;
#[cfg(feature = "predict")]
pub mod guardrail;
#[cfg(feature = "predict")]
pub mod model;
// The Amazon Bedrock adapters of predict's model and screen traits.
#[cfg(all(feature = "predict", feature = "bedrock"))]
pub mod bedrock;
#[cfg(feature = "predict")]
pub mod predict;
#[cfg(feature = "predict")]
pub mod routes;

// jwks-sync: the identity provider's JWKS into the JWKS secret.
#[cfg(feature = "jwks-sync")]
pub mod jwks_sync;

// Cold-start wiring of each function.
pub mod setup;
