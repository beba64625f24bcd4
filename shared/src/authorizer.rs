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
use crate::auth::{JwksSource, KeyCache, TokenPolicy};
use crate::clock::Clock;
use crate::policy::PolicyStore;
use crate::principal::{CTX_ROLES, CTX_SUB, CTX_TENANT, CTX_TOKEN_ID, Principal};
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
    pub principal: Option<Principal>,
    pub reason: &'static str,
    pub policy_ids: Vec<String>,
    /// Where the denial's audit record sits (segment, seq), for the log line; `None` for an
    /// allow (predict audits it) or when the audit write failed.
    pub audit: Option<RecordRef>,
}

impl GateDecision {
    fn deny(reason: &'static str) -> Self {
        Self {
            allowed: false,
            principal: None,
            reason,
            policy_ids: vec![],
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

/// Only a bad credential counts towards an IP's block: not our own key outage
/// (`keys_unavailable`), and not a valid token on a route its roles do not open
/// (`forbidden_route`), or every client behind a shared NAT would be locked out with them.
fn counts_against_ip(reason: &str) -> bool {
    !matches!(
        reason,
        "keys_unavailable" | "forbidden_route" | "ip_blocked" | "allowed"
    )
}

impl<S: JwksSource> Gate<S> {
    /// IP guard → token → route policy. Every denial is counted against its source IP and
    /// audited; an allow costs no DynamoDB call (predict audits the request itself).
    pub async fn decide(&self, req: &AuthRequest<'_>) -> GateDecision {
        let started = Instant::now();
        let now = self.clock.now();
        // API Gateway always sets sourceIp; without one, such requests share one bucket.
        let ip = req.source_ip.unwrap_or("unknown");
        let blocked = self.failures.is_blocked(ip, now);
        let mut d = if blocked {
            GateDecision::deny("ip_blocked")
        } else {
            self.evaluate(req.authorization, req.route_key).await
        };
        if d.allowed {
            return d;
        }
        if !blocked && counts_against_ip(d.reason) {
            // A failed count only weakens the stuffing guard; the denial stands either way.
            if let Err(e) = self.failures.record_failure(ip, now).await {
                tracing::error!(request_id = req.request_id, error = %e, "auth-failure counter unavailable");
            }
        }
        let event = AuditEvent {
            request_id: req.request_id,
            time: now,
            principal: d.principal.as_ref(),
            route: req.route_key,
            model: None,
            decision: Decision::Denied,
            reason: d.reason,
            policy_ids: &d.policy_ids,
            screen: None,
            prompt: None,
            output: None,
            source_ip: req.source_ip,
            user_agent: req.user_agent,
            latency: started.elapsed(),
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
            return GateDecision::deny("missing_header");
        };
        let principal = match self.keys.verify(&self.token_policy, header).await {
            Ok(p) => p,
            Err(e) => return GateDecision::deny(e.reason()),
        };
        let d = self.policy.authorize_route(&principal, route_key);
        GateDecision {
            allowed: d.allowed,
            reason: if d.allowed {
                "allowed"
            } else {
                "forbidden_route"
            },
            principal: Some(principal),
            policy_ids: d.policy_ids,
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

/// The simple response with a small, scalar-only context; never the token.
pub fn simple_response(
    d: &GateDecision,
) -> ApiGatewayV2CustomAuthorizerSimpleResponse<HashMap<String, Value>> {
    let mut context = HashMap::new();
    if let (true, Some(p)) = (d.allowed, &d.principal) {
        context.insert(CTX_SUB.to_owned(), Value::String(p.sub.clone()));
        context.insert(CTX_ROLES.to_owned(), Value::String(p.roles.join(",")));
        context.insert(
            CTX_TENANT.to_owned(),
            Value::String(p.tenant.clone().unwrap_or_default()),
        );
        context.insert(CTX_TOKEN_ID.to_owned(), Value::String(p.token_id.clone()));
    }
    let mut resp = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    resp.is_authorized = d.allowed;
    resp.context = context;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::principal_from_context;

    #[test]
    fn context_round_trips_and_missing_fields_fail_closed() {
        let p = Principal {
            sub: "alice".into(),
            roles: vec!["a".into(), "b".into()],
            tenant: None,
            token_id: "j1".into(),
        };
        let d = GateDecision {
            allowed: true,
            principal: Some(p.clone()),
            reason: "allowed",
            policy_ids: vec![],
            audit: None,
        };
        let r = simple_response(&d);
        assert!(r.is_authorized);
        assert_eq!(principal_from_context(&r.context), Some(p));
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
