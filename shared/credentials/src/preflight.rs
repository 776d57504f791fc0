//! The permissions preflight: before a deployment changes anything, the target role's own
//! policies are simulated (`iam:SimulatePrincipalPolicy` on the role itself) for every call the
//! deployment will make, with the resources it will make them on and the condition keys the
//! role's policies use. A denied call fails the deployment at once, naming each missing action
//! and resource, instead of half-way after the code was updated. Where simulation is unavailable
//! or denied, the log says so and the deployment goes on (its own calls still fail safely).

use crate::TargetSession;
use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};
use crossdeploy_aws::{Deadline, ErrorInfo};
use crossdeploy_protocol::RoleArn;
use std::time::Duration;

/// One call the deployment will make: an action on a resource, with condition keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub action: &'static str,
    pub resource: String,
    /// Condition keys and their values, as the request will carry them (`ecs:CreateAction`...).
    pub context: Vec<(&'static str, String)>,
}

impl Needed {
    pub fn new(action: &'static str, resource: impl Into<String>) -> Self {
        Self { action, resource: resource.into(), context: Vec::new() }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }
}

/// What the preflight found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// Every call is allowed.
    Allowed,
    /// The simulation could not be run (the reason); the deployment goes on.
    Unavailable(String),
}

/// Calls the role's policies do not allow: the deployment must not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the role {role} may not make every call this deployment needs; nothing was changed. Missing: {}. Grant them in the role's policy (infra/target-account.yaml), or correct the action's configuration", missing.iter().map(|(a, r, d)| format!("{a} on {r} ({d})")).collect::<Vec<_>>().join("; "))]
pub struct MissingPermissions {
    pub role: RoleArn,
    /// (action, resource, decision)
    pub missing: Vec<(String, String, String)>,
}

/// The longest the preflight may take in all: it must never eat the deployment's time.
pub const PREFLIGHT_BUDGET: Duration = Duration::from_secs(5);

/// Simulates the role's policies for `needed` with the session's IAM client.
pub async fn preflight(
    session: &TargetSession,
    needed: &[Needed],
    deadline: Deadline,
) -> Result<Preflight, MissingPermissions> {
    simulate(&aws_sdk_iam::Client::new(&session.config), &session.role, needed, deadline).await
}

/// Simulates `role`'s policies for `needed`, one call per resource (the simulation pairs every
/// action with every resource given). Each call is tried once within [`PREFLIGHT_BUDGET`]: a
/// simulation that fails or is slow is reported unavailable, and the deployment goes on.
pub async fn simulate(
    iam: &aws_sdk_iam::Client,
    role: &RoleArn,
    needed: &[Needed],
    deadline: Deadline,
) -> Result<Preflight, MissingPermissions> {
    let budget = deadline.at_most(PREFLIGHT_BUDGET);
    let mut missing = Vec::new();
    // (resource, its condition keys, the actions on it)
    type Group<'a> = (&'a str, &'a [(&'static str, String)], Vec<&'static str>);
    let mut groups: Vec<Group<'_>> = Vec::new();
    for n in needed {
        match groups.iter_mut().find(|(r, c, _)| *r == n.resource && *c == n.context.as_slice()) {
            Some((_, _, actions)) => actions.push(n.action),
            None => groups.push((&n.resource, &n.context, vec![n.action])),
        }
    }
    for (resource, context, actions) in groups {
        let entries: Vec<ContextEntry> = context
            .iter()
            .map(|(key, value)| {
                ContextEntry::builder()
                    .context_key_name(*key)
                    .context_key_type(ContextKeyTypeEnum::String)
                    .context_key_values(value)
                    .build()
            })
            .collect();
        let call = iam
            .simulate_principal_policy()
            .policy_source_arn(role.as_str())
            .set_action_names(Some(actions.iter().map(|a| a.to_string()).collect()))
            .resource_arns(resource)
            .set_context_entries((!entries.is_empty()).then_some(entries))
            .max_items(100)
            // Once: a simulation that fails is reported unavailable, never retried at the
            // deployment's expense.
            .customize()
            .config_override(
                aws_sdk_iam::config::Builder::default()
                    .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled()),
            )
            .send();
        let out = match tokio::time::timeout_at(budget.instant(), call).await {
            Ok(Ok(out)) => out,
            Err(_) => {
                let why = format!("iam:SimulatePrincipalPolicy did not answer within {PREFLIGHT_BUDGET:?}");
                tracing::warn!(role = %role, reason = %why, "permissions preflight unavailable; deploying without it (each call still fails safely)");
                return Ok(Preflight::Unavailable(why));
            }
            Ok(Err(e)) => {
                let error = ErrorInfo::from_sdk(&e);
                let why = if error.is_access_denied() {
                    format!("the role may not simulate its own policies ({error}); infra/target-account.yaml grants iam:SimulatePrincipalPolicy on the role itself")
                } else {
                    format!("iam:SimulatePrincipalPolicy failed: {error}")
                };
                tracing::warn!(role = %role, reason = %why, "permissions preflight unavailable; deploying without it (each call still fails safely)");
                return Ok(Preflight::Unavailable(why));
            }
        };
        for r in out.evaluation_results() {
            if *r.eval_decision() != PolicyEvaluationDecisionType::Allowed {
                missing.push((
                    r.eval_action_name().to_owned(),
                    r.eval_resource_name().unwrap_or(resource).to_owned(),
                    r.eval_decision().as_str().to_owned(),
                ));
            }
        }
    }
    if missing.is_empty() {
        tracing::info!(role = %role, calls = needed.len(), "permissions preflight: every call allowed");
        Ok(Preflight::Allowed)
    } else {
        Err(MissingPermissions { role: role.clone(), missing })
    }
}
