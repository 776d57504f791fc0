//! The deploy policy: which pipelines, and optionally which of their stages, may deploy to which
//! target roles or accounts. Kept in the shared services account (template.yaml's `DeployPolicy`,
//! handed to the worker as `CROSSDEPLOY_DEPLOY_POLICY`) and checked by the worker before an
//! updater is asked to do anything: a job the policy does not allow is answered PermissionError
//! and nothing else happens. With no policy, the allow-list alone decides (as before policies).
//!
//! ```json
//! {"Rules": [
//!   {"Pipelines": ["orders"], "Stages": ["Deploy-prod"], "Targets": ["arn:aws:iam::444444444444:role/crossdeploy-target"]},
//!   {"Pipelines": ["*"], "Targets": ["222222222222", "333333333333"]}
//! ]}
//! ```
//!
//! A job may deploy to a target when a rule names the target (its role ARN, or its account) and
//! the job's pipeline (or `*`), and, if the rule names stages, the job's stage. Anything else is
//! refused: a target no rule names is closed to every pipeline. A job whose pipeline CodePipeline
//! did not establish may deploy only where a rule opens the target to every pipeline and stage.

use crossdeploy_protocol::RoleArn;
use serde::Deserialize;

/// The environment variable the worker reads its policy from.
pub const POLICY_ENV: &str = "CROSSDEPLOY_DEPLOY_POLICY";
/// The largest policy read (Lambda's environment holds 4 KB in all).
const MAX_POLICY_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct DeployPolicy {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Rule {
    /// Pipeline names, or `*` for every pipeline.
    pub pipelines: Vec<String>,
    /// Stage names; absent: every stage.
    #[serde(default)]
    pub stages: Option<Vec<String>>,
    /// Target role ARNs, or 12-digit account ids (every role of that account).
    pub targets: Vec<String>,
}

/// The policy could not be read: every job is refused until it is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the deploy policy ({POLICY_ENV}) cannot be read: {0}; no job is deployed until it is fixed (template.yaml's DeployPolicy)")]
pub struct PolicyError(pub String);

/// Where a job comes from, as far as CodePipeline established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `None`: CodePipeline did not say (an Invoke job whose details it did not serve).
    pub pipeline: Option<&'a str>,
    pub stage: Option<&'a str>,
}

