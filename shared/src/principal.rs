//! The authenticated caller, as the authorizer establishes it and predict receives it through
//! the authorizer context. Shared by every function, so predict needs no JWT code to name one.
//! The context keys below are the contract between the two functions.
use std::collections::HashMap;

use serde_json::Value;

/// Authorizer context keys (API Gateway HTTP API simple response `context`, which allows only
/// scalar values: roles travel comma-joined).
pub const CTX_SUB: &str = "sub";
pub const CTX_ROLES: &str = "roles";
pub const CTX_TENANT: &str = "tenant";
pub const CTX_TOKEN_ID: &str = "token_id";

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    pub sub: String,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    /// jti if present, else first 16 hex chars of SHA-256 of the token
    pub token_id: String,
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
