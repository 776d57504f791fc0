//! The typed request and outcome that pass, as JSON through Lambda Invoke, between the
//! pipeline-job-worker (and the rollback function) and the updaters.
//!
//! Shape: an [`UpdaterRequest`] names one action on one [`Target`] with the [`PipelineContext`] it
//! comes from; the updater answers one [`Outcome`]: `Succeeded` with output variables,
//! `InProgress` with opaque state to resume from (long work goes on in a later invocation),
//! or `Failed` with the CodePipeline failure type. New kinds of deployment are new [`DeploySpec`]
//! variants; rollback is a new [`UpdaterRequest`] variant; neither reshapes what is here.

mod arn;
pub mod policy;
mod strategy;

pub use arn::{RoleArn, RoleArnError};
pub use strategy::{DeploymentStrategy, EcsStrategy, EcsStrategyError, StrategyError, ECS_MAX_BAKE_MINUTES};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the worker or the rollback function asks an updater to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Action")]
pub enum UpdaterRequest {
    /// Deploy a new artifact (or resume a deployment from its `resume` state).
    Deploy(Box<DeployRequest>),
    /// Put back what stood before a deployment, if the target still runs what it deployed.
    Rollback(Box<RollbackRequest>),
}

impl UpdaterRequest {
    /// The request's idempotency key.
    pub fn request_id(&self) -> &str {
        match self {
            UpdaterRequest::Deploy(r) => &r.request_id,
            UpdaterRequest::Rollback(r) => &r.request_id,
        }
    }

    /// The target it acts on.
    pub fn target(&self) -> &Target {
        match self {
            UpdaterRequest::Deploy(r) => &r.target,
            UpdaterRequest::Rollback(r) => &r.target,
        }
    }

    /// This very invocation's request, as a SHA-256 (hex) of its JSON: everything in it, the
    /// state to resume from and the deadline too. The party that asks (the worker,
    /// deploy-rollback) records it in the target's lease before each invocation, and the updater
    /// acts only on a request whose fingerprint the live lease holds ([`fingerprint_of`] the
    /// JSON it received, before reading it): that is how an updater knows a request comes from
    /// them (README, "Who can reach the updaters"). `None`: it could not be serialized (then no
    /// lease vouches for it, and the updater refuses it).
    pub fn fingerprint(&self) -> Option<String> {
        serde_json::to_value(self).ok().map(|v| fingerprint_of(&v))
    }
}

