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
//! ], "RollbackPrincipals": ["arn:aws:iam::111111111111:role/OnCall"]}
//! ```
//!
//! `RollbackPrincipals` (optional) names who may send deploy-rollback direct requests; with it,
//! deploy-rollback takes direct requests only through its function URL (IAM auth), where Lambda
//! establishes who signed the request.
//!
//! A job may deploy to a target when a rule names the target (its role ARN, or its account) and
//! the job's pipeline (or `*`), and, if the rule names stages, the job's stage. Anything else is
//! refused: a target no rule names is closed to every pipeline. A job whose pipeline CodePipeline
//! did not establish may deploy only where a rule opens the target to every pipeline and stage.

use crate::RoleArn;
use serde::Deserialize;

/// The environment variable the worker reads its policy from.
pub const POLICY_ENV: &str = "CROSSDEPLOY_DEPLOY_POLICY";
/// The largest policy read (Lambda's environment holds 4 KB in all).
const MAX_POLICY_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct DeployPolicy {
    pub rules: Vec<Rule>,
    /// Who may send deploy-rollback direct requests: IAM role ARNs (`arn:aws:iam::<account>:role/<name>`,
    /// which their assumed-role sessions match; a trailing `*` in the name matches its prefix) or
    /// user ARNs. Absent: anyone who may invoke deploy-rollback (IAM decides, as before policies).
    #[serde(default)]
    pub rollback_principals: Option<Vec<String>>,
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
        if let Some(principals) = &policy.rollback_principals {
            if principals.is_empty() {
                return Err(PolicyError(
                    "RollbackPrincipals is empty; name who may send direct rollback requests, or leave the key out"
                        .to_owned(),
                ));
            }
            for p in principals {
                if Principal::of_pattern(p).is_none() {
                    return Err(PolicyError(format!(
                        "RollbackPrincipals: `{p}` is neither an IAM role ARN (arn:aws:iam::<account>:role/<name>) nor a user ARN"
                    )));
                }
            }
        }
        Ok(policy)
    }

    /// Whether `caller` (the ARN of who sent a direct rollback request, as Lambda established it
    /// from the request's signature; `None`: unknown, a plain Invoke) may send one.
    pub fn may_roll_back(&self, caller: Option<&str>) -> Result<(), String> {
        let Some(allowed) = &self.rollback_principals else {
            return Ok(());
        };
        let Some(caller) = caller else {
            return Err("the deploy policy names who may send direct rollback requests (RollbackPrincipals), and this one came by a plain Invoke, which does not say who sent it; send it to deploy-rollback's function URL, signed with your own credentials (the RollbackUrl output of the stack)".to_owned());
        };
        let who = Principal::of_caller(caller);
        if who
            .as_ref()
            .is_some_and(|who| allowed.iter().filter_map(|p| Principal::of_pattern(p)).any(|p| p.matches(who)))
        {
            return Ok(());
        }
        // Who is allowed is not said: the caller may not be one of them.
        Err(format!(
            "the deploy policy does not let {caller} send direct rollback requests (its RollbackPrincipals do not name it); nothing was rolled back"
        ))
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

/// An IAM identity, as far as a policy compares them: account, kind (`role` or `user`) and
/// name (a role's path is left out: an assumed-role session's ARN does not carry it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Principal<'a> {
    account: &'a str,
    kind: &'a str,
    name: &'a str,
}

impl<'a> Principal<'a> {
    /// `arn:<partition>:iam::<account>:role/<path/><name>` or `...:user/<path/><name>`.
    fn of_pattern(arn: &'a str) -> Option<Self> {
        let rest = arn.strip_prefix("arn:")?;
        let (_partition, rest) = rest.split_once(":iam::")?;
        let (account, resource) = rest.split_once(':')?;
        let (kind, path) = resource.split_once('/')?;
        let name = path.rsplit('/').next()?;
        let valid_name =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-*".contains(&b));
        let star_last = name.find('*').is_none_or(|i| i == name.len() - 1);
        (account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && matches!(kind, "role" | "user")
            && valid_name
            && star_last)
            .then_some(Self { account, kind, name })
    }

