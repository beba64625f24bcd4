//! Every environment of `samconfig.toml` would start: its parameter overrides, on top of the
//! template's defaults, go through predict's own cold-start checks (`PredictConfig::from_env`
//! and `setup::check_models`). Issue 10.1: the prod environment once deployed Bedrock with the
//! default model `echo`, which Bedrock cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use gatehouse::config::{Env, PredictConfig};
use gatehouse::model::{ModelBackend, ModelError, ModelOutput, ModelRequest};
use gatehouse::policy::PolicyStore;
use gatehouse_dev::template::Template;

/// A backend that runs exactly the models of a `GATEHOUSE_BEDROCK_MODELS` map (as
/// `BedrockModel::serves` does), or every model for `echo`.
struct Serves(Option<Vec<String>>);

#[async_trait::async_trait]
impl ModelBackend for Serves {
    fn serves(&self, model: &str) -> bool {
        self.0.as_ref().is_none_or(|m| m.iter().any(|x| x == model))
    }
    async fn complete(&self, _: &ModelRequest<'_>) -> Result<ModelOutput, ModelError> {
        Err(ModelError::Backend("not called".into()))
    }
}

/// `parameter_overrides` of each `[<env>.deploy.parameters]` section, as name → value. SAM
/// takes either one string of space-separated `Name=value` pairs or an array of them.
fn environments(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let doc: toml::Table = toml::from_str(text).unwrap();
    let mut out = BTreeMap::new();
    for (env, section) in &doc {
        let Some(overrides) = section
            .get("deploy")
            .and_then(|d| d.get("parameters"))
            .and_then(|p| p.get("parameter_overrides"))
        else {
            continue;
        };
        let items: Vec<&str> = match overrides {
            toml::Value::String(s) => vec![s.as_str()],
            toml::Value::Array(a) => a.iter().filter_map(toml::Value::as_str).collect(),
            other => panic!("{env}: parameter_overrides is {other:?}"),
        };
        let pairs = out.entry(env.clone()).or_insert_with(BTreeMap::new);
        for item in items {
            for pair in split_overrides(item) {
                if let Some((k, v)) = pair.split_once('=') {
                    pairs.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
        }
    }
    out
}

/// `A=1 B="x y" C=2` → the three pairs (SAM's space-separated form); one pair stays one.
fn split_overrides(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut in_quotes) = (String::new(), false);
    for c in s.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                cur.push(c);
            }
            ' ' if !in_quotes => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn every_samconfig_environment_passes_predicts_cold_start_checks() {
    let root = gatehouse_dev::paths::repo_root();
    let text = std::fs::read_to_string(root.join("samconfig.toml")).unwrap();
    let envs = environments(&text);
    assert!(
        envs.contains_key("prod") && envs.contains_key("default"),
        "{envs:?}"
    );
    assert_eq!(
        envs["prod"]["ModelBackend"], "bedrock",
        "the check must see Bedrock"
    );
    let template = Template::load(&gatehouse_dev::paths::template_path()).unwrap();
    let policy = PolicyStore::embedded().unwrap();
    for (name, overrides) in &envs {
        // The predict function's environment: template defaults, then the overrides.
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for (var, value) in template.function_env("PredictFunction").unwrap() {
            vars.insert(var, value);
        }
        let by_param = [
            ("ModelBackend", "GATEHOUSE_MODEL_BACKEND"),
            ("BedrockModels", "GATEHOUSE_BEDROCK_MODELS"),
            ("DefaultModel", "GATEHOUSE_DEFAULT_MODEL"),
            ("ProblemTypeBaseUrl", "GATEHOUSE_PROBLEM_BASE_URL"),
        ];
        for (param, var) in by_param {
            if let Some(v) = overrides.get(param) {
                vars.insert(var.to_owned(), v.clone());
            }
        }
        let config = PredictConfig::from_env(&Env(|k: &str| vars.get(k).cloned()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let backend = match config.model_backend {
            gatehouse::config::ModelBackendKind::Echo => Serves(None),
            gatehouse::config::ModelBackendKind::Bedrock => {
                Serves(Some(config.bedrock_models.keys().cloned().collect()))
            }
        };
        gatehouse::setup::check_models(&policy, &backend, &config)
            .unwrap_or_else(|e| panic!("samconfig environment {name} would not start: {e}"));
    }
}

#[test]
fn both_override_forms_are_read() {
    let text = r#"
[a.deploy.parameters]
parameter_overrides = "X=1 Y=\"p=q,r=s\""

[b.deploy.parameters]
parameter_overrides = [
  "Z=2",
  # a comment
  "W=\"k=v\"",
]
"#;
    let envs = environments(text);
    assert_eq!(envs["a"]["X"], "1");
    assert_eq!(envs["a"]["Y"], "p=q,r=s");
    assert_eq!(envs["b"]["Z"], "2");
    assert_eq!(envs["b"]["W"], "k=v");
}
