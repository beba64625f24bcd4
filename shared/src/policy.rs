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

/// The route whose policy decides which roles count towards predict's limits (issue 10.3).
pub const PREDICT_ROUTE: &str = "POST /v1/predict";

/// Limits a role grants; a principal with several roles that may call predict gets the most
/// generous of each (see `PolicyStore::limits_for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RoleLimits {
    pub requests_per_window: u32,
    pub window_seconds: u32,
    pub max_prompt_chars: u32,
    pub max_tokens: u32,
    /// Weighted tokens per UTC day.
    pub tokens_per_day: u64,
    /// Weighted tokens per UTC calendar month; `None` = no monthly limit.
    #[serde(default)]
    pub tokens_per_month: Option<u64>,
}

/// A tenant's shared token budget (weighted tokens), from a `Gatehouse::Tenant` entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TenantBudget {
    pub tokens_per_day: u64,
    #[serde(default)]
    pub tokens_per_month: Option<u64>,
}

/// The tenant entity whose budget applies to every tenant not listed by name.
pub const ANY_TENANT: &str = "*";

/// A Cedar `decimal` (at most 4 digits after the point), as a count of ten-thousandths.
/// Entities write it as `{"__extn": {"fn": "decimal", "arg": "1.5"}}` (Cedar's JSON entity
/// format); Cedar itself validates the value against the schema's `decimal` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decimal4(pub i64);

impl Decimal4 {
    pub const ONE: Decimal4 = Decimal4(10_000);

    /// Cedar's decimal literal: `-?[0-9]+\.[0-9]{1,4}`.
    pub fn parse(s: &str) -> Option<Self> {
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = body.split_once('.')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !digits(frac) || frac.len() > 4 {
            return None;
        }
        let int: i64 = int.parse().ok()?;
        let frac: i64 = format!("{frac:0<4}").parse().ok()?;
        let v = int.checked_mul(10_000)?.checked_add(frac)?;
        Some(Self(if neg { -v } else { v }))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 10_000.0
    }

    /// `ceil(n × self)` for a non-negative decimal; saturates instead of overflowing.
    pub fn ceil_mul(self, n: u64) -> u64 {
        let w = u128::try_from(self.0.max(0)).unwrap_or(0);
        let v = (u128::from(n) * w).div_ceil(10_000);
        u64::try_from(v).unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for Decimal4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:04}", a / 10_000, a % 10_000)
    }
}

impl<'de> Deserialize<'de> for Decimal4 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct FnArg {
            #[serde(rename = "fn")]
            func: String,
            arg: String,
        }
        #[derive(Deserialize)]
        struct Escape {
            __extn: FnArg,
        }
        let e = Escape::deserialize(d)?;
        if e.__extn.func != "decimal" {
            return Err(serde::de::Error::custom("expected a decimal(...) value"));
        }
        Self::parse(&e.__extn.arg)
            .ok_or_else(|| serde::de::Error::custom("not a Cedar decimal literal"))
    }
}

/// How predict applies the prompt screen's verdict for a principal on a route (policy entities:
/// `screen_mode` on a Route, optionally overridden on a Role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScreenMode {
    /// No screening (the prompt is still sanitized before it is forwarded).
    Off,
    /// Screen and audit, but never refuse: a `block` verdict is recorded and passed as `flag`.
    FlagOnly,
    /// Refuse prompts the screen blocks (the default).
    Block,
}

impl ScreenMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::FlagOnly => "flag-only",
            Self::Block => "block",
        }
    }
}

impl std::str::FromStr for ScreenMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(Self::Block),
            "flag-only" => Ok(Self::FlagOnly),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "screen_mode {other:?} is not one of block, flag-only, off"
            )),
        }
    }
}

#[derive(Deserialize)]
struct ModeAttr {
    #[serde(default)]
    screen_mode: Option<String>,
}