impl DeployPolicy {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError(format!("it is {} bytes, more than {MAX_POLICY_BYTES}", text.len())));
        }
        let policy: DeployPolicy = serde_json::from_str(text).map_err(|e| {
            PolicyError(format!(
                "not a policy ({e}); expected {{\"Rules\": [{{\"Pipelines\": [...], \"Stages\": [...], \"Targets\": [...]}}]}}"
            ))
        })?;
        if policy.rules.is_empty() {
            return Err(PolicyError("it has no rules; leave DeployPolicy empty for no policy".to_owned()));
        }
        for (i, rule) in policy.rules.iter().enumerate() {
            let empty = |what: &str| PolicyError(format!("rule {i} has no {what}"));
            if rule.pipelines.is_empty() || rule.pipelines.iter().any(|p| p.trim().is_empty()) {
                return Err(empty("Pipelines (name them, or give [\"*\"])"));
            }
            if rule.stages.as_ref().is_some_and(|s| s.is_empty() || s.iter().any(|s| s.trim().is_empty())) {
                return Err(empty("Stages (name them, or leave the key out for every stage)"));
            }
            if rule.targets.is_empty() {
                return Err(empty("Targets"));
            }
            for t in &rule.targets {
                let account = t.len() == 12 && t.bytes().all(|b| b.is_ascii_digit());
                if !account && t.parse::<RoleArn>().is_err() {
                    return Err(PolicyError(format!(
                        "rule {i}: target `{t}` is neither a role ARN nor a 12-digit account id"
                    )));
                }
            }
        }
        Ok(policy)
    }

    /// The policy in `CROSSDEPLOY_DEPLOY_POLICY`; `Ok(None)` when it is unset or empty.
    pub fn from_env() -> Result<Option<Self>, PolicyError> {
        match std::env::var(POLICY_ENV) {
            Ok(text) if !text.trim().is_empty() => Self::parse(&text).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether a job from `origin` may deploy to `role`; the error says why not, naming the
    /// pipeline, the stage and the target.
    pub fn check(&self, origin: Origin<'_>, role: &RoleArn) -> Result<(), String> {
        let for_target: Vec<&Rule> = self.rules.iter().filter(|r| r.targets.iter().any(|t| names(t, role))).collect();
        let allowed = for_target.iter().any(|r| match origin.pipeline {
            Some(pipeline) => {
                r.pipelines.iter().any(|p| p == "*" || p == pipeline)
                    && r.stages
                        .as_ref()
                        .is_none_or(|stages| origin.stage.is_some_and(|s| stages.iter().any(|x| x == s)))
            }
            None => r.pipelines.iter().any(|p| p == "*") && r.stages.is_none(),
        });
        if allowed {
            return Ok(());
        }
        let who = match origin {
            Origin { pipeline: Some(p), stage: Some(s) } => format!("pipeline {p}, stage {s},"),
            Origin { pipeline: Some(p), stage: None } => format!("pipeline {p} (stage unknown)"),
            Origin { pipeline: None, .. } => {
                "a job whose pipeline CodePipeline did not establish (an Invoke action's job: use the custom action for this target, whose jobs CodePipeline vouches for)".to_owned()
            }
        };
        let open_to = if for_target.is_empty() {
            "no rule names this target".to_owned()
        } else {
            let rules: Vec<String> = for_target
                .iter()
                .map(|r| match &r.stages {
                    Some(stages) => format!("pipelines {} in stages {}", r.pipelines.join(", "), stages.join(", ")),
                    None => format!("pipelines {} in any stage", r.pipelines.join(", ")),
                })
                .collect();
            format!("it is open to {}", rules.join("; "))
        };
        Err(format!(
            "the deploy policy does not let {who} deploy to {role} ({open_to}); nothing was deployed. Change DeployPolicy in template.yaml if this deployment should be allowed"
        ))
    }
}

/// Whether a policy target names `role`: its ARN, or its account.
fn names(target: &str, role: &RoleArn) -> bool {
    target == role.as_str() || target == role.account_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: &str = "arn:aws:iam::444444444444:role/crossdeploy-target";
    const DEV: &str = "arn:aws:iam::222222222222:role/crossdeploy-target";

    fn example() -> DeployPolicy {
        DeployPolicy::parse(&format!(
            r#"{{"Rules": [
                {{"Pipelines": ["orders"], "Stages": ["Deploy-prod"], "Targets": ["{PROD}"]}},
                {{"Pipelines": ["*"], "Targets": ["222222222222"]}}
            ]}}"#
        ))
        .unwrap()
    }

    fn origin<'a>(pipeline: Option<&'a str>, stage: Option<&'a str>) -> Origin<'a> {
        Origin { pipeline, stage }
    }

    #[test]
    fn only_orders_deploys_to_prod_and_only_from_its_prod_stage() {
        let p = example();
        let prod: RoleArn = PROD.parse().unwrap();
        assert_eq!(p.check(origin(Some("orders"), Some("Deploy-prod")), &prod), Ok(()));
        let e = p.check(origin(Some("orders"), Some("Deploy-dev")), &prod).unwrap_err();
        assert!(e.contains("pipeline orders, stage Deploy-dev,") && e.contains(PROD), "{e}");
        assert!(e.contains("open to pipelines orders in stages Deploy-prod"), "{e}");
        let e = p.check(origin(Some("payments"), Some("Deploy-prod")), &prod).unwrap_err();
        assert!(e.contains("pipeline payments"), "{e}");
        assert!(p.check(origin(Some("orders"), None), &prod).is_err());
        assert!(p.check(origin(None, None), &prod).unwrap_err().contains("did not establish"));
    }

    #[test]
    fn an_account_target_opens_every_role_of_it_to_every_pipeline_even_unestablished() {
        let p = example();
        let dev: RoleArn = DEV.parse().unwrap();
        assert_eq!(p.check(origin(Some("anything"), Some("any")), &dev), Ok(()));
        assert_eq!(p.check(origin(None, None), &dev), Ok(()));
    }

    #[test]
    fn a_target_no_rule_names_is_closed() {
        let other: RoleArn = "arn:aws:iam::555555555555:role/crossdeploy-target".parse().unwrap();
        let e = example().check(origin(Some("orders"), Some("Deploy-prod")), &other).unwrap_err();
        assert!(e.contains("no rule names this target"), "{e}");
    }

    #[test]
    fn bad_policies_are_refused_saying_why() {
        for (text, needle) in [
            ("nope", "not a policy"),
            (r#"{"Rules": []}"#, "no rules"),
            (r#"{"Rules": [{"Pipelines": [], "Targets": ["222222222222"]}]}"#, "no Pipelines"),
            (r#"{"Rules": [{"Pipelines": ["a"], "Stages": [], "Targets": ["222222222222"]}]}"#, "no Stages"),
            (r#"{"Rules": [{"Pipelines": ["a"], "Targets": []}]}"#, "no Targets"),
            (r#"{"Rules": [{"Pipelines": ["a"], "Targets": ["prod"]}]}"#, "neither a role ARN"),
            (r#"{"Rules": [{"Pipelines": ["a"], "Targets": ["222222222222"], "Principals": []}]}"#, "unknown field"),
        ] {
            let e = DeployPolicy::parse(text).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        assert!(DeployPolicy::parse(&format!(r#"{{"Rules": [{}]}}"#, "x".repeat(5000))).is_err());
    }
}
