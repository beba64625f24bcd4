//! Structured JSON logs for CloudWatch. Initialised once in each function's `main`.
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Runtime crates that log whole events (Authorization header, prompt) at debug/trace: capped at
/// info whatever `RUST_LOG` says, so raising the level never puts a token or a prompt in a log.
const CAPPED: &[&str] = &[
    "lambda_runtime=info",
    "lambda_http=info",
    "lambda_runtime_api_client=info",
];

pub fn filter(spec: Option<&str>) -> EnvFilter {
    let mut filter = spec
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for d in CAPPED {
        if let Ok(d) = d.parse::<Directive>() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

pub fn init() {
    let spec = std::env::var("RUST_LOG").ok();
    // `try_init` so a second call (tests) is harmless.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter(spec.as_deref()))
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtime_event_dumps_stay_off_even_at_trace() {
        let f = super::filter(Some("trace")).to_string();
        assert!(f.contains("lambda_runtime=info"), "{f}");
        assert!(f.contains("lambda_http=info"), "{f}");
    }
}