fn mode_of(attrs: &serde_json::Value, what: &str) -> Result<Option<ScreenMode>, PolicyError> {
    let attr: ModeAttr = serde_json::from_value(attrs.clone())
        .map_err(|e| PolicyError::Entities(format!("{what}: {e}")))?;
    attr.screen_mode
        .map(|m| {
            m.parse()
                .map_err(|e| PolicyError::Entities(format!("{what}: {e}")))
        })
        .transpose()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelInfo {
    pub tier: String,
    pub enabled: bool,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub requests_per_window: Option<u32>,
    /// Largest `max_tokens` the backend accepts for this model (above: 400).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Largest temperature the backend accepts for this model (above: 400); the minimum is 0.
    #[serde(default)]
    pub temperature_max: Option<Decimal4>,
    /// Budget tokens charged per model token; 1.0 when absent.
    #[serde(default)]
    pub token_weight: Option<Decimal4>,
}

impl ModelInfo {
    pub fn weight(&self) -> Decimal4 {
        self.token_weight.unwrap_or(Decimal4::ONE)
    }
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
const TENANT: &str = "Gatehouse::Tenant";

pub struct PolicyStore {
    schema: Schema,
    policies: PolicySet,
    entities: HashMap<EntityUid, Entity>,
    roles: HashMap<String, RoleLimits>,
    /// The roles that may call predict on their own: only their limits count (issue 10.3).
    predict_roles: HashSet<String>,
    tenants: HashMap<String, TenantBudget>,
    models: std::collections::BTreeMap<String, ModelInfo>,
    role_modes: HashMap<String, ScreenMode>,
    route_modes: HashMap<String, ScreenMode>,
    authorizer: Authorizer,
    user_type: EntityTypeName,
    role_type: EntityTypeName,
    action_invoke: EntityUid,
    action_predict: EntityUid,
    action_read_content: EntityUid,
    memo: Mutex<HashMap<MemoKey, PolicyDecision>>,
    /// Whether a policy or an entity names a user (a `Gatehouse::User` literal, a template slot
    /// or a reference in the entity data): only then can the subject itself change a decision,
    /// so only then is it part of the memo key.
    names_users: bool,
    /// Whether a policy reads the request context (or a template exists): only then is
    /// `max_tokens` part of the model decision's memo key, so values a caller varies cannot
    /// churn the memo when no policy looks at them.
    reads_context: bool,
    /// The schema's action entities (with their groups as parents), added to every request.
    action_entities: Vec<Entity>,
    /// Each policy's label (`policy_label`), looked up once at load: Cedar parses the
    /// annotation key on every `annotation` call.
    labels: HashMap<cedar_policy::PolicyId, String>,
}

/// Everything a decision depends on: the policies and entities are fixed for the life of the
/// process (embedded at build time), so the same inputs always give the same decision. The
/// principal entity Cedar sees is built from `sub` (its uid), the roles (its parents) and the
/// tenant (its one attribute); `sub` is left out (`None`) when no policy, template or entity
/// names a user, as Cedar can then observe the uid only through those parents and that attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MemoKey {
    sub: Option<String>,
    roles: Vec<String>,
    tenant: Option<String>,
    action: MemoAction,
    /// The route key or the model id.
    resource: String,
}

/// The memoized decisions and the request context each carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MemoAction {
    Invoke,
    /// `max_tokens` is `None` when no policy reads the context.
    Predict {
        max_tokens: Option<u32>,
    },
}

/// Bound on memoized decisions; the memo is cleared when full (bounded memory).
const MEMO_MAX: usize = 4096;

