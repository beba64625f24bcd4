//! The screen crate's one error type: what can go wrong while building a `Screener`.

/// Why a `Screener` could not be built (at cold start: the function fails its init).
#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error("invalid rule set: {0}")]
    Rules(String),
    #[error("invalid model weights: {0}")]
    Model(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}
