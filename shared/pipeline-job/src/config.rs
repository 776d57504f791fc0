use crossdeploy_protocol::{
    DeploySpec, DeploymentStrategy, EcsSpec, EcsStrategy, LambdaSpec, RoleArn, Target, ECS_MAX_BAKE_MINUTES,
};
use serde_json::Value;
use std::collections::BTreeMap;

/// What the action deploys. Custom actions take it from their provider; Invoke actions from `"Kind"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Lambda,
    Ecs,
}

/// A job's configuration, checked against the contract (DESIGN.md, "Configuration contract").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployConfig {
    pub target: Target,
    pub spec: DeploySpec,
    pub alarm_names: Vec<String>,
}

/// A configuration problem, naming the key and what was expected. Always a `ConfigurationError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    fn new(key: &str, problem: impl Into<String>) -> Self {
        Self { key: key.to_owned(), problem: problem.into() }
    }
}

const LAMBDA_KEYS: &[&str] = &[
    "TargetRoleArn",
    "FunctionName",
    "Alias",
    "ArtifactPath",
    "ImageFile",
    "DeploymentStrategy",
    "AlarmNames",
    "Region",
];
const ECS_KEYS: &[&str] = &[
    "TargetRoleArn",
    "ClusterName",
    "ServiceName",
    "FileName",
    "ContainerName",
    "TimeoutMinutes",
    "AlarmNames",
    "Region",
    "DeploymentStrategy",
    "BakeTimeMinutes",
    "EcsAlarms",
];

/// Parses an Invoke action's `UserParameters`: a JSON object with `"Kind"` and the contract's keys.
pub fn parse_user_parameters(raw: Option<&str>) -> Result<DeployConfig, ConfigError> {
    const KEY: &str = "UserParameters";
    let raw = raw.map(str::trim).filter(|r| !r.is_empty()).ok_or_else(|| {
        ConfigError::new(KEY, "missing; expected a JSON object such as {\"Kind\":\"Lambda\",\"TargetRoleArn\":...}")
    })?;
    let value: Value = serde_json::from_str(raw).map_err(|e| {
        ConfigError::new(KEY, format!("not JSON ({}); expected a JSON object with \"Kind\" and the action's keys", e))
    })?;
    let Value::Object(map) = value else {
        return Err(ConfigError::new(KEY, "not a JSON object; expected {\"Kind\":\"Lambda\"|\"Ecs\", ...}"));
    };
    let mut map: BTreeMap<String, Value> = map.into_iter().collect();
    let kind = match map.remove("Kind") {
        None => return Err(ConfigError::new("Kind", "missing; expected \"Lambda\" or \"Ecs\"")),
        Some(Value::String(k)) if k == "Lambda" => Kind::Lambda,
        Some(Value::String(k)) if k == "Ecs" => Kind::Ecs,
        Some(other) => {
            return Err(ConfigError::new("Kind", format!("unknown kind {other}; expected \"Lambda\" or \"Ecs\"")))
        }
    };
    parse_configuration(kind, &map)
}

/// How long CodePipeline lets an action run, by the way crossdeploy is wired into the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionLimit {
    /// The action's timeout in CodePipeline, in minutes.
    pub minutes: u32,
    /// How CodePipeline's quotas name the action.
    pub name: &'static str,
}

/// CodePipeline's quotas: an AWS Lambda invoke action runs for at most 24 hours (continuation
/// jobs included: each answer restarts the 20-minute reply timer, the 24 hours cover the whole).
pub const INVOKE_ACTION_LIMIT: ActionLimit = ActionLimit { minutes: 24 * 60, name: "an AWS Lambda invoke action" };
/// CodePipeline's quotas give custom actions 24 hours in an older version of the page and fold
/// them into "all other actions: 1 hour" in the current one. Either way, 1 hour is safe.
pub const CUSTOM_ACTION_LIMIT: ActionLimit = ActionLimit { minutes: 60, name: "a custom action" };
/// Minutes of an action kept for the deployment itself (upload, publish, rollout's end, answer).
pub const DEPLOYMENT_RESERVE_MINUTES: u32 = 10;

