//! Dev-only tooling for Gatehouse: the local AWS emulator and its bootstrap from the SAM template,
//! dev signing keys and tokens (in each identity provider's claim shape), the local API Gateway,
//! the local OpenID Connect provider, the whole local stack, and the prompt screen's training and
//! evaluation. Never deployed.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bootstrap;
pub mod devkeys;
pub mod emulator;
pub mod gateway;
pub mod oidc;
pub mod paths;
pub mod ports;
pub mod presets;
pub mod procs;
pub mod runtime_api;
pub mod screen;
pub mod stack;
pub mod streams;
pub mod template;
pub mod tools;
