//! The authorization matrix: every (role, tenant) × route × audit-content × model cell from ONE
//! table, negative cells included (another tenant's model, a disabled model, a role with no
//! grants, an unknown role, no role at all, an unknown route or model, the content role without
//! the auditor role). Expected values are written out, not derived
//! from the policies, so a policy change that moves any cell fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse::auth::Principal;
use gatehouse::policy::PolicyStore;

const ROUTES: [&str; 7] = [
    "POST /v1/predict",
    "GET /v1/models",
    "GET /v1/usage",
    "POST /v1/suspensions/lift",
    "GET /v1/predict",
    "GET /v1/audit",
    "DELETE /v1/audit",
];
const MODELS: [&str; 6] = [
    "echo",
    "claude-haiku",
    "claude-sonnet",
    "acme-finetune",
    "legacy-model",
    "no-such-model",
];

struct Row {
    roles: &'static [&'static str],
    tenant: Option<&'static str>,
    /// One cell per entry of ROUTES.
    routes: [bool; 7],
    /// May read prompt/output text in audit records (`read_audit_content` on GET /v1/audit).
    content: bool,
    /// One cell per entry of MODELS.
    models: [bool; 6],
}

const Y: bool = true;
const N: bool = false;

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                   routes: predict models usage lift GET-p GET-audit DELETE-audit; content; models: echo haiku sonnet acme-ft legacy none
    Row { roles: &["ai_operator"],                        tenant: None,            routes: [Y, Y, Y, Y, N, N, N], content: N, models: [Y, Y, Y, N, N, N] },
    Row { roles: &["ai_operator"],                        tenant: Some("acme"),    routes: [Y, Y, Y, N, N, N, N], content: N, models: [Y, Y, Y, Y, N, N] },
    Row { roles: &["ai_operator"],                        tenant: Some("globex"),  routes: [Y, Y, Y, N, N, N, N], content: N, models: [Y, Y, Y, N, N, N] },
    Row { roles: &["analyst"],                            tenant: None,            routes: [Y, Y, Y, N, N, N, N], content: N, models: [Y, Y, N, N, N, N] },
    Row { roles: &["analyst"],                            tenant: Some("acme"),    routes: [Y, Y, Y, N, N, N, N], content: N, models: [Y, Y, N, Y, N, N] },
    Row { roles: &["analyst", "ai_operator"],             tenant: None,            routes: [Y, Y, Y, Y, N, N, N], content: N, models: [Y, Y, Y, N, N, N] },
    Row { roles: &["analyst", "auditor"],                 tenant: None,            routes: [Y, Y, Y, N, N, Y, N], content: N, models: [Y, Y, N, N, N, N] },
    Row { roles: &["trial"],                              tenant: None,            routes: [Y, Y, Y, N, N, N, N], content: N, models: [Y, Y, N, N, N, N] },
    Row { roles: &["trial"],                              tenant: Some("acme"),    routes: [Y, Y, Y, N, N, N, N], content: N, models: [Y, Y, N, Y, N, N] },
    Row { roles: &["auditor"],                            tenant: None,            routes: [N, N, N, N, N, Y, N], content: N, models: [N, N, N, N, N, N] },
    Row { roles: &["auditor"],                            tenant: Some("acme"),    routes: [N, N, N, N, N, Y, N], content: N, models: [N, N, N, N, N, N] },
    Row { roles: &["auditor", "audit_content_reader"],    tenant: Some("acme"),    routes: [N, N, N, N, N, Y, N], content: Y, models: [N, N, N, N, N, N] },
    Row { roles: &["audit_content_reader"],               tenant: None,            routes: [N, N, N, N, N, N, N], content: N, models: [N, N, N, N, N, N] },
    Row { roles: &["ai_operator", "auditor"],             tenant: None,            routes: [Y, Y, Y, Y, N, Y, N], content: N, models: [Y, Y, Y, N, N, N] },
    Row { roles: &["root"],                               tenant: None,            routes: [N, N, N, N, N, N, N], content: N, models: [N, N, N, N, N, N] },
    Row { roles: &["root", "auditor"],                    tenant: None,            routes: [N, N, N, N, N, Y, N], content: N, models: [N, N, N, N, N, N] },
    Row { roles: &[],                                     tenant: Some("acme"),    routes: [N, N, N, N, N, N, N], content: N, models: [N, N, N, N, N, N] },
    Row { roles: &["AI_OPERATOR"],                        tenant: None,            routes: [N, N, N, N, N, N, N], content: N, models: [N, N, N, N, N, N] },
    Row { roles: &["AUDITOR"],                            tenant: None,            routes: [N, N, N, N, N, N, N], content: N, models: [N, N, N, N, N, N] },
];