/// Refuses a bake or rollout timeout longer than the action can run in CodePipeline: the job
/// would be failed by CodePipeline's action timeout half-way through.
pub fn check_durations(config: &DeployConfig, limit: ActionLimit) -> Result<(), ConfigError> {
    let most = limit.minutes.saturating_sub(DEPLOYMENT_RESERVE_MINUTES);
    let (key, minutes, what) = match &config.spec {
        DeploySpec::Lambda(l) => {
            ("DeploymentStrategy", l.strategy.total_bake_minutes(), format!("`{}` bakes for", l.strategy))
        }
        DeploySpec::Ecs(e) => ("TimeoutMinutes", e.timeout_minutes, "the rollout is followed for".to_owned()),
    };
    if minutes > most {
        return Err(ConfigError::new(
            key,
            format!(
                "{what} {minutes} minutes, but {} runs for at most {} minutes in CodePipeline, {DEPLOYMENT_RESERVE_MINUTES} of which crossdeploy keeps for the deployment itself: make it at most {most} minutes{}",
                limit.name,
                limit.minutes,
                if limit == CUSTOM_ACTION_LIMIT { ", or deploy through an Invoke action (24 hours)" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// The configuration of a job, whichever way it came: an Invoke action's UserParameters, or a
/// custom action's configuration properties (the provider gives the kind). Durations are
/// checked against what CodePipeline lets that kind of action run.
pub fn job_configuration(job: &crate::Job) -> Result<DeployConfig, ConfigError> {
    let (config, limit) = match &job.source {
        crate::JobSource::Invoke | crate::JobSource::Local => {
            (parse_user_parameters(job.configuration.get("UserParameters").map(String::as_str))?, INVOKE_ACTION_LIMIT)
        }
        crate::JobSource::Poll { provider, .. } => {
            let kind = crate::actions::kind_of(provider).ok_or_else(|| {
                ConfigError::new("provider", format!("`{provider}` is not a crossdeploy action type"))
            })?;
            let map: BTreeMap<String, Value> =
                job.configuration.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            (parse_configuration(kind, &map)?, CUSTOM_ACTION_LIMIT)
        }
    };
    check_durations(&config, limit)?;
    Ok(config)
}

/// Parses the contract's keys for one kind. Shared by Invoke actions and custom actions.
pub fn parse_configuration(kind: Kind, map: &BTreeMap<String, Value>) -> Result<DeployConfig, ConfigError> {
    let known = match kind {
        Kind::Lambda => LAMBDA_KEYS,
        Kind::Ecs => ECS_KEYS,
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ConfigError::new(
            &shown_key(unknown),
            format!("unknown key for a {kind:?} action; the keys are {}", known.join(", ")),
        ));
    }
    let keys = Keys(map);
    let role_arn: RoleArn = keys
        .required("TargetRoleArn")?
        .parse()
        .map_err(|e: crossdeploy_protocol::RoleArnError| ConfigError::new("TargetRoleArn", e.to_string()))?;
    let region = keys.optional("Region")?;
    if let Some(r) = &region {
        if !is_region(r) {
            return Err(ConfigError::new("Region", format!("`{r}` is not an AWS region name (e.g. eu-west-1)")));
        }
    }
    let alarm_names = keys.list("AlarmNames")?;
    let spec = match kind {
        Kind::Lambda => {
            let function_name = keys.required("FunctionName")?;
            if !is_function_name(&function_name) {
                return Err(ConfigError::new(
                    "FunctionName",
                    format!("`{function_name}` is not a Lambda function name or ARN (letters, digits, - and _, up to 64; or the function's ARN)"),
                ));
            }
            let alias = keys.required("Alias")?;
            if !is_alias_name(&alias) {
                return Err(ConfigError::new(
                    "Alias",
                    format!(
                        "`{alias}` is not a Lambda alias name (1 to 128 letters, digits, - and _, not only digits)"
                    ),
                ));
            }
            let artifact_path = keys.optional("ArtifactPath")?;
            if let Some(p) = &artifact_path {
                if p.starts_with('/') || p.split('/').any(|s| s == "..") {
                    return Err(ConfigError::new(
                        "ArtifactPath",
                        format!("`{p}` must be a relative path inside the artifact, without `..`"),
                    ));
                }
            }
            let image_file = keys.optional("ImageFile")?;
            if let Some(p) = &image_file {
                if p.starts_with('/') || p.split('/').any(|s| s == "..") {
                    return Err(ConfigError::new(
                        "ImageFile",
                        format!("`{p}` must be a relative path inside the artifact, without `..`"),
                    ));
                }
                if artifact_path.is_some() {
                    return Err(ConfigError::new(
                        "ImageFile",
                        "given with ArtifactPath; a function takes a zip package (ArtifactPath) or a container image (ImageFile), not both",
                    ));
                }
            }
            let strategy = match keys.optional("DeploymentStrategy")? {
                None => DeploymentStrategy::AllAtOnce,
                Some(s) => s.parse().map_err(|e: crossdeploy_protocol::StrategyError| {
                    ConfigError::new("DeploymentStrategy", e.to_string())
                })?,
            };
            DeploySpec::Lambda(LambdaSpec { function_name, alias, artifact_path, image_file, strategy })
        }
        Kind::Ecs => {
            let cluster_name = keys.required("ClusterName")?;
            let service_name = keys.required("ServiceName")?;
            let file_name = keys.optional("FileName")?.unwrap_or_else(|| "imagedefinitions.json".to_owned());
            let container_name = keys.optional("ContainerName")?;
            let is_image_detail = file_name.rsplit('/').next() == Some("imageDetail.json");
            if is_image_detail && container_name.is_none() {
                return Err(ConfigError::new(
                    "ContainerName",
                    "missing; required with an imageDetail.json FileName (it names the container whose image changes)",
                ));
            }
            let timeout_minutes = match keys.optional("TimeoutMinutes")? {
                None => 30,
                Some(t) => t.parse::<u32>().ok().filter(|m| (1..=1440).contains(m)).ok_or_else(|| {
                    ConfigError::new("TimeoutMinutes", format!("`{t}` is not a whole number of minutes from 1 to 1440"))
                })?,
            };
            let strategy = match keys.optional("DeploymentStrategy")? {
                None => None,
                Some(s) => {
                    Some(s.parse::<EcsStrategy>().map_err(|e| ConfigError::new("DeploymentStrategy", e.to_string()))?)
                }
            };
            let bake_time_minutes = match keys.optional("BakeTimeMinutes")? {
                None => None,
                Some(b) => Some(b.parse::<u32>().ok().filter(|m| *m <= ECS_MAX_BAKE_MINUTES).ok_or_else(|| {
                    ConfigError::new(
                        "BakeTimeMinutes",
                        format!("`{b}` is not a whole number of minutes from 0 to 1440"),
                    )
                })?),
            };
            if bake_time_minutes.is_some() && strategy == Some(EcsStrategy::Rolling) {
                return Err(ConfigError::new(
                    "BakeTimeMinutes",
                    "given with the Rolling strategy; ECS bakes BlueGreen, Canary and Linear deployments only",
                ));
            }
            let ecs_alarms = match keys.optional("EcsAlarms")?.as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ConfigError::new("EcsAlarms", format!("`{other}` is neither true nor false")))
                }
            };
            if ecs_alarms && alarm_names.is_empty() {
                return Err(ConfigError::new("EcsAlarms", "true, but AlarmNames names no alarm to hand to ECS"));
            }
            // The rollout is followed for TimeoutMinutes: it must outlast the bakes ECS takes.
            let bakes = strategy.map(|s| s.shift_minutes()).unwrap_or(0) + bake_time_minutes.unwrap_or(0);
            if bakes >= timeout_minutes {
                return Err(ConfigError::new(
                    "TimeoutMinutes",
                    format!(
                        "{timeout_minutes} minutes, but the deployment bakes for {bakes} minutes (DeploymentStrategy and BakeTimeMinutes): make TimeoutMinutes longer than that, or crossdeploy stops the deployment during its bake"
                    ),
                ));
            }
            DeploySpec::Ecs(EcsSpec {
                cluster_name,
                service_name,
                file_name,
                container_name,
                timeout_minutes,
                strategy,
                bake_time_minutes,
                ecs_alarms,
            })
        }
    };
    Ok(DeployConfig { target: Target { role_arn, region }, spec, alarm_names })
}

/// A key as an error names it: escaped (control characters and quotes shown), at most 64
/// characters, and "(an empty key)" for an empty one.
fn shown_key(key: &str) -> String {
    if key.is_empty() {
        return "(an empty key)".to_owned();
    }
    let escaped: String = key.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

struct Keys<'a>(&'a BTreeMap<String, Value>);

impl Keys<'_> {
    /// A key's value as text: strings as they are, numbers written out; anything else refused.
    fn optional(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(ConfigError::new(key, "empty; give a value or leave the key out"))
            }
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(ConfigError::new(key, "must be a string")),
        }
    }

    fn required(&self, key: &str) -> Result<String, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Err(ConfigError::new(key, "missing; it is required")),
            Some(Value::String(s)) if s.trim().is_empty() => Err(ConfigError::new(key, "empty; it is required")),
            _ => Ok(self.optional(key)?.unwrap_or_default()),
        }
    }

    /// A comma-separated string (the contract), or a JSON array of strings.
    fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = match self.0.get(key) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::String(s)) => s.split(',').map(|a| a.trim().to_owned()).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(|s| s.trim().to_owned())
                        .ok_or_else(|| ConfigError::new(key, "must be a comma-separated string of alarm names"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ConfigError::new(key, "must be a comma-separated string of alarm names")),
        };
        if items.iter().any(|a| a.is_empty() || a.len() > 255) {
            return Err(ConfigError::new(
                key,
                "has an empty or over-long alarm name; expected names separated by commas",
            ));
        }
        Ok(items)
    }
}

fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_function_name(f: &str) -> bool {
    let plain =
        |n: &str| (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if let Some(rest) = f.strip_prefix("arn:") {
        // arn:<partition>:lambda:<region>:<account>:function:<name>
        let parts: Vec<&str> = rest.split(':').collect();
        parts.len() == 6 && parts[1] == "lambda" && parts[4] == "function" && plain(parts[5])
    } else {
        plain(f)
    }
}

fn is_alias_name(a: &str) -> bool {
    (1..=128).contains(&a.len())
        && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !a.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROLE: &str = "arn:aws:iam::222222222222:role/crossdeploy-target";

    fn lambda_params() -> Value {
        json!({"Kind": "Lambda", "TargetRoleArn": ROLE, "FunctionName": "orders-api", "Alias": "live", "ArtifactPath": "lambda.zip"})
    }

    fn parse(v: &Value) -> Result<DeployConfig, ConfigError> {
        parse_user_parameters(Some(&v.to_string()))
    }

    #[test]
    fn the_issue_example_parses_into_a_lambda_deploy() {
        let c = parse(&lambda_params()).unwrap();
        assert_eq!(c.target.role_arn.as_str(), ROLE);
        assert_eq!(c.target.region, None);
        assert_eq!(
            c.spec,
            DeploySpec::Lambda(LambdaSpec {
                function_name: "orders-api".into(),
                alias: "live".into(),
                artifact_path: Some("lambda.zip".into()),
                image_file: None,
                strategy: DeploymentStrategy::AllAtOnce,
            })
        );
        assert!(c.alarm_names.is_empty());
    }

    #[test]
    fn optional_keys_are_read() {
        let mut p = lambda_params();
        p["DeploymentStrategy"] = json!("Linear10PercentEvery1Minute");
        p["AlarmNames"] = json!("orders-5xx, orders-latency");
        p["Region"] = json!("eu-west-1");
        let c = parse(&p).unwrap();
        assert_eq!(c.alarm_names, vec!["orders-5xx", "orders-latency"]);
        assert_eq!(c.target.region.as_deref(), Some("eu-west-1"));
        let DeploySpec::Lambda(l) = c.spec else { panic!() };
        assert_eq!(l.strategy, DeploymentStrategy::Linear { percent: 10, minutes: 1 });
    }

    #[test]
    fn ecs_strategy_keys_parse_and_bad_ones_are_refused_naming_the_key() {
        let base = || json!({"Kind": "Ecs", "TargetRoleArn": ROLE, "ClusterName": "prod", "ServiceName": "web"});
        let c = parse(&base()).unwrap();
        let DeploySpec::Ecs(e) = c.spec else { panic!() };
        assert_eq!((e.strategy, e.bake_time_minutes, e.ecs_alarms), (None, None, false), "absent: the service's own");
        let mut p = base();
        p["DeploymentStrategy"] = json!("Canary10Percent5Minutes");
        p["BakeTimeMinutes"] = json!(15);
        p["AlarmNames"] = json!("web-5xx");
        p["EcsAlarms"] = json!("true");
        let DeploySpec::Ecs(e) = parse(&p).unwrap().spec else { panic!() };
        assert_eq!(e.strategy, Some(EcsStrategy::Canary { percent: 10, minutes: 5 }));
        assert_eq!((e.bake_time_minutes, e.ecs_alarms), (Some(15), true));
        for (key, value, said) in [
            ("DeploymentStrategy", json!("AllAtOnce"), "AllAtOnce is a Lambda strategy"),
            ("DeploymentStrategy", json!("Linear1PercentEvery1Minute"), "at least 3 percent"),
            ("BakeTimeMinutes", json!("1441"), "from 0 to 1440"),
            ("BakeTimeMinutes", json!("soon"), "from 0 to 1440"),
            ("EcsAlarms", json!("yes"), "neither true nor false"),
        ] {
            let mut p = base();
            p[key] = value;
            let e = parse(&p).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.problem.contains(said), "{key}: {}", e.problem);
        }
        let mut p = base();
        p["EcsAlarms"] = json!("true");
        assert_eq!(parse(&p).unwrap_err().key, "EcsAlarms", "no AlarmNames to hand over");
        let mut p = base();
        p["DeploymentStrategy"] = json!("Rolling");
        p["BakeTimeMinutes"] = json!(1);
        assert!(parse(&p).unwrap_err().problem.contains("given with the Rolling strategy"));
        // TimeoutMinutes must outlast the bakes: 3 steps of 10 minutes and a 5-minute bake.
        let mut p = base();
        p["DeploymentStrategy"] = json!("Linear30PercentEvery10Minutes");
        p["BakeTimeMinutes"] = json!(5);
        let e = parse(&p).unwrap_err();
        assert_eq!(e.key, "TimeoutMinutes");
        assert!(e.problem.contains("bakes for 35 minutes"), "{}", e.problem);
        p["TimeoutMinutes"] = json!(40);
        assert!(parse(&p).is_ok());
    }

    #[test]
    fn ecs_parameters_parse_with_their_defaults() {
        let c =
            parse(&json!({"Kind": "Ecs", "TargetRoleArn": ROLE, "ClusterName": "prod", "ServiceName": "web"})).unwrap();
        let DeploySpec::Ecs(e) = c.spec else { panic!() };
        assert_eq!((e.file_name.as_str(), e.timeout_minutes, e.container_name), ("imagedefinitions.json", 30, None));
        let err = parse(&json!({"Kind": "Ecs", "TargetRoleArn": ROLE, "ClusterName": "prod", "ServiceName": "web", "FileName": "imageDetail.json"})).unwrap_err();
        assert_eq!(err.key, "ContainerName");
        let err = parse(&json!({"Kind": "Ecs", "TargetRoleArn": ROLE, "ClusterName": "prod", "ServiceName": "web", "TimeoutMinutes": "soon"})).unwrap_err();
        assert_eq!(err.key, "TimeoutMinutes");
        let c = parse(&json!({"Kind": "Ecs", "TargetRoleArn": ROLE, "ClusterName": "prod", "ServiceName": "web", "TimeoutMinutes": 45})).unwrap();
        assert!(matches!(c.spec, DeploySpec::Ecs(EcsSpec { timeout_minutes: 45, .. })));
    }

    #[test]
    fn user_parameters_that_are_not_a_json_object_are_refused() {
        for raw in [None, Some(""), Some("not json"), Some("[1,2]"), Some("\"Lambda\"")] {
            let e = parse_user_parameters(raw).unwrap_err();
            assert_eq!(e.key, "UserParameters", "{raw:?}: {e}");
        }
    }

    #[test]
    fn each_missing_or_empty_required_key_is_named() {
        for key in ["TargetRoleArn", "FunctionName", "Alias"] {
            let mut p = lambda_params();
            p.as_object_mut().unwrap().remove(key);
            let e = parse(&p).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.to_string().contains("missing"), "{e}");
            let mut p = lambda_params();
            p[key] = json!("  ");
            let e = parse(&p).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.to_string().contains("empty"), "{e}");
        }
        for key in ["ClusterName", "ServiceName"] {
            let mut p = json!({"Kind": "Ecs", "TargetRoleArn": ROLE, "ClusterName": "prod", "ServiceName": "web"});
            p.as_object_mut().unwrap().remove(key);
            assert_eq!(parse(&p).unwrap_err().key, key);
        }
    }

    #[test]
    fn an_image_file_is_read_and_refused_beside_an_artifact_path_or_outside_the_artifact() {
        let mut p = lambda_params();
        p.as_object_mut().unwrap().remove("ArtifactPath");
        p["ImageFile"] = json!("imageDetail.json");
        let Ok(DeployConfig { spec: DeploySpec::Lambda(spec), .. }) = parse(&p) else { panic!() };
        assert_eq!(spec.image_file.as_deref(), Some("imageDetail.json"));
        assert_eq!(spec.artifact_path, None);

        let mut both = p.clone();
        both["ArtifactPath"] = json!("lambda.zip");
        let e = parse(&both).unwrap_err();
        assert_eq!(e.key, "ImageFile");
        assert!(e.to_string().contains("not both"), "{e}");

        p["ImageFile"] = json!("../imageDetail.json");
        let e = parse(&p).unwrap_err();
        assert!(e.key == "ImageFile" && e.to_string().contains("without `..`"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_naming_key_and_value() {
        for (key, value) in [
            ("Kind", json!("Lambada")),
            ("Kind", json!(3)),
            ("TargetRoleArn", json!("arn:aws:iam::22:role/x")),
            ("FunctionName", json!("orders api")),
            ("Alias", json!("123")),
            ("DeploymentStrategy", json!("Canary10Percent")),
            ("DeploymentStrategy", json!("BlueGreen")),
            ("Region", json!("Ireland")),
            ("ArtifactPath", json!("../etc/passwd")),
            ("AlarmNames", json!("a,,b")),
            ("Aliass", json!("live")),
        ] {
            let mut p = lambda_params();
            p[key] = value.clone();
            let e = parse(&p).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            let shown = e.to_string();
            if let Some(v) = value.as_str() {
                if key != "AlarmNames" && key != "Aliass" {
                    assert!(shown.contains(v), "{shown}");
                }
            }
        }
    }

    #[test]
    fn a_missing_kind_is_named() {
        let mut p = lambda_params();
        p.as_object_mut().unwrap().remove("Kind");
        assert_eq!(parse(&p).unwrap_err().key, "Kind");
    }

    #[test]
    fn a_bake_or_rollout_longer_than_codepipeline_lets_the_action_run_is_refused_naming_the_limit() {
        let mut p = lambda_params();
        p["DeploymentStrategy"] = json!("Canary10Percent1500Minutes");
        let c = parse(&p).unwrap();
        let e = check_durations(&c, INVOKE_ACTION_LIMIT).unwrap_err();
        assert_eq!(e.key, "DeploymentStrategy");
        assert!(e.to_string().contains("at most 1440 minutes") && e.to_string().contains("1430"), "{e}");
        p["DeploymentStrategy"] = json!("Linear10PercentEvery6Minutes"); // 9 steps: 54 minutes
        let c = parse(&p).unwrap();
        assert!(check_durations(&c, INVOKE_ACTION_LIMIT).is_ok());
        let e = check_durations(&c, CUSTOM_ACTION_LIMIT).unwrap_err();
        assert!(e.to_string().contains("54 minutes") && e.to_string().contains("Invoke action"), "{e}");

        let ecs = json!({"Kind": "Ecs", "TargetRoleArn": ROLE, "ClusterName": "c", "ServiceName": "s", "TimeoutMinutes": "55"});
        let c = parse(&ecs).unwrap();
        assert!(check_durations(&c, INVOKE_ACTION_LIMIT).is_ok());
        assert_eq!(check_durations(&c, CUSTOM_ACTION_LIMIT).unwrap_err().key, "TimeoutMinutes");
        let default =
            parse(&json!({"Kind": "Ecs", "TargetRoleArn": ROLE, "ClusterName": "c", "ServiceName": "s"})).unwrap();
        assert!(check_durations(&default, CUSTOM_ACTION_LIMIT).is_ok(), "the default of 30 minutes fits both");
    }

    #[test]
    fn an_unknown_key_is_named_readably_even_when_empty_or_odd() {
        let mut map = BTreeMap::new();
        map.insert(String::new(), Value::String("x".into()));
        let e = parse_configuration(Kind::Lambda, &map).unwrap_err();
        assert_eq!(e.key, "(an empty key)");
        let mut map = BTreeMap::new();
        map.insert(format!("bad\n{}", "k".repeat(500)), Value::String("x".into()));
        let e = parse_configuration(Kind::Ecs, &map).unwrap_err();
        assert!(e.key.starts_with("bad\\n") && e.key.chars().count() <= 65, "{}", e.key);
    }

    #[test]
    fn function_arns_are_accepted() {
        let mut p = lambda_params();
        p["FunctionName"] = json!("arn:aws:lambda:eu-west-1:222222222222:function:orders-api");
        assert!(parse(&p).is_ok());
    }
}
