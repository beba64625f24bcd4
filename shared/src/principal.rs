//! The authenticated caller, as the authorizer establishes it and predict receives it through
//! the authorizer context. Shared by every function, so predict needs no JWT code to name one.
//!
//! The context keys below are the contract between the two functions (API Gateway HTTP API
//! simple responses allow only scalar context values: roles travel comma-joined, `exp` as a
//! number). Predict rebuilds the principal with `principal_from_context` and refuses a request
//! whose `exp` has passed, so API Gateway's authorizer cache can never stretch a token's life.
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Authorizer context keys.
pub const CTX_SUB: &str = "sub";
pub const CTX_ISSUER: &str = "iss";
pub const CTX_ROLES: &str = "roles";
pub const CTX_TENANT: &str = "tenant";
pub const CTX_TOKEN_ID: &str = "token_id";
/// The token's `exp` (NumericDate, seconds since the epoch), a JSON number.
pub const CTX_EXP: &str = "exp";

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    /// The token's `iss`: principals of different issuers are different people.
    pub issuer: String,
    pub sub: String,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    /// jti if present, else first 16 hex chars of SHA-256 of the token
    pub token_id: String,
    /// The token's `exp`, seconds since the Unix epoch.
    pub exp: u64,
}

impl Principal {
    /// The one key a principal is counted and audited under: `principal_key(issuer, tenant, sub)`.
    pub fn key(&self) -> String {
        principal_key(&self.issuer, self.tenant.as_deref(), &self.sub)
    }

    /// Whether the token has expired at `now`, allowing `leeway` of clock skew (the same rule
    /// as the authorizer's: expired once `exp + leeway <= now`).
    pub fn is_expired(&self, now: SystemTime, leeway: Duration) -> bool {
        self.exp.saturating_add(leeway.as_secs()) <= crate::clock::unix_secs(now)
    }
}

/// `<issuer hash>#<tenant>#<sub>`: the first 12 hex characters of SHA-256(issuer), the tenant
/// (empty when the principal has none), then the subject. The same `sub` from two issuers or two
/// tenants never shares a rate-limit counter or an audit trail. Unambiguous: the hash is fixed
/// length hex, a tenant is a plain identifier (no `#`, never empty when present), and the
/// subject, which may contain anything, comes last.
pub fn principal_key(issuer: &str, tenant: Option<&str>, sub: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, issuer.as_bytes());
    let mut key = String::with_capacity(14 + tenant.map_or(0, str::len) + sub.len());
    for b in d.as_ref().iter().take(6) {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    key.push('#');
    key.push_str(tenant.unwrap_or(""));
    key.push('#');
    key.push_str(sub);
    key
}

/// Who calls a function behind the authorizer, from an API Gateway HTTP API (payload 2.0)
/// request context.
#[cfg(any(feature = "predict", feature = "audit-reader"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Rebuilt with [`principal_from_context`]; `None` when API Gateway did not authorize the
    /// call (no authorizer context), which every handler refuses: fail closed.
    pub principal: Option<Principal>,
    /// `requestContext.requestId`, else the Lambda invocation's request id, else empty.
    pub request_id: String,
}

