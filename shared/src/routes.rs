//! The predict function's routes, dispatched on API Gateway's `routeKey`: `POST /v1/predict`
//! (the pipeline in `crate::predict`), and the routes that show a principal its models and usage
//! and let a platform operator lift a suspension. Each route has its own Cedar route policy,
//! which the authorizer enforces per (token, route) and the function checks again. Every answer
//! to an authenticated request writes one audit record, as predict's do; no answer without it.
//!
//! Cost: `GET /v1/models` reads nothing; `GET /v1/usage` makes up to three eventually
//! consistent `GetItem`s (0.5 RRU each: request counter, the principal's and the tenant's token
//! items); `POST /v1/suspensions/lift` two `UpdateItem`s. None of them spends request quota or
//! budget: API Gateway's stage throttle bounds them.
use std::time::{Instant, SystemTime};

use http::{Response, StatusCode};
use serde::Serialize;

use crate::api::FieldError;
use crate::audit::{AuditEvent, Decision, Field};
use crate::error::{ApiError, LimitName};
use crate::http::{RatePolicy, json_response, problem_response, rfc3339_secs};
use crate::predict::{Inbound, Predictor, ROUTE as PREDICT_ROUTE, is_json};
use crate::principal::Principal;
use crate::ratelimit::budget::BudgetScope;
use crate::ratelimit::{Window, principal_key, request_counter_key};

pub const MODELS_ROUTE: &str = "GET /v1/models";
pub const USAGE_ROUTE: &str = "GET /v1/usage";
pub const LIFT_ROUTE: &str = "POST /v1/suspensions/lift";
/// Every route the predict function serves.
pub const ROUTES: [&str; 4] = [PREDICT_ROUTE, MODELS_ROUTE, USAGE_ROUTE, LIFT_ROUTE];

/// One model as `GET /v1/models` lists it, with the limits that apply to this principal.
#[derive(Debug, Serialize)]
pub struct ModelEntry {
    pub id: String,
    pub tier: String,
    pub max_tokens: u32,
    pub max_prompt_chars: u32,
    pub temperature_max: f64,
    pub token_weight: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_window: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ModelList {
    pub default_model: String,
    pub models: Vec<ModelEntry>,
}

/// One limit's state in `GET /v1/usage`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WindowUsage {
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    pub window_seconds: u64,
    pub reset_seconds: u64,
}

#[derive(Debug, Serialize)]
pub struct TokenUsage {
    pub day: WindowUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<WindowUsage>,
}

#[derive(Debug, Serialize)]
pub struct TenantUsage {
    pub tenant: String,
    pub day: WindowUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<WindowUsage>,
}

#[derive(Debug, Serialize)]
pub struct Suspension {
    pub suspended: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct UsageReport {
    pub principal: String,
    pub requests: WindowUsage,
    pub tokens: TokenUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_tokens: Option<TenantUsage>,
    pub suspension: Suspension,
}

#[derive(Debug, Serialize)]
pub struct LiftReport {
    pub principal: String,
    pub lifted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was_suspended_until: Option<String>,
}

/// What a read route answered: a JSON body, its audit reason and extra audit attributes.
struct Answer {
    body: serde_json::Value,
    reason: &'static str,
    extra: Vec<(&'static str, Field)>,
}

fn window_of(p: &RatePolicy) -> WindowUsage {
    WindowUsage {
        limit: p.quota,
        used: p.quota.saturating_sub(p.remaining),
        remaining: p.remaining,
        window_seconds: p.window_secs,
        reset_seconds: p.reset_secs,
    }
}

impl Predictor {
    /// Serves one request of `route_key` (API Gateway's `routeKey`).
    pub async fn serve(&self, route_key: &str, inbound: Inbound<'_>) -> Response<String> {
        if route_key == PREDICT_ROUTE {
            return self.handle(inbound).await;
        }
        let started = Instant::now();
        let now = self.clock.now();
        let result = match ROUTES.iter().find(|r| **r == route_key) {
            Some(route) => self.read_route(route, &inbound, now).await,
            None => Err(ApiError::NotFound(route_key.to_owned())),
        };
        let (decision, reason) = match &result {
            Ok(a) => (Decision::Allowed, a.reason),
            Err(e) => (e.decision(), e.reason()),
        };
        let no_extra = Vec::new();
        let event = AuditEvent {
            request_id: inbound.request_id,
            time: now,
            principal: inbound.principal.as_ref(),
            route: route_key,
            model: None,
            decision,
            reason,
            detail: None,
            policy_ids: &[],
            screen: None,
            prompt: None,
            output: None,
            source_ip: inbound.source_ip,
            user_agent: inbound.user_agent,
            latency: started.elapsed(),
            extra: result.as_ref().map_or(&no_extra, |a| &a.extra),
        };
        let base = self.config.problem_base.as_str();
        let sub = inbound.principal.as_ref().map(|p| p.sub.as_str());
        if let Err(e) = self.audit.record(&event).await {
            crate::metrics::emit(
                "predict",
                Decision::Unavailable.metric_name(),
                started.elapsed(),
            );
            tracing::error!(request_id = inbound.request_id, route = route_key, principal = sub, error = %e, "audit write failed; answering 503");
            return problem_response(
                &ApiError::Unavailable(e.to_string()),
                inbound.request_id,
                base,
            );
        }
        crate::metrics::emit("predict", decision.metric_name(), started.elapsed());
        tracing::info!(
            request_id = inbound.request_id,
            route = route_key,
            principal = sub,
            decision = decision.as_str(),
            reason,
            "route"
        );
        match result {
            Ok(a) => json_response(StatusCode::OK, &a.body, "application/json"),
            Err(e) => problem_response(&e, inbound.request_id, base),
        }
    }

