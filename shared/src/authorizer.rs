//! The authorizer's decision: token → principal → Cedar route check. A deny is a clean answer
//! (`isAuthorized: false`, which API Gateway turns into 403), never a function error.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde_json::Value;

use crate::audit::{AuditEvent, AuditLog, Decision, RecordRef};
use crate::auth::{AuthError, JwksSource, KeyCache, TokenPolicy};
use crate::clock::Clock;
use crate::policy::PolicyStore;
use crate::principal::{Principal, context_of};
use crate::ratelimit::guard::FailureGuard;

pub struct Gate<S: JwksSource> {
    pub keys: KeyCache<S>,
    pub policy: PolicyStore,
    pub token_policy: TokenPolicy,
    pub failures: FailureGuard,
    pub audit: AuditLog,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug)]
pub struct GateDecision {
    pub allowed: bool,
    /// The caller: on every allow, and on a deny whenever the signature verified and the token
    /// named a subject (`crate::auth::AuthFailure`).
    pub principal: Option<Principal>,
    /// Stable reason code (`allowed`, `expired`, `invalid_claim`, `forbidden_route`, ...).
    pub reason: &'static str,
    /// The failing check in words: which claim, which expectation (never the token, a claim
    /// value from it, or a secret). Empty on an allow.
    pub detail: String,
    pub policy_ids: Vec<String>,
    /// The token itself failed verification (what the per-IP guard counts).
    pub credential_failure: bool,
    /// The source IP was over its failed-verification limit when this failure came in.
    pub ip_blocked: bool,
    /// Where the denial's audit record sits (segment, seq), for the log line; `None` for an
    /// allow (predict audits it) or when the audit write failed.
    pub audit: Option<RecordRef>,
}

impl GateDecision {
    fn denied(error: &AuthError, principal: Option<Principal>) -> Self {
        Self {
            allowed: false,
            principal,
            reason: error.reason(),
            detail: error.to_string(),
            policy_ids: vec![],
            credential_failure: error.is_credential_failure(),
            ip_blocked: false,
            audit: None,
        }
    }
}

/// What the authorizer event gives the decision (never logged whole: it holds the token).
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    pub authorization: Option<&'a str>,
    pub route_key: &'a str,
    pub request_id: &'a str,
    pub source_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl<S: JwksSource> Gate<S> {
    /// Token → route scopes → route policy, then the per-IP guard on failures only. Every denial
    /// is audited; an allow costs no DynamoDB call (predict audits the request itself).
    ///
    /// The failed-auth guard never decides an answer: a token whose signature and claims verify
    /// is judged on its claims and route alone, whatever its source IP, and an invalid token is
    /// denied from every IP. So the answer API Gateway caches per (Authorization, routeKey) never
    /// depends on the caller's address, and clients sharing an address (carrier NAT, a company's
    /// egress) cannot lock each other out. What the guard does: count failed verifications per
    /// source IP, and once an IP is over the limit, stop counting (no further DynamoDB writes
    /// for it in that window) and mark its denials `ip_blocked` in the log and audit record.
    pub async fn decide(&self, req: &AuthRequest<'_>) -> GateDecision {
        let started = Instant::now();
        let now = self.clock.now();
        let mut d = self.evaluate(req.authorization, req.route_key).await;
        if d.allowed {
            return d;
        }
        if d.credential_failure {
            // API Gateway always sets sourceIp; without one, such requests share one bucket.
            let ip = req.source_ip.unwrap_or("unknown");
            if self.failures.is_blocked(ip, now) {
                d.ip_blocked = true;
            } else if let Err(e) = self.failures.record_failure(ip, now).await {
                // A failed count only weakens the stuffing guard; the denial stands either way.
                tracing::error!(request_id = req.request_id, error = %e, "auth-failure counter unavailable");
            }
        }
        let detail = if d.ip_blocked {
            format!("{}; source IP over its failed-verification limit", d.detail)
        } else {
            d.detail.clone()
        };
        let event = AuditEvent {
            request_id: req.request_id,
            time: now,
            principal: d.principal.as_ref(),
            route: req.route_key,
            model: None,
            decision: Decision::Denied,
            reason: d.reason,
            detail: Some(&detail),
            policy_ids: &d.policy_ids,
            screen: None,
            prompt: None,
            output: None,
            source_ip: req.source_ip,
            user_agent: req.user_agent,
            latency: started.elapsed(),
            extra: &[],
        };
        match self.audit.record(&event).await {
            Ok(at) => d.audit = Some(at),
            Err(e) => {
                tracing::error!(request_id = req.request_id, error = %e, "audit write of a denial failed");
            }
        }
        d
    }

    async fn evaluate(&self, authorization: Option<&str>, route_key: &str) -> GateDecision {
        let Some(header) = authorization else {
            return GateDecision::denied(&AuthError::MissingHeader, None);
        };
        let identity = match self.keys.verify(&self.token_policy, header).await {
            Ok(identity) => identity,
            Err(f) => return GateDecision::denied(&f.error, f.principal.map(|p| *p)),
        };
        if let Some(required) = self.token_policy.claims.required_scopes.get(route_key)
            && let Some(missing) = identity.missing_scope(required)
        {
            let e = AuthError::InsufficientScope {
                route: route_key.to_owned(),
                missing: missing.to_owned(),
            };
            return GateDecision::denied(&e, Some(identity.principal));
        }
        let principal = identity.principal;
        let d = self.policy.authorize_route(&principal, route_key);
        let detail = if d.allowed {
            String::new()
        } else {
            format!(
                "route {route_key:?}: no policy permits roles [{}]",
                principal.roles.join(", ")
            )
        };
        GateDecision {
            allowed: d.allowed,
            reason: if d.allowed {
                "allowed"
            } else {
                "forbidden_route"
            },
            detail,
            principal: Some(principal),
            policy_ids: d.policy_ids,
            credential_failure: false,
            ip_blocked: false,
            audit: None,
        }
    }
}

