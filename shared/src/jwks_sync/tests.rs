//! Test-only module.