    async fn read_route(
        &self,
        route: &str,
        inbound: &Inbound<'_>,
        now: SystemTime,
    ) -> Result<Answer, ApiError> {
        let principal = inbound
            .principal
            .as_ref()
            .ok_or(ApiError::Unauthenticated)?;
        // As in predict: a cached Allow must not outlive the token.
        if principal.is_expired(now, self.config.token_leeway) {
            return Err(ApiError::TokenExpired);
        }
        // The authorizer decided this route already; the function holds to the same policy.
        if !self.policy.authorize_route(principal, route).allowed {
            return Err(ApiError::Forbidden {
                reason: format!("none of your roles may call {route}"),
            });
        }
        match route {
            MODELS_ROUTE => Ok(Answer {
                body: to_json(&self.models_for(principal)?),
                reason: "ok",
                extra: Vec::new(),
            }),
            USAGE_ROUTE => Ok(Answer {
                body: to_json(&self.usage_of(principal, now).await?),
                reason: "ok",
                extra: Vec::new(),
            }),
            _ => self.lift(inbound, now).await,
        }
    }

    /// The models `principal` may use here, with the limits that apply to it.
    pub fn models_for(&self, principal: &Principal) -> Result<ModelList, ApiError> {
        let role = self
            .policy
            .limits_for(&principal.roles)
            .ok_or_else(|| ApiError::Forbidden {
                reason: "none of your roles may call predict".into(),
            })?;
        let cap = self.config.max_tokens_cap;
        let prompt_cap = u32::try_from(self.config.default_max_prompt_chars).unwrap_or(u32::MAX);
        let models = self
            .policy
            .models()
            .filter(|(id, _)| {
                self.model.serves(id)
                    && self
                        .policy
                        .authorize_model(principal, id, role.max_tokens)
                        .allowed
            })
            .map(|(id, m)| ModelEntry {
                id: id.to_owned(),
                tier: m.tier.clone(),
                max_tokens: role.max_tokens.min(m.max_tokens.unwrap_or(cap)).min(cap),
                max_prompt_chars: role.max_prompt_chars.min(prompt_cap),
                temperature_max: m
                    .temperature_max
                    .map_or(*crate::api::TEMPERATURE_RANGE.end(), |t| t.as_f64())
                    .min(*crate::api::TEMPERATURE_RANGE.end()),
                token_weight: m.weight().as_f64(),
                requests_per_window: m
                    .requests_per_window
                    .map(|r| r.min(role.requests_per_window)),
            })
            .collect();
        Ok(ModelList {
            default_model: self.config.default_model.clone(),
            models,
        })
    }

