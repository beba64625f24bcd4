//! Thin edge: event → shared decision → simple response, with one log line per decision.
use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use gatehouse::audit::Decision;
use gatehouse::auth::JwksSource;
use gatehouse::authorizer::{Gate, auth_request, simple_response};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

pub async fn handle<S: JwksSource>(
    gate: &Gate<S>,
    event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>,
) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse<HashMap<String, Value>>, Error> {
    let started = std::time::Instant::now();
    let req = auth_request(&event.payload);
    let decision = gate.decide(&req).await;
    let principal = decision.principal.as_ref();
    tracing::info!(
        request_id = req.request_id,
        lambda_request_id = %event.context.request_id,
        route_key = req.route_key,
        source_ip = req.source_ip.unwrap_or_default(),
        principal = principal.map(|p| p.key()).unwrap_or_default(),
        sub = principal.map(|p| p.sub.as_str()).unwrap_or_default(),
        token_id = principal.map(|p| p.token_id.as_str()).unwrap_or_default(),
        decision = if decision.allowed { "allow" } else { "deny" },
        reason = decision.reason,
        detail = decision.detail.as_str(),
        ip_blocked = decision.ip_blocked,
        policy_ids = ?decision.policy_ids,
        // As predict's: where the decision's audit record sits (denials only; predict audits
        // the requests the authorizer allows).
        audit_segment = decision.audit.as_ref().map(|a| a.segment.as_str()).unwrap_or_default(),
        audit_seq = decision.audit.as_ref().map_or(0, |a| a.seq),
        "authorizer decision"
    );
    let metric = if decision.allowed {
        Decision::Allowed
    } else {
        Decision::Denied
    };
    gatehouse::metrics::emit("authorizer", metric.metric_name(), started.elapsed());
    Ok(simple_response(&decision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use gatehouse::auth::{CacheConfig, JwksVersions, KeyCache, SourceError, TokenPolicy};
    use gatehouse::clock::SystemClock;
    use gatehouse::config::AuthFailureConfig;
    use gatehouse::policy::PolicyStore;
    use gatehouse::ratelimit::guard::FailureGuard;
    use gatehouse::ratelimit::{MemoryCounter, RateLimiter};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    const SECRET: &[u8] = b"test-hmac-key-of-at-least-32-bytes!!";

    struct StaticJwks;

    #[async_trait::async_trait]
    impl JwksSource for StaticJwks {
        async fn fetch(&self) -> Result<JwksVersions, SourceError> {
            use base64::Engine;
            let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
            let jwks = format!(
                r#"{{"keys":[{{"kty":"oct","kid":"k1","alg":"HS256","use":"sig","k":"{k}"}}]}}"#
            );
            Ok(JwksVersions {
                current: jwks.into(),
                previous: None,
            })
        }
    }

    async fn gate() -> Gate<StaticJwks> {
        let cache = CacheConfig {
            refresh_ttl: Duration::from_secs(300),
            max_staleness: Duration::from_secs(3600),
            unknown_kid_min_interval: Duration::from_secs(30),
        };
        Gate {
            keys: KeyCache::load(StaticJwks, cache, Arc::new(SystemClock))
                .await
                .unwrap(),
            policy: PolicyStore::embedded().unwrap(),
            token_policy: TokenPolicy::new("https://issuer.test/", "gatehouse-api"),
            failures: FailureGuard::new(
                RateLimiter::new(Box::new(MemoryCounter::default())),
                AuthFailureConfig {
                    limit: 20,
                    window: Duration::from_secs(300),
                },
            ),
            audit: gatehouse::setup::in_memory_audit("authorizer", std::time::SystemTime::now())
                .unwrap(),
            clock: Arc::new(SystemClock),
        }
    }

    fn token(roles: &[&str]) -> String {
        let now = gatehouse::clock::unix_secs(std::time::SystemTime::now());
        let claims = serde_json::json!({"iss": "https://issuer.test/", "aud": "gatehouse-api", "sub": "alice",
            "roles": roles, "iat": now, "exp": now + 300, "jti": "jti-1"});
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    async fn decide(
        token: &str,
    ) -> ApiGatewayV2CustomAuthorizerSimpleResponse<HashMap<String, Value>> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/authorizer-v2-request.json"
        ))
        .unwrap()
        .replace("TOKEN", token);
        let payload: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_str(&text).unwrap();
        let event = LambdaEvent::new(payload, lambda_runtime::Context::default());
        handle(&gate().await, event).await.unwrap()
    }

    #[tokio::test]
    async fn fixture_with_operator_token_is_allowed_with_context() {
        let tok = token(&["ai_operator"]);
        let r = decide(&tok).await;
        assert!(r.is_authorized);
        assert_eq!(r.context["sub"], "alice");
        assert_eq!(r.context["roles"], "ai_operator");
        assert_eq!(r.context["token_id"], "jti-1");
        assert_eq!(r.context["iss"], "https://issuer.test/");
        assert!(r.context["exp"].is_u64(), "exp travels as a number");
        let signature = tok.rsplit('.').next().unwrap();
        assert!(
            !r.context
                .values()
                .any(|v| v.to_string().contains(signature)),
            "no token in context"
        );
    }

    #[tokio::test]
    async fn fixture_with_wrong_role_or_garbage_token_is_a_clean_deny() {
        assert!(!decide(&token(&["auditor"])).await.is_authorized);
        assert!(!decide("not-a-jwt").await.is_authorized);
    }

    #[tokio::test]
    async fn a_denial_knows_where_its_audit_record_sits() {
        let g = gate().await;
        let req = gatehouse::authorizer::AuthRequest {
            authorization: Some("Bearer not-a-jwt"),
            route_key: "POST /v1/predict",
            request_id: "rid-1",
            source_ip: Some("192.0.2.1"),
            user_agent: None,
        };
        let first = g.decide(&req).await;
        let second = g.decide(&req).await;
        let (a, b) = (first.audit.unwrap(), second.audit.unwrap());
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.segment, b.segment);
        let allowed = g
            .decide(&gatehouse::authorizer::AuthRequest {
                authorization: Some(&format!("Bearer {}", token(&["ai_operator"]))),
                ..req
            })
            .await;
        assert!(allowed.allowed && allowed.audit.is_none());
    }
}
