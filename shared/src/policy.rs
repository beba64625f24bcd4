//! Cedar RBAC. The schema, policies and entities in `infra/policy/` are embedded at build time,
//! validated once at cold start (and by a test), and evaluated in-process. Deny by default.
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use serde::Deserialize;

use crate::principal::Principal;

pub const SCHEMA_SRC: &str = include_str!("../../infra/policy/gatehouse.cedarschema");
pub const POLICIES_SRC: &str = include_str!("../../infra/policy/policies.cedar");
pub const ENTITIES_SRC: &str = include_str!("../../infra/policy/entities.json");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("Cedar schema: {0}")]
    Schema(String),
    #[error("Cedar policies: {0}")]
    Policies(String),
    #[error("policies do not validate against the schema: {0}")]
    Validation(String),
    #[error("Cedar entities: {0}")]
    Entities(String),
}

/// Limits a role grants; a principal with several roles gets the most generous of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RoleLimits {
    pub requests_per_window: u32,
    pub window_seconds: u32,
    pub max_prompt_chars: u32,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelInfo {
    pub tier: String,
    pub enabled: bool,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub requests_per_window: Option<u32>,
}

/// The outcome of one Cedar evaluation, with the ids of the policies that determined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecision {
    pub allowed: bool,
    pub policy_ids: Vec<String>,
    /// Set when the request could not even be evaluated (treated as deny).
    pub error: Option<String>,
}

impl PolicyDecision {
    fn deny(error: impl Into<String>) -> Self {
        Self {
            allowed: false,
            policy_ids: Vec::new(),
            error: Some(error.into()),
        }
    }
}

#[derive(Deserialize)]
struct RawUid {
    #[serde(rename = "type")]
    ty: String,
    id: String,
}

#[derive(Deserialize)]
struct RawEntity {
    uid: RawUid,
    attrs: serde_json::Value,
}

const USER: &str = "Gatehouse::User";
const ROLE: &str = "Gatehouse::Role";
const ROUTE: &str = "Gatehouse::Route";
const MODEL: &str = "Gatehouse::Model";

pub struct PolicyStore {
    schema: Schema,
    policies: PolicySet,
    entities: HashMap<EntityUid, Entity>,
    roles: HashMap<String, RoleLimits>,
    models: HashMap<String, ModelInfo>,
    authorizer: Authorizer,
    user_type: EntityTypeName,
    role_type: EntityTypeName,
    action_invoke: EntityUid,
    action_predict: EntityUid,
    action_read_content: EntityUid,
    route_memo: Mutex<HashMap<RouteMemoKey, PolicyDecision>>,
}

/// Everything a route decision depends on: the policies and entities are fixed for the life of
/// the process (embedded at build time), so the same inputs always give the same decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteMemoKey {
    sub: String,
    roles: Vec<String>,
    tenant: Option<String>,
    route: String,
}

/// Bound on memoized route decisions; the memo is cleared when full (bounded memory).
const ROUTE_MEMO_MAX: usize = 4096;

