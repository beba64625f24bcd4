//! Helpers of the workspace tests.
#![forbid(unsafe_code)]

pub mod ddb;