    /// A caller's ARN: an assumed-role session (`arn:<partition>:sts::<account>:assumed-role/<role>/<session>`),
    /// a user, or a role.
    fn of_caller(arn: &'a str) -> Option<Self> {
        if let Some(rest) = arn.strip_prefix("arn:").and_then(|r| r.split_once(":sts::")).map(|(_, r)| r) {
            let (account, resource) = rest.split_once(':')?;
            let mut parts = resource.split('/');
            let (kind, role) = (parts.next()?, parts.next()?);
            return (kind == "assumed-role" && !role.is_empty()).then_some(Self { account, kind: "role", name: role });
        }
        Self::of_pattern(arn).filter(|p| !p.name.contains('*'))
    }

    fn matches(&self, caller: &Principal<'_>) -> bool {
        let name = match self.name.strip_suffix('*') {
            Some(prefix) => caller.name.starts_with(prefix),
            None => caller.name == self.name,
        };
        self.account == caller.account && self.kind == caller.kind && name
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
    fn only_the_named_principals_may_send_direct_rollbacks_and_only_when_known() {
        let p = DeployPolicy::parse(
            r#"{"Rules": [{"Pipelines": ["*"], "Targets": ["222222222222"]}],
                "RollbackPrincipals": ["arn:aws:iam::111111111111:role/teams/OnCall", "arn:aws:iam::111111111111:role/admin-*",
                                       "arn:aws:iam::111111111111:user/alice"]}"#,
        )
        .unwrap();
        for caller in [
            "arn:aws:sts::111111111111:assumed-role/OnCall/bob",
            "arn:aws:sts::111111111111:assumed-role/admin-break-glass/carol",
            "arn:aws:iam::111111111111:user/alice",
            "arn:aws:iam::111111111111:user/ops/alice",
        ] {
            assert_eq!(p.may_roll_back(Some(caller)), Ok(()), "{caller}");
        }
        for caller in [
            "arn:aws:sts::111111111111:assumed-role/Developer/bob",
            "arn:aws:sts::999999999999:assumed-role/OnCall/bob",
            "arn:aws:sts::111111111111:assumed-role/OnCallers/bob",
            "arn:aws:iam::111111111111:user/mallory",
            "arn:aws:iam::111111111111:root",
            "arn:aws:sts::111111111111:federated-user/OnCall",
            "not an arn",
        ] {
            let e = p.may_roll_back(Some(caller)).unwrap_err();
            assert!(e.contains(caller) && e.contains("RollbackPrincipals"), "{e}");
        }
        let e = p.may_roll_back(None).unwrap_err();
        assert!(e.contains("plain Invoke") && e.contains("function URL"), "{e}");
        // No RollbackPrincipals: anyone IAM lets invoke deploy-rollback, as before.
        assert_eq!(example().may_roll_back(None), Ok(()));
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
            (r#"{"Rules": [{"Pipelines": ["a"], "Targets": ["222222222222"]}], "RollbackPrincipals": []}"#, "is empty"),
            (
                r#"{"Rules": [{"Pipelines": ["a"], "Targets": ["222222222222"]}], "RollbackPrincipals": ["OnCall"]}"#,
                "neither an IAM role ARN",
            ),
            (
                r#"{"Rules": [{"Pipelines": ["a"], "Targets": ["222222222222"]}], "RollbackPrincipals": ["arn:aws:iam::1:role/x"]}"#,
                "neither an IAM role ARN",
            ),
            (
                r#"{"Rules": [{"Pipelines": ["a"], "Targets": ["222222222222"]}], "RollbackPrincipals": ["arn:aws:iam::111111111111:role/*x"]}"#,
                "neither an IAM role ARN",
            ),
        ] {
            let e = DeployPolicy::parse(text).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        assert!(DeployPolicy::parse(&format!(r#"{{"Rules": [{}]}}"#, "x".repeat(5000))).is_err());
    }
}