#[test]
fn every_cell_of_the_matrix() {
    let store = PolicyStore::embedded().unwrap();
    let mut checked = 0;
    for row in MATRIX {
        let p = Principal {
            sub: "matrix-user".into(),
            roles: row.roles.iter().map(|r| r.to_string()).collect(),
            tenant: row.tenant.map(str::to_owned),
            token_id: "t".into(),
            issuer: "https://issuer.test/".into(),
            // Far in the future (2096): these principals never expire mid-test.
            exp: 4_000_000_000,
        };
        for (route, want) in ROUTES.iter().zip(row.routes) {
            let d = store.authorize_route(&p, route);
            assert_eq!(
                d.allowed, want,
                "roles {:?} tenant {:?} route {route}: {d:?}",
                row.roles, row.tenant
            );
            if d.allowed {
                assert!(!d.policy_ids.is_empty(), "an allow always names its policy");
            }
            checked += 1;
        }
        let d = store.authorize_audit_content(&p, "GET /v1/audit");
        assert_eq!(
            d.allowed, row.content,
            "roles {:?} tenant {:?} audit content: {d:?}",
            row.roles, row.tenant
        );
        checked += 1;
        for (model, want) in MODELS.iter().zip(row.models) {
            let d = store.authorize_model(&p, model, 256);
            assert_eq!(
                d.allowed, want,
                "roles {:?} tenant {:?} model {model}: {d:?}",
                row.roles, row.tenant
            );
            checked += 1;
        }
    }
    assert_eq!(checked, MATRIX.len() * (ROUTES.len() + 1 + MODELS.len()));
}

#[test]
fn an_allow_names_the_policy_that_granted_it_and_a_forbid_names_itself() {
    let store = PolicyStore::embedded().unwrap();
    let p = |roles: &[&str], tenant: Option<&str>| Principal {
        sub: "u".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        tenant: tenant.map(str::to_owned),
        token_id: "t".into(),
        issuer: "https://issuer.test/".into(),
        // Far in the future (2096): these principals never expire mid-test.
        exp: 4_000_000_000,
    };
    let d = store.authorize_model(&p(&["ai_operator"], None), "claude-sonnet", 256);
    assert_eq!(d.policy_ids, vec!["model-premium-operator".to_string()]);
    let d = store.authorize_model(&p(&["ai_operator"], Some("globex")), "acme-finetune", 256);
    assert!(!d.allowed);
    assert_eq!(d.policy_ids, vec!["forbid-cross-tenant".to_string()]);
    let d = store.authorize_model(&p(&["ai_operator"], None), "legacy-model", 256);
    assert_eq!(d.policy_ids, vec!["forbid-disabled-model".to_string()]);
}

#[test]
fn each_route_is_granted_by_its_own_policy() {
    let store = PolicyStore::embedded().unwrap();
    let operator = Principal {
        issuer: "https://issuer.test/".into(),
        sub: "u".into(),
        exp: u64::MAX,
        roles: vec!["ai_operator".into()],
        tenant: None,
        token_id: "t".into(),
    };
    for (route, policy) in [
        ("POST /v1/predict", "route-predict-operator"),
        ("GET /v1/models", "route-models"),
        ("GET /v1/usage", "route-usage"),
        ("POST /v1/suspensions/lift", "route-suspension-lift"),
    ] {
        let d = store.authorize_route(&operator, route);
        assert_eq!(d.policy_ids, vec![policy.to_string()], "{route}");
    }
}