    /// The principal's request window, token budgets and suspension (reads only).
    pub async fn usage_of(
        &self,
        principal: &Principal,
        now: SystemTime,
    ) -> Result<UsageReport, ApiError> {
        let role = self
            .policy
            .limits_for(&principal.roles)
            .ok_or_else(|| ApiError::Forbidden {
                reason: "none of your roles may call predict".into(),
            })?;
        let unavailable = |e: crate::ratelimit::RateError| ApiError::Unavailable(e.to_string());
        let key = principal_key(principal);
        let window =
            Window::containing(now, u64::from(role.window_seconds)).map_err(unavailable)?;
        let counter = self
            .budgets
            .store()
            .read(&request_counter_key(&key, window))
            .await
            .map_err(unavailable)?;
        let used = counter
            .get("count")
            .map_or(0, |c| u64::try_from(*c).unwrap_or(0));
        let limit = u64::from(role.requests_per_window);
        let tenant = principal
            .tenant
            .as_deref()
            .and_then(|t| self.policy.tenant_budget(t).map(|b| (t, b)));
        let scope = BudgetScope {
            principal: &key,
            role: &role,
            tenant,
        };
        let budgets = self.budgets.usage(&scope, now).await.map_err(unavailable)?;
        let find = |name: LimitName| {
            budgets
                .policies
                .iter()
                .find(|p| p.name == name)
                .map(window_of)
        };
        let day =
            find(LimitName::Tokens).ok_or_else(|| ApiError::Unavailable("no day budget".into()))?;
        Ok(UsageReport {
            principal: key.to_owned(),
            requests: WindowUsage {
                limit,
                used,
                remaining: limit.saturating_sub(used),
                window_seconds: window.secs,
                reset_seconds: window.reset_after(now),
            },
            tokens: TokenUsage {
                day,
                month: find(LimitName::TokensMonth),
            },
            tenant_tokens: match (tenant, find(LimitName::TenantTokens)) {
                (Some((t, _)), Some(day)) => Some(TenantUsage {
                    tenant: t.to_owned(),
                    day,
                    month: find(LimitName::TenantTokensMonth),
                }),
                _ => None,
            },
            suspension: Suspension {
                suspended: budgets.suspended_until.is_some(),
                until: budgets.suspended_until.map(rfc3339_secs),
            },
        })
    }

    /// `POST /v1/suspensions/lift` with `{"principal": "<id>"}`.
    async fn lift(&self, inbound: &Inbound<'_>, now: SystemTime) -> Result<Answer, ApiError> {
        if !is_json(inbound.content_type) {
            return Err(ApiError::UnsupportedMediaType);
        }
        if inbound.body.len() > self.config.max_body_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: self.config.max_body_bytes,
            });
        }
        let members = crate::api::object_members(inbound.body)?;
        let mut errors = Vec::new();
        let mut target = None;
        for (name, value) in &members {
            match (name.as_str(), value) {
                ("principal", serde_json::Value::String(s))
                    if target.is_none() && (1..=512).contains(&s.chars().count()) =>
                {
                    target = Some(s.clone())
                }
                ("principal", _) => errors.push(FieldError::at(
                    "principal",
                    "must be given once, as a string of 1 to 512 characters",
                )),
                (other, _) => errors.push(FieldError::at(
                    other,
                    "is not a member of a lift request (principal)",
                )),
            }
        }
        let target = match (target, errors.is_empty()) {
            (Some(t), true) => t,
            (None, true) => {
                return Err(ApiError::invalid("principal", "is required"));
            }
            _ => return Err(ApiError::Invalid { errors }),
        };
        let was = self
            .budgets
            .lift(&target, now)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        if was.is_some() {
            tracing::warn!(
                request_id = inbound.request_id,
                target = target.as_str(),
                "suspension lifted"
            );
        }
        let report = LiftReport {
            principal: target.clone(),
            lifted: was.is_some(),
            was_suspended_until: was.map(rfc3339_secs),
        };
        Ok(Answer {
            body: to_json(&report),
            reason: if was.is_some() {
                "suspension_lifted"
            } else {
                "not_suspended"
            },
            extra: vec![("target_principal", Field::S(target))],
        })
    }
}