/// The caller of one request: `ctx` is the payload 2.0 request context (`None` for any other
/// event shape), `invocation_id` the Lambda context's request id.
#[cfg(any(feature = "predict", feature = "audit-reader"))]
pub fn caller(
    ctx: Option<&aws_lambda_events::apigw::ApiGatewayV2httpRequestContext>,
    invocation_id: Option<&str>,
) -> Caller {
    Caller {
        principal: ctx
            .and_then(|c| c.authorizer.as_ref())
            .and_then(|a| principal_from_context(&a.fields)),
        request_id: ctx
            .and_then(|c| c.request_id.clone())
            .or_else(|| invocation_id.map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// Rebuilds the principal from the authorizer context predict receives. Any missing or ill-typed
/// field means no principal: predict then fails closed. `exp` is accepted as a JSON number or a
/// string of digits (in case a gateway stringifies context values, as REST APIs do).
pub fn principal_from_context(ctx: &HashMap<String, Value>) -> Option<Principal> {
    let s = |k: &str| ctx.get(k).and_then(Value::as_str);
    let sub = s(CTX_SUB).filter(|v| !v.is_empty())?.to_owned();
    let issuer = s(CTX_ISSUER).filter(|v| !v.is_empty())?.to_owned();
    let roles = s(CTX_ROLES)?
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let tenant = s(CTX_TENANT).filter(|t| !t.is_empty()).map(str::to_owned);
    let token_id = s(CTX_TOKEN_ID)?.to_owned();
    let exp = match ctx.get(CTX_EXP)? {
        Value::Number(n) => n.as_u64()?,
        Value::String(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            t.parse().ok()?
        }
        _ => return None,
    };
    Some(Principal {
        issuer,
        sub,
        roles,
        tenant,
        token_id,
        exp,
    })
}

/// The context the authorizer returns for an allowed principal (scalars only).
pub fn context_of(p: &Principal) -> HashMap<String, Value> {
    HashMap::from([
        (CTX_SUB.to_owned(), Value::String(p.sub.clone())),
        (CTX_ISSUER.to_owned(), Value::String(p.issuer.clone())),
        (CTX_ROLES.to_owned(), Value::String(p.roles.join(","))),
        (
            CTX_TENANT.to_owned(),
            Value::String(p.tenant.clone().unwrap_or_default()),
        ),
        (CTX_TOKEN_ID.to_owned(), Value::String(p.token_id.clone())),
        (CTX_EXP.to_owned(), Value::from(p.exp)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            issuer: "https://issuer.test/".into(),
            sub: "alice".into(),
            roles: vec!["a".into(), "b".into()],
            tenant: Some("acme".into()),
            token_id: "j1".into(),
            exp: 1_800_000_000,
        }
    }

    #[test]
    fn context_round_trips_and_every_field_is_required() {
        let p = alice();
        let ctx = context_of(&p);
        assert_eq!(principal_from_context(&ctx), Some(p.clone()));
        for k in [CTX_SUB, CTX_ISSUER, CTX_ROLES, CTX_TOKEN_ID, CTX_EXP] {
            let mut partial = ctx.clone();
            partial.remove(k);
            assert_eq!(principal_from_context(&partial), None, "{k}");
        }
        let mut s = ctx.clone();
        s.insert(CTX_EXP.into(), Value::String("1800000000".into()));
        assert_eq!(principal_from_context(&s), Some(p));
        for bad in [
            Value::String("18e8".into()),
            Value::from(-1),
            Value::from(1.5),
            Value::Null,
        ] {
            let mut b = ctx.clone();
            b.insert(CTX_EXP.into(), bad.clone());
            assert_eq!(principal_from_context(&b), None, "{bad}");
        }
    }

    #[cfg(any(feature = "predict", feature = "audit-reader"))]
    #[test]
    fn caller_needs_the_authorizer_context_and_names_the_request() {
        use aws_lambda_events::apigw::{
            ApiGatewayRequestAuthorizer, ApiGatewayV2httpRequestContext,
        };
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.fields = context_of(&alice());
        let mut ctx = ApiGatewayV2httpRequestContext::default();
        ctx.request_id = Some("gw-1".into());
        ctx.authorizer = Some(authorizer);
        let c = caller(Some(&ctx), Some("lambda-1"));
        assert_eq!(c.principal, Some(alice()));
        assert_eq!(c.request_id, "gw-1");
        // No authorizer context (API Gateway did not authorize): no principal.
        ctx.authorizer = None;
        ctx.request_id = None;
        let c = caller(Some(&ctx), Some("lambda-1"));
        assert_eq!((c.principal, c.request_id.as_str()), (None, "lambda-1"));
        let c = caller(None, None);
        assert_eq!((c.principal, c.request_id.as_str()), (None, ""));
    }

    #[test]
    fn expiry_uses_the_authorizers_rule() {
        let p = alice();
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let leeway = Duration::from_secs(30);
        assert!(!p.is_expired(at(p.exp + 29), leeway));
        assert!(p.is_expired(at(p.exp + 30), leeway));
        assert!(p.is_expired(at(p.exp), Duration::ZERO));
    }

    #[test]
    fn keys_separate_issuers_and_tenants() {
        let k = principal_key("https://a/", Some("acme"), "alice");
        assert_eq!(k.len(), 12 + 1 + 4 + 1 + 5);
        assert!(k.ends_with("#acme#alice"));
        assert_ne!(k, principal_key("https://b/", Some("acme"), "alice"));
        assert_ne!(k, principal_key("https://a/", None, "alice"));
        assert_ne!(
            principal_key("https://a/", None, "x#alice"),
            principal_key("https://a/", Some("x"), "alice")
        );
        assert_eq!(
            alice().key(),
            principal_key("https://issuer.test/", Some("acme"), "alice")
        );
    }
}