/// The header's value, whatever its case (API Gateway v2 lower-cases header names).
pub fn authorization_header(event: &ApiGatewayV2CustomAuthorizerV2Request) -> Option<&str> {
    event
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The decision's inputs from the event: header, route, request id, source IP, user agent.
pub fn auth_request(event: &ApiGatewayV2CustomAuthorizerV2Request) -> AuthRequest<'_> {
    let ctx = &event.request_context;
    AuthRequest {
        authorization: authorization_header(event),
        route_key: event.route_key.as_deref().unwrap_or_default(),
        request_id: ctx.request_id.as_deref().unwrap_or_default(),
        source_ip: ctx.http.source_ip.as_deref(),
        user_agent: ctx.http.user_agent.as_deref(),
    }
}

/// The simple response with a small, scalar-only context (`crate::principal::context_of`:
/// sub, iss, roles, tenant, token id, exp); never the token.
pub fn simple_response(
    d: &GateDecision,
) -> ApiGatewayV2CustomAuthorizerSimpleResponse<HashMap<String, Value>> {
    let context = match (d.allowed, &d.principal) {
        (true, Some(p)) => context_of(p),
        _ => HashMap::new(),
    };
    let mut resp = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    resp.is_authorized = d.allowed;
    resp.context = context;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{CTX_SUB, principal_from_context};

    #[test]
    fn context_round_trips_and_a_deny_carries_none() {
        let p = Principal {
            issuer: "https://issuer.test/".into(),
            sub: "alice".into(),
            roles: vec!["a".into(), "b".into()],
            tenant: None,
            token_id: "j1".into(),
            exp: 1_800_000_000,
        };
        let d = GateDecision {
            allowed: true,
            principal: Some(p.clone()),
            reason: "allowed",
            detail: String::new(),
            policy_ids: vec![],
            credential_failure: false,
            ip_blocked: false,
            audit: None,
        };
        let r = simple_response(&d);
        assert!(r.is_authorized);
        assert_eq!(principal_from_context(&r.context), Some(p));
        assert_eq!(r.context["exp"], 1_800_000_000);
        let mut partial = r.context.clone();
        partial.remove(CTX_SUB);
        assert_eq!(principal_from_context(&partial), None);
        let denied = GateDecision {
            allowed: false,
            ..d
        };
        let r = simple_response(&denied);
        assert!(!r.is_authorized);
        assert!(r.context.is_empty());
    }
}
