//! Dev-only tooling for Gatehouse: the local AWS emulator and its bootstrap from the SAM template,
//! dev signing keys and tokens, the local API Gateway, and the whole local stack. Never deployed.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bootstrap;
pub mod devkeys;
pub mod emulator;
pub mod gateway;
pub mod paths;
pub mod procs;
pub mod runtime_api;
pub mod stack;
pub mod streams;
pub mod template;
pub mod tools;
