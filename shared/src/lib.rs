//! Gatehouse: the logic behind the authorizer and predict Lambda functions.
//!
//! Lambda event types appear only in the edge modules (`authorizer`, and the functions' own
//! handlers); everything else is plain Rust, testable without AWS.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod authorizer;
pub mod aws;
pub mod bedrock;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod predict;
pub mod ratelimit;
pub mod sanitize;
pub mod screen;
pub mod secrets;
pub mod setup;
pub mod text;