/// A report as JSON (our own plain structs always serialize).
fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, PredictConfig};

    fn predictor() -> Predictor {
        crate::setup::in_memory_predictor(PredictConfig::from_env(&Env(|_| None)).unwrap()).unwrap()
    }

    fn who(sub: &str, roles: &[&str], tenant: Option<&str>) -> Option<Principal> {
        Some(Principal {
            issuer: "https://issuer.test/".into(),
            sub: sub.into(),
            exp: u64::MAX,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            tenant: tenant.map(str::to_owned),
            token_id: "t".into(),
        })
    }

    async fn get(
        p: &Predictor,
        route: &str,
        principal: Option<Principal>,
    ) -> (u16, serde_json::Value) {
        post(p, route, principal, "").await
    }

    async fn post(
        p: &Predictor,
        route: &str,
        principal: Option<Principal>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let r = p
            .serve(
                route,
                Inbound {
                    request_id: "rid",
                    principal,
                    content_type: Some("application/json"),
                    body: body.as_bytes(),
                    source_ip: None,
                    user_agent: None,
                },
            )
            .await;
        let v = serde_json::from_str(r.body()).unwrap_or(serde_json::Value::Null);
        (r.status().as_u16(), v)
    }

    fn ids(v: &serde_json::Value) -> Vec<&str> {
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn models_lists_what_the_principal_may_use_with_its_limits() {
        let p = predictor();
        let (s, v) = get(&p, MODELS_ROUTE, who("a", &["analyst"], None)).await;
        assert_eq!(s, 200);
        assert_eq!(ids(&v), ["claude-haiku", "echo"]);
        assert_eq!(v["default_model"], "echo");
        let haiku = &v["models"][0];
        assert_eq!(
            (
                haiku["max_tokens"].as_u64(),
                haiku["max_prompt_chars"].as_u64()
            ),
            (Some(1024), Some(4000))
        );
        assert_eq!(haiku["temperature_max"], 1.0);
        let (_, v) = get(&p, MODELS_ROUTE, who("o", &["ai_operator"], Some("acme"))).await;
        assert_eq!(
            ids(&v),
            ["acme-finetune", "claude-haiku", "claude-sonnet", "echo"]
        );
        let sonnet = &v["models"][2];
        assert_eq!(
            (
                sonnet["token_weight"].as_f64(),
                sonnet["requests_per_window"].as_u64()
            ),
            (Some(5.0), Some(30))
        );
        let (s, v) = get(&p, MODELS_ROUTE, who("x", &["auditor"], None)).await;
        assert_eq!((s, v["title"].as_str()), (403, Some("Forbidden")));
        assert_eq!(get(&p, MODELS_ROUTE, None).await.0, 401);
    }

    #[tokio::test]
    async fn usage_reports_requests_tokens_and_suspension_and_spends_nothing() {
        let p = predictor();
        let alice = || who("alice", &["ai_operator"], Some("acme"));
        let (s, before) = get(&p, USAGE_ROUTE, alice()).await;
        assert_eq!(s, 200, "{before}");
        assert_eq!(before["requests"]["used"], 0);
        assert_eq!(before["tokens"]["day"]["limit"], 1_000_000);
        assert_eq!(before["tokens"]["month"]["limit"], 20_000_000);
        assert_eq!(before["tenant_tokens"]["tenant"], "acme");
        assert_eq!(before["suspension"]["suspended"], false);
        let (s, _) = post(&p, PREDICT_ROUTE, alice(), r#"{"prompt":"hello"}"#).await;
        assert_eq!(s, 200);
        let (_, after) = get(&p, USAGE_ROUTE, alice()).await;
        assert_eq!(
            after["requests"]["used"], 1,
            "the usage read itself is not counted"
        );
        let spent = after["tokens"]["day"]["used"].as_u64().unwrap();
        assert!(spent > 0);
        assert_eq!(after["tenant_tokens"]["day"]["used"].as_u64(), Some(spent));
        assert!(after.get("tenant_tokens").is_some());
        let (_, lone) = get(&p, USAGE_ROUTE, who("bob", &["analyst"], None)).await;
        assert!(lone.get("tenant_tokens").is_none() && lone["tokens"].get("month").is_none());
    }

    #[tokio::test]
    async fn lift_is_for_platform_operators_and_audited() {
        let p = predictor();
        let now = p.clock.now();
        let until = crate::clock::unix_secs(now) + 600;
        let eve = crate::principal::principal_key("https://issuer.test/", None, "eve");
        p.budgets
            .suspend(&eve, until, crate::clock::unix_secs(now))
            .await
            .unwrap();
        let (_, v) = get(&p, USAGE_ROUTE, who("eve", &["analyst"], None)).await;
        assert_eq!(v["suspension"]["suspended"], true);
        let body = &format!(r#"{{"principal":"{eve}"}}"#);
        let (s, _) = post(
            &p,
            LIFT_ROUTE,
            who("t", &["ai_operator"], Some("acme")),
            body,
        )
        .await;
        assert_eq!(s, 403, "a tenant's operator may not lift");
        let (s, _) = post(&p, LIFT_ROUTE, who("an", &["analyst"], None), body).await;
        assert_eq!(s, 403);
        let (s, v) = post(
            &p,
            LIFT_ROUTE,
            who("root-op", &["ai_operator"], None),
            &format!(r#"{{"principal":"{eve}","x":1}}"#),
        )
        .await;
        assert_eq!((s, v["errors"][0]["pointer"].as_str()), (400, Some("#/x")));
        let (s, v) = post(&p, LIFT_ROUTE, who("root-op", &["ai_operator"], None), body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            (v["lifted"].as_bool(), v["was_suspended_until"].as_str()),
            (Some(true), Some(rfc3339_secs(until).as_str()))
        );
        let (_, v) = post(&p, LIFT_ROUTE, who("root-op", &["ai_operator"], None), body).await;
        assert_eq!(v["lifted"], false);
        let (_, v) = get(&p, USAGE_ROUTE, who("eve", &["analyst"], None)).await;
        assert_eq!(v["suspension"]["suspended"], false);
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_404_problem() {
        let p = predictor();
        let (s, v) = get(&p, "GET /v1/nothing", who("a", &["analyst"], None)).await;
        assert_eq!((s, v["title"].as_str()), (404, Some("Not found")));
    }
}