/// Whether any string in a JSON document (keys aside) equals `needle`.
fn has_string(v: &serde_json::Value, needle: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s == needle,
        serde_json::Value::Array(items) => items.iter().any(|v| has_string(v, needle)),
        serde_json::Value::Object(m) => m.values().any(|v| has_string(v, needle)),
        _ => false,
    }
}

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
        let doc: serde_json::Value =
            serde_json::from_str(entities_src).map_err(|e| PolicyError::Entities(e.to_string()))?;
        // Does the entity data refer to a user anywhere (a parent, an attribute, a tag, at any
        // depth)? Read from the parsed JSON, where escapes are already decoded; any string equal
        // to the type's name counts, which can only make the memo key finer.
        let data_names_users = has_string(&doc, USER);
        let raw: Vec<RawEntity> =
            serde_json::from_value(doc).map_err(|e| PolicyError::Entities(e.to_string()))?;
        let mut roles = HashMap::new();
        let mut tenants = HashMap::new();
        let mut models = std::collections::BTreeMap::new();
        let mut role_modes = HashMap::new();
        let mut route_modes = HashMap::new();
        for e in raw {
            match e.uid.ty.as_str() {
                ROUTE => {
                    if let Some(m) = mode_of(&e.attrs, &format!("route {}", e.uid.id))? {
                        route_modes.insert(e.uid.id, m);
                    }
                }
                ROLE => {
                    if let Some(m) = mode_of(&e.attrs, &format!("role {}", e.uid.id))? {
                        role_modes.insert(e.uid.id.clone(), m);
                    }
                    let limits: RoleLimits = serde_json::from_value(e.attrs).map_err(|err| {
                        PolicyError::Entities(format!("role {}: {err}", e.uid.id))
                    })?;
                    roles.insert(e.uid.id, limits);
                }
                MODEL => {
                    let info: ModelInfo = serde_json::from_value(e.attrs).map_err(|err| {
                        PolicyError::Entities(format!("model {}: {err}", e.uid.id))
                    })?;
                    if info.weight().0 <= 0 || info.temperature_max.is_some_and(|t| t.0 < 0) {
                        return Err(PolicyError::Entities(format!(
                            "model {}: token_weight must be positive and temperature_max not negative",
                            e.uid.id
                        )));
                    }
                    models.insert(e.uid.id, info);
                }
                TENANT => {
                    let budget: TenantBudget = serde_json::from_value(e.attrs).map_err(|err| {
                        PolicyError::Entities(format!("tenant {}: {err}", e.uid.id))
                    })?;
                    tenants.insert(e.uid.id, budget);
                }
                _ => {}
            }
        }
        let action = type_name("Gatehouse::Action")?;
        let labels = policies
            .policies()
            .map(|p| {
                let label = p
                    .annotation("id")
                    .map_or_else(|| p.id().to_string(), str::to_owned);
                (p.id().clone(), label)
            })
            .collect();
        let user_type = type_name(USER)?;
        // A template's slots are linked to entities later: count it as naming users and reading
        // the context.
        let has_templates = policies.templates().next().is_some();
        let names_users = has_templates
            || data_names_users
            || policies.policies().any(|p| {
                p.entity_literals()
                    .iter()
                    .any(|e| e.type_name() == &user_type)
            });
        // Cedar has one spelling for the variable, `context`, so a policy that reads it has that
        // word in its source (a comment, attribute or string spelled the same only makes the key
        // finer, never wrong). Printing the parsed policies instead (`to_string`, `to_json`)
        // measured +0.23 MiB on predict, more than its room under the size budget.
        let reads_context = has_templates || policies_src.contains("context");
        let action_entities: Vec<Entity> = schema
            .action_entities()
            .map_err(|e| PolicyError::Schema(e.to_string()))?
            .iter()
            .cloned()
            .collect();
        let mut store = Self {
            schema,
            policies,
            entities,
            roles,
            predict_roles: HashSet::new(),
            tenants,
            models,
            role_modes,
            route_modes,
            authorizer: Authorizer::new(),
            user_type,
            role_type: type_name(ROLE)?,
            action_invoke: uid(&action, "invoke"),
            action_predict: uid(&action, "predict"),
            action_read_content: uid(&action, "read_audit_content"),
            memo: Mutex::new(HashMap::new()),
            names_users,
            reads_context,
            action_entities,
            labels,
        };
        // A role counts towards predict's limits only if it may call predict on its own: the
        // route policy decides, evaluated once here for a principal holding just that role.
        store.predict_roles = store
            .roles
            .keys()
            .filter(|r| {
                let alone = Principal {
                    issuer: String::new(),
                    sub: format!("role-probe:{r}"),
                    exp: 0,
                    roles: vec![(*r).clone()],
                    tenant: None,
                    token_id: String::new(),
                };
                store.evaluate_route(&alone, PREDICT_ROUTE).allowed
            })
            .cloned()
            .collect();
        Ok(store)
    }

    pub fn model(&self, id: &str) -> Option<&ModelInfo> {
        self.models.get(id)
    }

    /// Every model of the policy, by id (sorted).
    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelInfo)> {
        self.models.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether `role` may call predict on its own (so its limits count for predict).
    pub fn grants_predict(&self, role: &str) -> bool {
        self.predict_roles.contains(role)
    }

    /// The token budget of `tenant`: its own entity, else `Tenant::"*"`, else none.
    pub fn tenant_budget(&self, tenant: &str) -> Option<TenantBudget> {
        self.tenants
            .get(tenant)
            .or_else(|| self.tenants.get(ANY_TENANT))
            .copied()
    }

    pub fn role(&self, id: &str) -> Option<&RoleLimits> {
        self.roles.get(id)
    }

    /// The prompt screen mode for a principal with `roles` on `route`: the most permissive mode
    /// among the roles that set one, else the route's mode, else `Block` (fail closed).
    pub fn screen_mode(&self, roles: &[String], route: &str) -> ScreenMode {
        roles
            .iter()
            .filter_map(|r| self.role_modes.get(r))
            .copied()
            .min()
            .or_else(|| self.route_modes.get(route).copied())
            .unwrap_or(ScreenMode::Block)
    }

    /// The most generous limits over the principal's roles that may call predict (the rate as a
    /// whole pair, the other limits each on its own); `None` when no role grants predict.
    /// Roles that do not grant predict (an `auditor`'s) never widen predict's limits: analyst +
    /// auditor gets the analyst's rate, not the auditor's.
    pub fn limits_for(&self, roles: &[String]) -> Option<RoleLimits> {
        roles
            .iter()
            .filter(|r| self.predict_roles.contains(*r))
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
                    tokens_per_day: a.tokens_per_day.max(b.tokens_per_day),
                    // No monthly limit on either role is the more generous one.
                    tokens_per_month: match (a.tokens_per_month, b.tokens_per_month) {
                        (Some(x), Some(y)) => Some(x.max(y)),
                        _ => None,
                    },
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
        // The schema's action entities go in too, so `action in <group>` holds for its members.
        // (Passing the schema here would add them as well, and re-check the slice's conformance
        // on every evaluation; the slice is built from entities already checked at load.)
        slice.extend(self.action_entities.iter().cloned());
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
        self.labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// `evaluate` once per `MemoKey`: a warm function answers repeat inputs without re-running
    /// Cedar. Evaluation errors are never memoized.
    fn memoized(
        &self,
        p: &Principal,
        action: MemoAction,
        resource: &str,
        evaluate: impl FnOnce() -> PolicyDecision,
    ) -> PolicyDecision {
        let mut roles = p.roles.clone();
        roles.sort_unstable();
        roles.dedup();
        let key = MemoKey {
            sub: self.names_users.then(|| p.sub.clone()),
            roles,
            tenant: p.tenant.clone(),
            action,
            resource: resource.to_owned(),
        };
        if let Some(d) = self
            .memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return d.clone();
        }
        let d = evaluate();
        if d.error.is_none() {
            let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
            if memo.len() >= MEMO_MAX {
                memo.clear();
            }
            memo.insert(key, d.clone());
        }
        d
    }

    /// Route-level check (the authorizer's): may this principal call `route_key` at all?
    /// Memoized (see `MemoKey`).
    pub fn authorize_route(&self, p: &Principal, route_key: &str) -> PolicyDecision {
        self.memoized(p, MemoAction::Invoke, route_key, || {
            self.evaluate_route(p, route_key)
        })
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
    /// Memoized (see `MemoKey`; `max_tokens` is part of the key when a policy reads the context).
    pub fn authorize_model(&self, p: &Principal, model: &str, max_tokens: u32) -> PolicyDecision {
        let keyed = MemoAction::Predict {
            max_tokens: self.reads_context.then_some(max_tokens),
        };
        self.memoized(p, keyed, model, || {
            self.evaluate_model(p, model, max_tokens)
        })
    }

    fn evaluate_model(&self, p: &Principal, model: &str, max_tokens: u32) -> PolicyDecision {
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
            issuer: "https://issuer.test/".into(),
            // Far in the future (2096): these principals never expire mid-test.
            exp: 4_000_000_000,
        }
    }

    #[test]
    fn embedded_policies_validate_against_schema() {
        let store = PolicyStore::embedded().unwrap();
        assert!(store.role("ai_operator").is_some());
        assert!(store.model("echo").is_some());
    }

    #[test]
    fn screen_mode_comes_from_route_then_roles() {
        let entities = ENTITIES_SRC
            .replacen(
                r#""max_prompt_chars": 4000, "max_tokens": 1024,"#,
                r#""max_prompt_chars": 4000, "max_tokens": 1024, "screen_mode": "flag-only","#,
                1,
            )
            .replacen(
                r#""max_prompt_chars": 8000, "max_tokens": 4096,"#,
                r#""max_prompt_chars": 8000, "max_tokens": 4096, "screen_mode": "off","#,
                1,
            );
        assert_eq!(
            entities.matches("screen_mode").count(),
            ENTITIES_SRC.matches("screen_mode").count() + 2
        );
        let store = PolicyStore::from_sources(SCHEMA_SRC, POLICIES_SRC, &entities).unwrap();
        let route = "POST /v1/predict";
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            store.screen_mode(&roles(&["auditor"]), route),
            ScreenMode::Block
        );
        assert_eq!(
            store.screen_mode(&roles(&["analyst"]), route),
            ScreenMode::FlagOnly
        );
        // Several roles: the most permissive that is set wins.
        assert_eq!(
            store.screen_mode(&roles(&["analyst", "ai_operator"]), route),
            ScreenMode::Off
        );
        // Unknown route and no role mode: fail closed.
        assert_eq!(
            store.screen_mode(&roles(&["auditor"]), "GET /x"),
            ScreenMode::Block
        );
        let embedded = PolicyStore::embedded().unwrap();
        assert_eq!(
            embedded.screen_mode(&roles(&["analyst"]), route),
            ScreenMode::Block
        );
    }

    #[test]
    fn an_unknown_screen_mode_is_refused() {
        let entities =
            ENTITIES_SRC.replacen(r#""screen_mode": "block""#, r#""screen_mode": "warn""#, 1);
        assert!(matches!(
            PolicyStore::from_sources(SCHEMA_SRC, POLICIES_SRC, &entities),
            Err(PolicyError::Entities(_))
        ));
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
        let memo = store.memo.lock().unwrap();
        assert!(
            memo.len() <= 4,
            "errors (unknown routes) are not memoized; role order is normalized"
        );
    }

    #[test]
    fn memoized_model_decisions_match_fresh_evaluation_for_every_subject() {
        let store = PolicyStore::embedded().unwrap();
        assert!(!store.names_users, "the embedded policies name no user");
        let models = [
            "echo",
            "claude-sonnet",
            "legacy-model",
            "acme-finetune",
            "nope",
        ];
        for (i, roles) in [&["ai_operator"][..], &["trial"], &["analyst"], &[]]
            .into_iter()
            .enumerate()
        {
            for model in models {
                for max_tokens in [1, 512, 1024, 4096, 100_000] {
                    for tenant in [None, Some("acme"), Some("other")] {
                        let mut p = principal(roles, tenant);
                        p.sub = format!("user-{i}-{max_tokens}");
                        let fresh = store.evaluate_model(&p, model, max_tokens);
                        assert_eq!(store.authorize_model(&p, model, max_tokens), fresh);
                        p.sub = "someone-else".into();
                        assert_eq!(
                            store.authorize_model(&p, model, max_tokens),
                            fresh,
                            "memo hit for {roles:?} {model} {max_tokens} {tenant:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_policy_naming_a_user_keeps_subjects_apart_in_the_memo() {
        for only_alice in [
            r#"permit (principal == Gatehouse::User::"alice", action == Gatehouse::Action::"invoke", resource);"#,
            r#"permit (principal, action == Gatehouse::Action::"invoke", resource) when { principal != Gatehouse::User::"bob" };"#,
        ] {
            let store = PolicyStore::from_sources(SCHEMA_SRC, only_alice, ENTITIES_SRC).unwrap();
            assert!(store.names_users, "{only_alice}");
            let alice = principal(&["ai_operator"], None);
            let mut bob = alice.clone();
            bob.sub = "bob".into();
            for _ in 0..2 {
                assert!(store.authorize_route(&alice, "POST /v1/predict").allowed);
                assert!(!store.authorize_route(&bob, "POST /v1/predict").allowed);
            }
        }
    }

    #[test]
    fn an_entity_referring_to_a_user_keeps_subjects_apart_in_the_memo() {
        // No user literal in the policy: the route entity names its owner, escaped in the JSON.
        let schema =
            SCHEMA_SRC.replacen("entity Route = {", "entity Route = {\n    owner?: User,", 1);
        let policy = r#"permit (principal, action == Gatehouse::Action::"invoke", resource) when { resource has owner && resource.owner == principal };"#;
        let entities = ENTITIES_SRC.replacen(
            r#"{ "uid": { "type": "Gatehouse::Route", "id": "POST /v1/predict" }, "attrs": { "screen_mode": "block" }"#,
            r#"{ "uid": { "type": "Gatehouse::Route", "id": "POST /v1/predict" }, "attrs": { "screen_mode": "block", "owner": { "__entity": { "type": "Gatehouse\u003a\u003aUser", "id": "alice" } } }"#,
            1,
        );
        assert_ne!(entities, ENTITIES_SRC);
        let store = PolicyStore::from_sources(&schema, policy, &entities).unwrap();
        assert!(store.names_users);
        let alice = principal(&["ai_operator"], None);
        let mut bob = alice.clone();
        bob.sub = "bob".into();
        for _ in 0..2 {
            assert!(!store.authorize_route(&bob, "POST /v1/predict").allowed);
            assert!(store.authorize_route(&alice, "POST /v1/predict").allowed);
        }
    }

    #[test]
    fn max_tokens_is_in_the_memo_key_only_when_a_policy_reads_the_context() {
        assert!(!PolicyStore::embedded().unwrap().reads_context);
        let capped = r#"permit (principal, action == Gatehouse::Action::"predict", resource) when { context.max_tokens <= 100 };"#;
        let store = PolicyStore::from_sources(SCHEMA_SRC, capped, ENTITIES_SRC).unwrap();
        assert!(store.reads_context);
        let p = principal(&["ai_operator"], None);
        for _ in 0..2 {
            assert!(store.authorize_model(&p, "echo", 50).allowed);
            assert!(!store.authorize_model(&p, "echo", 500).allowed);
        }
    }

    #[test]
    fn a_forbid_on_an_action_group_applies_to_its_members() {
        let schema = SCHEMA_SRC.replacen(
            "  action predict appliesTo {",
            "  action \"any\";\n  action predict in [\"any\"] appliesTo {",
            1,
        );
        assert_ne!(schema, SCHEMA_SRC);
        let policies = format!(
            "{POLICIES_SRC}\nforbid (principal, action in Gatehouse::Action::\"any\", resource);"
        );
        let p = principal(&["ai_operator"], None);
        let open = PolicyStore::from_sources(&schema, POLICIES_SRC, ENTITIES_SRC).unwrap();
        assert!(open.authorize_model(&p, "echo", 100).allowed);
        let closed = PolicyStore::from_sources(&schema, &policies, ENTITIES_SRC).unwrap();
        let d = closed.authorize_model(&p, "echo", 100);
        assert!(!d.allowed && d.error.is_none(), "{d:?}");
    }

    #[test]
    fn most_generous_limits_win() {
        let store = PolicyStore::embedded().unwrap();
        let l = store
            .limits_for(&["analyst".into(), "ai_operator".into()])
            .unwrap();
        assert_eq!(l.requests_per_window, 60);
        assert_eq!(l.max_prompt_chars, 8000);
        assert_eq!(l.tokens_per_day, 1_000_000);
        assert_eq!(
            l.tokens_per_month, None,
            "analyst has no monthly limit: the more generous"
        );
        assert!(store.limits_for(&["nobody".into()]).is_none());
        // 1000 an hour and 10 a minute must not combine into 1000 a minute.
        let limits = |requests_per_window, window_seconds| RoleLimits {
            requests_per_window,
            window_seconds,
            max_prompt_chars: 1,
            max_tokens: 1,
            tokens_per_day: 1,
            tokens_per_month: Some(1),
        };
        let store = PolicyStore {
            roles: [
                ("h".to_string(), limits(1000, 3600)),
                ("m".to_string(), limits(10, 60)),
            ]
            .into(),
            predict_roles: ["h".to_string(), "m".to_string()].into(),
            ..store
        };
        let l = store.limits_for(&["m".into(), "h".into()]).unwrap();
        assert_eq!(
            (l.requests_per_window, l.window_seconds),
            (1000, 3600),
            "1000/h (16.7/min) beats 10/min; never 1000/min"
        );
    }

    #[test]
    fn roles_that_do_not_grant_predict_never_widen_its_limits() {
        let store = PolicyStore::embedded().unwrap();
        assert!(store.grants_predict("analyst") && store.grants_predict("trial"));
        assert!(!store.grants_predict("auditor"));
        // The auditor's 30 a minute is more than the analyst's 20: it must not count.
        assert_eq!(store.role("auditor").unwrap().requests_per_window, 30);
        for roles in [["analyst", "auditor"], ["auditor", "analyst"]] {
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            assert_eq!(
                store.limits_for(&roles),
                store.role("analyst").copied(),
                "{roles:?}"
            );
        }
        assert_eq!(store.limits_for(&["auditor".into()]), None);
    }

    #[test]
    fn tenant_budgets_fall_back_to_the_any_tenant_entity() {
        let store = PolicyStore::embedded().unwrap();
        assert_eq!(
            store.tenant_budget("acme").unwrap().tokens_per_day,
            5_000_000
        );
        assert_eq!(
            store.tenant_budget("globex").unwrap().tokens_per_day,
            store.tenant_budget(ANY_TENANT).unwrap().tokens_per_day
        );
    }

    #[test]
    fn decimals_parse_as_cedar_writes_them() {
        assert_eq!(Decimal4::parse("1.0"), Some(Decimal4(10_000)));
        assert_eq!(Decimal4::parse("0.25"), Some(Decimal4(2_500)));
        assert_eq!(Decimal4::parse("-2.5"), Some(Decimal4(-25_000)));
        for bad in [
            "1", ".5", "1.", "1.23456", "1e3", "", "x.0", "1.0.0", "+1.0",
        ] {
            assert_eq!(Decimal4::parse(bad), None, "{bad}");
        }
        assert_eq!(Decimal4(25_000).to_string(), "2.5000");
        assert_eq!(Decimal4(15_000).ceil_mul(3), 5, "1.5 x 3 = 4.5 -> 5");
        assert_eq!(Decimal4::ONE.ceil_mul(7), 7);
        let store = PolicyStore::embedded().unwrap();
        let sonnet = store.model("claude-sonnet").unwrap();
        assert_eq!(sonnet.weight(), Decimal4(50_000));
        assert_eq!(sonnet.temperature_max, Some(Decimal4::ONE));
        assert_eq!(store.model("legacy-model").unwrap().weight(), Decimal4::ONE);
    }

    #[test]
    fn a_model_with_a_zero_weight_is_refused_at_load() {
        let entities = ENTITIES_SRC.replace(r#""arg": "5.0""#, r#""arg": "0.0""#);
        assert!(matches!(
            PolicyStore::from_sources(SCHEMA_SRC, POLICIES_SRC, &entities),
            Err(PolicyError::Entities(_))
        ));
    }
}
