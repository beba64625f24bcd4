//! The authorizer's decision: token → principal → Cedar route check. A deny is a clean answer
//! (`isAuthorized: false`, which API Gateway turns into 403), never a function error.
use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde_json::Value;

use crate::auth::{JwksSource, KeyCache, Principal, TokenPolicy};
use crate::policy::PolicyStore;

/// Authorizer context keys; predict reads the same ones.
pub const CTX_SUB: &str = "sub";
pub const CTX_ROLES: &str = "roles";
pub const CTX_TENANT: &str = "tenant";
pub const CTX_TOKEN_ID: &str = "token_id";

pub struct Gate<S: JwksSource> {
    pub keys: KeyCache<S>,
    pub policy: PolicyStore,
    pub token_policy: TokenPolicy,
}

#[derive(Debug)]
pub struct GateDecision {
    pub allowed: bool,
    pub principal: Option<Principal>,
    pub reason: &'static str,
    pub policy_ids: Vec<String>,
}

impl<S: JwksSource> Gate<S> {
    pub async fn decide(&self, authorization: Option<&str>, route_key: &str) -> GateDecision {
        let Some(header) = authorization else {
            return GateDecision {
                allowed: false,
                principal: None,
                reason: "missing_header",
                policy_ids: vec![],
            };
        };
        let principal = match self.keys.verify(&self.token_policy, header).await {
            Ok(p) => p,
            Err(e) => {
                return GateDecision {
                    allowed: false,
                    principal: None,
                    reason: e.reason(),
                    policy_ids: vec![],
                };
            }
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

/// Rebuilds the principal from the authorizer context predict receives. Any missing or ill-typed
/// field means no principal: predict then fails closed.
pub fn principal_from_context(ctx: &HashMap<String, Value>) -> Option<Principal> {
    let s = |k: &str| ctx.get(k).and_then(Value::as_str);
    let sub = s(CTX_SUB).filter(|v| !v.is_empty())?.to_owned();
    let roles = s(CTX_ROLES)?
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let tenant = s(CTX_TENANT).filter(|t| !t.is_empty()).map(str::to_owned);
    let token_id = s(CTX_TOKEN_ID)?.to_owned();
    Some(Principal {
        sub,
        roles,
        tenant,
        token_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