/// The fingerprint of a request as JSON. A request and the text it travels as give the same
/// value: serde_json writes a value the same way after reading it back.
pub fn fingerprint_of(request: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(request.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Restore `restore` on a target, guarded: only while the target still runs `deployed` (what
/// crossdeploy deployed). A target on anything else is left alone; one on `restore` already is
/// restored already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RollbackRequest {
    /// Idempotency key: `rollback-<deployment id>`.
    pub request_id: String,
    pub target: Target,
    pub spec: RollbackSpec,
    /// Why the rollback happens (which event), for the logs and the alias description.
    pub reason: String,
    /// The last moment (milliseconds since the epoch) the updater may change the target: the
    /// party that asked records the outcome after it. `None`: the updater's own deadline only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The deployment being undone. With a spec whose deployed version (task definition) is
    /// empty, the rollback is *by mark*: what this deployment left is unknown (its run died
    /// before it heard), so the updater restores only what the target itself says this
    /// deployment did (the alias's description, the revision's `crossdeploy:deployment` tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
}

/// What to put back, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Kind")]
pub enum RollbackSpec {
    Lambda(LambdaRollback),
    Ecs(EcsRollback),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LambdaRollback {
    pub function_name: String,
    pub alias: String,
    /// The version the alias pointed at before the deployment.
    pub restore_version: String,
    /// The version the deployment published: the alias must still point wholly at it.
    pub deployed_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EcsRollback {
    pub cluster_name: String,
    pub service_name: String,
    /// The task definition the service ran before the deployment.
    pub restore_task_definition: String,
    /// The task definition the deployment registered: the service must still run it.
    pub deployed_task_definition: String,
}

/// How a rollback ended, in the `RollbackResult` output of a successful outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackResult {
    /// The target was put back.
    Restored,
    /// The target ran what stood before already (an earlier rollback, or ECS's circuit breaker).
    AlreadyRestored,
    /// The target runs something else than what crossdeploy deployed: someone deployed since.
    LeftAlone,
}

impl RollbackResult {
    pub fn as_str(&self) -> &'static str {
        match self {
            RollbackResult::Restored => "Restored",
            RollbackResult::AlreadyRestored => "AlreadyRestored",
            RollbackResult::LeftAlone => "LeftAlone",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [RollbackResult::Restored, RollbackResult::AlreadyRestored, RollbackResult::LeftAlone]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// A successful outcome carrying this result, what the target runs now, and why.
    pub fn outcome(self, summary: String, current: &str) -> Outcome {
        Outcome::Succeeded {
            summary,
            outputs: [
                (outputs::ROLLBACK_RESULT.to_owned(), self.as_str().to_owned()),
                (outputs::CURRENT.to_owned(), current.to_owned()),
            ]
            .into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeployRequest {
    /// Idempotency key of the request: the CodePipeline job id.
    pub request_id: String,
    pub pipeline: PipelineContext,
    pub target: Target,
    /// The input artifact in the shared services account's artifact bucket.
    pub artifact: ArtifactLocation,
    pub spec: DeploySpec,
    /// Alarms in the target account that gate the deployment.
    #[serde(default)]
    pub alarm_names: Vec<String>,
    /// State an earlier invocation handed back in [`Outcome::InProgress`]; present when resuming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<serde_json::Value>,
    /// The deployment this request belongs to: the id of the job that started it (continuation
    /// jobs keep it). Recorded on the target (alias description, task-definition tag) so that a
    /// retried or resumed run recognises its own earlier work. `None`: `request_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// The last moment (milliseconds since the epoch) the updater may change the target: the
    /// worker answers CodePipeline after it, so nothing may act on its behalf later. `None`: the
    /// updater's own deadline only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

impl DeployRequest {
    /// The deployment this request belongs to.
    pub fn deployment_id(&self) -> &str {
        self.deployment_id.as_deref().unwrap_or(&self.request_id)
    }
}

/// Where a job comes from. Every field but the job id is optional: an Invoke action's event does
/// not carry them, and `GetJobDetails` may not be allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PipelineContext {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl PipelineContext {
    /// "pipeline P execution E" as far as it is known, else "job J".
    pub fn describe(&self) -> String {
        match (&self.pipeline_name, &self.execution_id) {
            (Some(p), Some(e)) => format!("pipeline {p} execution {e}"),
            (Some(p), None) => format!("pipeline {p} job {}", self.job_id),
            _ => format!("job {}", self.job_id),
        }
    }
}

/// The account, role and region a deployment acts in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    pub role_arn: RoleArn,
    /// Target region; `None`: the region the updater runs in (the pipeline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl Target {
    pub fn account_id(&self) -> &str {
        self.role_arn.account_id()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArtifactLocation {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for ArtifactLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// What to deploy, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Kind")]
pub enum DeploySpec {
    Lambda(LambdaSpec),
    Ecs(EcsSpec),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LambdaSpec {
    pub function_name: String,
    pub alias: String,
    /// The package's path inside the artifact zip; `None`: the artifact itself is the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_path: Option<String>,
    /// Container-image functions: the file in the artifact naming the image (an ECR source
    /// action's `imageDetail.json`); `None`: the function takes a zip package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_file: Option<String>,
    #[serde(default)]
    pub strategy: DeploymentStrategy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EcsSpec {
    pub cluster_name: String,
    pub service_name: String,
    pub file_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    pub timeout_minutes: u32,
    /// The deployment strategy set on the service for this update; `None`: the service's own
    /// deploymentConfiguration is left as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<EcsStrategy>,
    /// ECS's `bakeTimeInMinutes` (blue/green, canary, linear): both revisions run this long after
    /// all production traffic moved; `None`: the service's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time_minutes: Option<u32>,
    /// Whether the request's alarms are also set as the service's deployment alarms (ECS then
    /// rolls back on them by itself).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ecs_alarms: bool,
}

/// An updater's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Status")]
pub enum Outcome {
    Succeeded {
        #[serde(rename = "Summary")]
        summary: String,
        /// CodePipeline output variables (`FunctionVersion`, `AliasArn`...).
        #[serde(rename = "Outputs")]
        outputs: BTreeMap<String, String>,
    },
    /// Work goes on: call again with `resume` set to `state`.
    InProgress {
        #[serde(rename = "Summary")]
        summary: String,
        #[serde(rename = "PercentComplete")]
        percent_complete: u8,
        #[serde(rename = "State")]
        state: serde_json::Value,
        /// What the target serves at this point, once the deployment changed it.
        #[serde(rename = "Stands", default, skip_serializing_if = "Option::is_none")]
        stands: Option<Stands>,
    },
    Failed {
        #[serde(rename = "FailureType")]
        failure_type: FailureType,
        #[serde(rename = "Message")]
        message: String,
        /// What the target serves after the failure, when the deployment had changed it:
        /// the ledger records it, and rollback decides from it and from the target.
        #[serde(rename = "Stands", default, skip_serializing_if = "Option::is_none")]
        stands: Option<Stands>,
    },
}

impl Outcome {
    pub fn failed(failure_type: FailureType, message: impl Into<String>) -> Self {
        Outcome::Failed { failure_type, message: message.into(), stands: None }
    }
}

/// What a target serves, as far as one deployment is concerned: what stood before it, what it
/// brought, and which of the two takes the traffic now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Stands {
    /// What stood before: a version, or a task definition ARN.
    pub previous: String,
    /// What the deployment brought: a version, or a task definition ARN.
    pub deployed: String,
    pub serving: Serving,
    /// In words, e.g. "alias live points at version 3 with 10% on version 4".
    pub detail: String,
    /// ECS: the service deployment that moves the service (recorded in the ledger's outputs).
    #[serde(rename = "ServiceDeploymentArn", default, skip_serializing_if = "Option::is_none")]
    pub service_deployment_arn: Option<String>,
}

/// Which side of a deployment a target serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Serving {
    /// What stood before, wholly: nothing of the deployment takes traffic (never changed, or restored).
    Previous,
    /// What the deployment brought, wholly.
    Deployed,
    /// Both: traffic is shifting, or a rollout is under way.
    Shifting,
    /// The updater could not tell (a call failed while it looked): rollback must read the target.
    Unknown,
}

impl Serving {
    pub fn as_str(&self) -> &'static str {
        match self {
            Serving::Previous => "Previous",
            Serving::Deployed => "Deployed",
            Serving::Shifting => "Shifting",
            Serving::Unknown => "Unknown",
        }
    }
}

/// CodePipeline's failure types that crossdeploy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureType {
    /// The action's configuration is wrong: a key missing or malformed, a resource that does not exist.
    ConfigurationError,
    /// Access was denied: by crossdeploy's allow-list, by STS, or in the target account.
    PermissionError,
    /// Anything else: the AWS error code and message say what.
    JobFailed,
}

impl FailureType {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureType::ConfigurationError => "ConfigurationError",
            FailureType::PermissionError => "PermissionError",
            FailureType::JobFailed => "JobFailed",
        }
    }
}

/// Names of the output variables (AWS sees them: they are part of the contract).
pub mod outputs {
    pub const FUNCTION_VERSION: &str = "FunctionVersion";
    pub const PREVIOUS_VERSION: &str = "PreviousVersion";
    pub const ALIAS_ARN: &str = "AliasArn";
    pub const CODE_SHA256: &str = "CodeSha256";
    /// Container-image functions: the image as the image file named it.
    pub const IMAGE_URI: &str = "ImageUri";
    /// Container-image functions: the repository and the digest Lambda runs (its CodeSha256).
    pub const RESOLVED_IMAGE_URI: &str = "ResolvedImageUri";
    pub const TASK_DEFINITION_ARN: &str = "TaskDefinitionArn";
    pub const PREVIOUS_TASK_DEFINITION_ARN: &str = "PreviousTaskDefinitionArn";
    pub const DEPLOYMENT_ID: &str = "DeploymentId";
    /// ECS: the service deployment that moved the service (or, for a rollback, moved it back).
    pub const SERVICE_DEPLOYMENT_ARN: &str = "ServiceDeploymentArn";
    /// A rollback's result: `Restored`, `AlreadyRestored` or `LeftAlone`.
    pub const ROLLBACK_RESULT: &str = "RollbackResult";
    /// What the target runs after a rollback: version or task definition.
    pub const CURRENT: &str = "Current";

    /// What stood before a deployment, from its outputs (Lambda or ECS).
    pub fn previous_of(outputs: &std::collections::BTreeMap<String, String>) -> Option<String> {
        outputs.get(PREVIOUS_VERSION).or_else(|| outputs.get(PREVIOUS_TASK_DEFINITION_ARN)).cloned()
    }

    /// What a deployment brought, from its outputs (Lambda or ECS).
    pub fn deployed_of(outputs: &std::collections::BTreeMap<String, String>) -> Option<String> {
        outputs.get(FUNCTION_VERSION).or_else(|| outputs.get(TASK_DEFINITION_ARN)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> UpdaterRequest {
        UpdaterRequest::Deploy(Box::new(DeployRequest {
            request_id: "job-1".into(),
            pipeline: PipelineContext {
                job_id: "job-1".into(),
                pipeline_name: Some("orders".into()),
                execution_id: Some("e-1".into()),
                stage: Some("Deploy-dev".into()),
                action: Some("Lambda".into()),
            },
            target: Target {
                role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".parse().unwrap(),
                region: None,
            },
            artifact: ArtifactLocation { bucket: "artifacts".into(), key: "orders/BuildOutput/abc.zip".into() },
            spec: DeploySpec::Lambda(LambdaSpec {
                function_name: "orders-api".into(),
                alias: "live".into(),
                artifact_path: Some("lambda.zip".into()),
                image_file: None,
                strategy: DeploymentStrategy::Canary { percent: 10, minutes: 5 },
            }),
            alarm_names: vec!["orders-5xx".into()],
            resume: None,
            deployment_id: None,
            deadline_ms: Some(1_700_000_000_000),
        }))
    }

    #[test]
    fn requests_round_trip_through_json_with_readable_tags() {
        let r = request();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["Action"], "Deploy");
        assert_eq!(json["Spec"]["Kind"], "Lambda");
        assert_eq!(json["Spec"]["Strategy"], "Canary10Percent5Minutes");
        assert_eq!(json["Target"]["RoleArn"], "arn:aws:iam::222222222222:role/crossdeploy-target");
        let back: UpdaterRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_fingerprint_names_this_very_invocation_and_survives_the_wire() {
        let r = request();
        let f = r.fingerprint().unwrap();
        assert_eq!(f.len(), 64);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
        // What the updater computes from the text it receives.
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(fingerprint_of(&serde_json::from_str(&text).unwrap()), f);
        // Anything else is another request: the artifact, target, alarms, job, spec, and the
        // state to resume from and the deadline as well.
        let UpdaterRequest::Deploy(base) = r.clone() else { unreachable!() };
        let changes: [fn(&mut DeployRequest); 7] = [
            |d| d.artifact.key = "orders/BuildOutput/evil.zip".into(),
            |d| d.target.region = Some("us-east-1".into()),
            |d| d.alarm_names.clear(),
            |d| d.request_id = "job-2".into(),
            |d| {
                if let DeploySpec::Lambda(l) = &mut d.spec {
                    l.function_name = "payments-api".into()
                }
            },
            |d| d.resume = Some(serde_json::json!({"Phase": "Shifting", "NewVersion": "1"})),
            |d| d.deadline_ms = Some(1_800_000_000_000),
        ];
        for change in changes {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(UpdaterRequest::Deploy(other).fingerprint().unwrap(), f);
        }
    }

    #[test]
    fn outcomes_round_trip_through_json() {
        for o in [
            Outcome::Succeeded {
                summary: "done".into(),
                outputs: [("FunctionVersion".to_string(), "3".to_string())].into(),
            },
            Outcome::InProgress {
                summary: "waiting".into(),
                percent_complete: 40,
                state: serde_json::json!({"Phase": "WaitingForUpdate"}),
                stands: None,
            },
            Outcome::failed(FailureType::PermissionError, "denied"),
            Outcome::Failed {
                failure_type: FailureType::JobFailed,
                message: "restore failed".into(),
                stands: Some(Stands {
                    previous: "3".into(),
                    deployed: "4".into(),
                    serving: Serving::Shifting,
                    detail: "alias live points at version 3 with 10% on version 4".into(),
                    service_deployment_arn: None,
                }),
            },
        ] {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
        }
    }

    #[test]
    fn rollback_requests_round_trip_through_json() {
        let r = UpdaterRequest::Rollback(Box::new(RollbackRequest {
            request_id: "rollback-job-1".into(),
            target: Target {
                role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".parse().unwrap(),
                region: Some("eu-west-1".into()),
            },
            spec: RollbackSpec::Lambda(LambdaRollback {
                function_name: "orders-api".into(),
                alias: "live".into(),
                restore_version: "3".into(),
                deployed_version: "4".into(),
            }),
            reason: "alarm orders-5xx".into(),
            deadline_ms: None,
            deployment_id: None,
        }));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["Action"], "Rollback");
        assert_eq!(json["Spec"]["Kind"], "Lambda");
        assert_eq!(json["Spec"]["RestoreVersion"], "3");
        assert_eq!(r.request_id(), "rollback-job-1");
        assert_eq!(serde_json::from_value::<UpdaterRequest>(json).unwrap(), r);
        for result in [RollbackResult::Restored, RollbackResult::AlreadyRestored, RollbackResult::LeftAlone] {
            assert_eq!(RollbackResult::parse(result.as_str()), Some(result));
        }
        assert_eq!(RollbackResult::parse("Nope"), None);
    }

    #[test]
    fn a_role_arn_that_is_not_valid_is_refused_when_a_request_is_read() {
        let mut json = serde_json::to_value(request()).unwrap();
        json["Target"]["RoleArn"] = "arn:aws:iam::2222:role/x".into();
        assert!(serde_json::from_value::<UpdaterRequest>(json).is_err());
    }
}
