use aws_sdk_dynamodb::types::AttributeValue;
use crossdeploy_protocol::{DeployRequest, DeploySpec, PipelineContext};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One deployment target: account, region, and the function and alias or cluster and service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetKey(String);

impl TargetKey {
    /// The target of a request; `default_region` is the region the functions run in.
    pub fn of(request: &DeployRequest, default_region: &str) -> Self {
        let account = request.target.account_id();
        let region = request.target.region.as_deref().unwrap_or(default_region);
        match &request.spec {
            DeploySpec::Lambda(l) => Self::lambda(account, region, &l.function_name, &l.alias),
            DeploySpec::Ecs(e) => Self::ecs(account, region, &e.cluster_name, &e.service_name),
        }
    }

    /// A function's alias. A function named by ARN and by name is the same target.
    pub fn lambda(account: &str, region: &str, function: &str, alias: &str) -> Self {
        let name = function.rsplit(':').next().unwrap_or(function);
        Self(format!("lambda/{account}/{region}/{name}/{alias}"))
    }

    /// A service in a cluster.
    pub fn ecs(account: &str, region: &str, cluster: &str, service: &str) -> Self {
        Self(format!("ecs/{account}/{region}/{cluster}/{service}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds a target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LeaseHolder {
    /// The deployment: the id of the job that started it (continuations keep it).
    pub deployment_id: String,
    pub pipeline: Option<String>,
    pub execution_id: Option<String>,
    pub job_id: Option<String>,
    pub since: u64,
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pipeline {} execution {} (deployment {})",
            self.pipeline.as_deref().unwrap_or("?"),
            self.execution_id.as_deref().unwrap_or("?"),
            self.deployment_id
        )
    }
}

/// Where a deployment that goes on over several jobs stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Phase")]
pub enum Phase {
    /// Another deployment holds the target; waiting since `since` (epoch seconds).
    WaitingForLease {
        #[serde(rename = "Since")]
        since: u64,
    },
    /// The updater is at work; `state` is what it handed back.
    Updating {
        #[serde(rename = "State")]
        state: serde_json::Value,
    },
}

/// What a continuation token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Continuation {
    pub deployment_id: String,
    /// When the deployment's record started (milliseconds since the epoch).
    pub started_at: u64,
    pub phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentStatus {
    InProgress,
    Succeeded,
    Failed,
}

impl DeploymentStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeploymentStatus::InProgress => "InProgress",
            DeploymentStatus::Succeeded => "Succeeded",
            DeploymentStatus::Failed => "Failed",
        }
    }
}

/// One deployment, as rollback reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentRecord {
    pub deployment_id: String,
    pub target: TargetKey,
    pub role_arn: String,
    pub pipeline: PipelineContext,
    /// Milliseconds since the epoch.
    pub started_at: u64,
    /// Milliseconds since the epoch.
    pub finished_at: Option<u64>,
    pub status: DeploymentStatus,
    /// What stood before: the previous version or task definition.
    pub previous: Option<String>,
    /// What was deployed: the new version or task definition.
    pub deployed: Option<String>,
    /// The output variables of a successful deployment.
    pub outputs: BTreeMap<String, String>,
    pub message: Option<String>,
}

impl DeploymentRecord {
    pub(crate) fn item(&self) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut item = HashMap::from([
            ("pk".to_owned(), s(&format!("TARGET#{}", self.target.as_str()))),
            ("sk".to_owned(), s(&format!("DEPLOY#{:015}#{}", self.started_at, self.deployment_id))),
            ("status".to_owned(), s(self.status.as_str())),
            ("data".to_owned(), s(&serde_json::to_string(self).unwrap_or_default())),
        ]);
        if let Some(p) = &self.pipeline.pipeline_name {
            item.insert("pipeline".to_owned(), s(p));
        }
        if let Some(e) = &self.pipeline.execution_id {
            item.insert("execution_id".to_owned(), s(e));
        }
        item
    }
}