fn type_name(s: &str) -> Result<EntityTypeName, PolicyError> {
    EntityTypeName::from_str(s).map_err(|e| PolicyError::Schema(e.to_string()))
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

impl PolicyStore {
    /// The policy set compiled into this binary from `infra/policy/`.
    pub fn embedded() -> Result<Self, PolicyError> {
        Self::from_sources(SCHEMA_SRC, POLICIES_SRC, ENTITIES_SRC)
    }

    pub fn from_sources(
        schema_src: &str,
        policies_src: &str,
        entities_src: &str,
    ) -> Result<Self, PolicyError> {
        let (schema, _warnings) = Schema::from_cedarschema_str(schema_src)
            .map_err(|e| PolicyError::Schema(e.to_string()))?;
        let policies =
            PolicySet::from_str(policies_src).map_err(|e| PolicyError::Policies(e.to_string()))?;
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let msgs: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
            return Err(PolicyError::Validation(msgs.join("; ")));
        }
        let typed = Entities::from_json_str(entities_src, Some(&schema))
            .map_err(|e| PolicyError::Entities(e.to_string()))?;
        let entities: HashMap<EntityUid, Entity> =
            typed.iter().map(|e| (e.uid(), e.clone())).collect();

        // Typed copies of the limits the Rust side reads (Cedar already checked the shapes).
        let raw: Vec<RawEntity> =
            serde_json::from_str(entities_src).map_err(|e| PolicyError::Entities(e.to_string()))?;
        let mut roles = HashMap::new();
        let mut models = HashMap::new();
        for e in raw {
            match e.uid.ty.as_str() {
                ROLE => {
                    let limits: RoleLimits = serde_json::from_value(e.attrs).map_err(|err| {
                        PolicyError::Entities(format!("role {}: {err}", e.uid.id))
                    })?;
                    roles.insert(e.uid.id, limits);
                }
                MODEL => {
                    let info: ModelInfo = serde_json::from_value(e.attrs).map_err(|err| {
                        PolicyError::Entities(format!("model {}: {err}", e.uid.id))
                    })?;
                    models.insert(e.uid.id, info);
                }
                _ => {}
            }
        }
        let action = type_name("Gatehouse::Action")?;
        Ok(Self {
            schema,
            policies,
            entities,
            roles,
            models,
            authorizer: Authorizer::new(),
            user_type: type_name(USER)?,
            role_type: type_name(ROLE)?,
            action_invoke: uid(&action, "invoke"),
            action_predict: uid(&action, "predict"),
            action_read_content: uid(&action, "read_audit_content"),
            route_memo: Mutex::new(HashMap::new()),
        })
    }

    pub fn model(&self, id: &str) -> Option<&ModelInfo> {
        self.models.get(id)
    }

    pub fn role(&self, id: &str) -> Option<&RoleLimits> {
        self.roles.get(id)
    }

    /// The most generous limits over the principal's known roles (the rate as a whole pair, the
    /// other limits each on its own); `None` when no role is known (such a principal has no
    /// grants either).
    pub fn limits_for(&self, roles: &[String]) -> Option<RoleLimits> {
        roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .copied()
            .reduce(|a, b| {
                // The rate limit is a (count, window) pair: keep the pair with the higher rate,
                // never mix one role's count with another's shorter window.
                let a_rate = u64::from(a.requests_per_window) * u64::from(b.window_seconds);
                let b_rate = u64::from(b.requests_per_window) * u64::from(a.window_seconds);
                let (count, window) = if b_rate > a_rate {
                    (b.requests_per_window, b.window_seconds)
                } else {
                    (a.requests_per_window, a.window_seconds)
                };
                RoleLimits {
                    requests_per_window: count,
                    window_seconds: window,
                    max_prompt_chars: a.max_prompt_chars.max(b.max_prompt_chars),
                    max_tokens: a.max_tokens.max(b.max_tokens),
                }
            })
    }

    fn principal_entity(&self, p: &Principal) -> Result<Entity, String> {
        let parents: HashSet<EntityUid> = p
            .roles
            .iter()
            .filter(|r| self.roles.contains_key(*r))
            .map(|r| uid(&self.role_type, r))
            .collect();
        let mut attrs = HashMap::new();
        if let Some(t) = &p.tenant {
            attrs.insert(
                "tenant".to_owned(),
                RestrictedExpression::new_string(t.clone()),
            );
        }
        Entity::new(uid(&self.user_type, &p.sub), attrs, parents).map_err(|e| e.to_string())
    }

    fn decide(
        &self,
        p: &Principal,
        action: &EntityUid,
        resource: EntityUid,
        context: Context,
    ) -> PolicyDecision {
        let principal = match self.principal_entity(p) {
            Ok(e) => e,
            Err(e) => return PolicyDecision::deny(e),
        };
        let mut slice: Vec<Entity> = vec![principal.clone()];
        slice.extend(principal_role_entities(self, p));
        if let Some(r) = self.entities.get(&resource) {
            slice.push(r.clone());
        }
        let entities = match Entities::from_entities(slice, None) {
            Ok(e) => e,
            Err(e) => return PolicyDecision::deny(e.to_string()),
        };
        let request = match Request::new(
            principal.uid(),
            action.clone(),
            resource,
            context,
            Some(&self.schema),
        ) {
            Ok(r) => r,
            Err(e) => return PolicyDecision::deny(e.to_string()),
        };
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        // Cedar reports determining policies as a set; sort them so logs and audit are stable.
        let mut policy_ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| self.policy_label(id))
            .collect();
        policy_ids.sort_unstable();
        PolicyDecision {
            allowed: response.decision() == Decision::Allow,
            policy_ids,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// A policy's `@id("...")` annotation (what the policy files call it), else Cedar's own id.
    fn policy_label(&self, id: &cedar_policy::PolicyId) -> String {
        self.policies
            .policy(id)
            .and_then(|p| p.annotation("id"))
            .map_or_else(|| id.to_string(), str::to_owned)
    }

    /// Route-level check (the authorizer's): may this principal call `route_key` at all?
    /// Decisions are memoized per (sub, roles, tenant, route): a warm authorizer answers repeat
    /// callers without re-running Cedar. Evaluation errors are never memoized.
    pub fn authorize_route(&self, p: &Principal, route_key: &str) -> PolicyDecision {
        let mut roles = p.roles.clone();
        roles.sort_unstable();
        roles.dedup();
        let key = RouteMemoKey {
            sub: p.sub.clone(),
            roles,
            tenant: p.tenant.clone(),
            route: route_key.to_owned(),
        };
        if let Some(d) = self
            .route_memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return d.clone();
        }
        let d = self.evaluate_route(p, route_key);
        if d.error.is_none() {
            let mut memo = self.route_memo.lock().unwrap_or_else(|e| e.into_inner());
            if memo.len() >= ROUTE_MEMO_MAX {
                memo.clear();
            }
            memo.insert(key, d.clone());
        }
        d
    }

    fn evaluate_route(&self, p: &Principal, route_key: &str) -> PolicyDecision {
        let route = match type_name(ROUTE) {
            Ok(t) => uid(&t, route_key),
            Err(e) => return PolicyDecision::deny(e.to_string()),
        };
        if !self.entities.contains_key(&route) {
            return PolicyDecision::deny(format!("unknown route {route_key:?}"));
        }
        self.decide(p, &self.action_invoke, route, Context::empty())
    }

    /// May this principal see prompt and output text in audit records read through `route_key`
    /// (`GET /v1/audit`)? The text exists only in `full` content mode; this decides who sees it.
    pub fn authorize_audit_content(&self, p: &Principal, route_key: &str) -> PolicyDecision {
        let route = match type_name(ROUTE) {
            Ok(t) => uid(&t, route_key),
            Err(e) => return PolicyDecision::deny(e.to_string()),
        };
        if !self.entities.contains_key(&route) {
            return PolicyDecision::deny(format!("unknown route {route_key:?}"));
        }
        self.decide(p, &self.action_read_content, route, Context::empty())
    }

    /// Model-level check (predict's): may this principal use `model` with `max_tokens`?
    pub fn authorize_model(&self, p: &Principal, model: &str, max_tokens: u32) -> PolicyDecision {
        let resource = match type_name(MODEL) {
            Ok(t) => uid(&t, model),
            Err(e) => return PolicyDecision::deny(e.to_string()),
        };
        if !self.entities.contains_key(&resource) {
            return PolicyDecision::deny(format!("unknown model {model:?}"));
        }
        let context = match Context::from_pairs([(
            "max_tokens".to_owned(),
            RestrictedExpression::new_long(i64::from(max_tokens)),
        )]) {
            Ok(c) => c,
            Err(e) => return PolicyDecision::deny(e.to_string()),
        };
        self.decide(p, &self.action_predict, resource, context)
    }
}

fn principal_role_entities<'a>(
    store: &'a PolicyStore,
    p: &'a Principal,
) -> impl Iterator<Item = Entity> + 'a {
    p.roles
        .iter()
        .filter_map(|r| store.entities.get(&uid(&store.role_type, r)).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[&str], tenant: Option<&str>) -> Principal {
        Principal {
            sub: "alice".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            tenant: tenant.map(str::to_owned),
            token_id: "t".into(),
        }
    }

    #[test]
    fn embedded_policies_validate_against_schema() {
        let store = PolicyStore::embedded().unwrap();
        assert!(store.role("ai_operator").is_some());
        assert!(store.model("echo").is_some());
    }

    #[test]
    fn a_policy_that_breaks_the_schema_is_refused() {
        let bad = r#"permit (principal, action == Gatehouse::Action::"invoke", resource) when { resource.nope == 1 };"#;
        assert!(matches!(
            PolicyStore::from_sources(SCHEMA_SRC, bad, ENTITIES_SRC),
            Err(PolicyError::Validation(_))
        ));
    }

    #[test]
    fn route_allowed_for_operator_only_and_reports_policy_id() {
        let store = PolicyStore::embedded().unwrap();
        let d = store.authorize_route(&principal(&["ai_operator"], None), "POST /v1/predict");
        assert!(d.allowed);
        assert_eq!(d.policy_ids, vec!["route-predict-operator".to_string()]);
        assert!(
            !store
                .authorize_route(&principal(&["auditor"], None), "POST /v1/predict")
                .allowed
        );
        assert!(
            !store
                .authorize_route(&principal(&["root"], None), "POST /v1/predict")
                .allowed
        );
        assert!(
            !store
                .authorize_route(&principal(&[], None), "POST /v1/predict")
                .allowed
        );
        assert!(
            !store
                .authorize_route(&principal(&["ai_operator"], None), "DELETE /v1/predict")
                .allowed
        );
    }

    #[test]
    fn memoized_route_decisions_match_fresh_evaluation() {
        let store = PolicyStore::embedded().unwrap();
        for roles in [
            &["ai_operator"][..],
            &["auditor"],
            &["analyst", "ai_operator"],
            &["ai_operator", "analyst"],
            &[],
        ] {
            for route in ["POST /v1/predict", "GET /v1/nothing"] {
                let p = principal(roles, Some("acme"));
                let fresh = store.evaluate_route(&p, route);
                assert_eq!(store.authorize_route(&p, route), fresh, "{roles:?} {route}");
                assert_eq!(
                    store.authorize_route(&p, route),
                    fresh,
                    "memo hit for {roles:?} {route}"
                );
            }
        }
        let memo = store.route_memo.lock().unwrap();
        assert!(
            memo.len() <= 4,
            "errors (unknown routes) are not memoized; role order is normalized"
        );
    }

    #[test]
    fn most_generous_limits_win() {
        let store = PolicyStore::embedded().unwrap();
        let l = store
            .limits_for(&["analyst".into(), "ai_operator".into()])
            .unwrap();
        assert_eq!(l.requests_per_window, 60);
        assert_eq!(l.max_prompt_chars, 8000);
        assert!(store.limits_for(&["nobody".into()]).is_none());
        // 1000 an hour and 10 a minute must not combine into 1000 a minute.
        let hourly = RoleLimits {
            requests_per_window: 1000,
            window_seconds: 3600,
            max_prompt_chars: 1,
            max_tokens: 1,
        };
        let minutely = RoleLimits {
            requests_per_window: 10,
            window_seconds: 60,
            max_prompt_chars: 1,
            max_tokens: 1,
        };
        let store = PolicyStore {
            roles: [("h".to_string(), hourly), ("m".to_string(), minutely)].into(),
            ..store
        };
        let l = store.limits_for(&["m".into(), "h".into()]).unwrap();
        assert_eq!(
            (l.requests_per_window, l.window_seconds),
            (1000, 3600),
            "1000/h (16.7/min) beats 10/min; never 1000/min"
        );
    }
}
