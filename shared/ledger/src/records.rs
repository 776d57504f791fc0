use aws_sdk_dynamodb::types::AttributeValue;
use crossdeploy_protocol::{DeployRequest, DeploySpec, PipelineContext, RollbackSpec, Serving, UpdaterRequest};
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

    /// The target an updater request acts on.
    pub fn of_request(request: &UpdaterRequest, default_region: &str) -> Self {
        match request {
            UpdaterRequest::Deploy(r) => Self::of(r, default_region),
            UpdaterRequest::Rollback(r) => {
                let account = r.target.account_id();
                let region = r.target.region.as_deref().unwrap_or(default_region);
                match &r.spec {
                    RollbackSpec::Lambda(l) => Self::lambda(account, region, &l.function_name, &l.alias),
                    RollbackSpec::Ecs(e) => Self::ecs(account, region, &e.cluster_name, &e.service_name),
                }
            }
        }
    }

    /// A function's alias. A function named by ARN and by name is the same target.
    pub fn lambda(account: &str, region: &str, function: &str, alias: &str) -> Self {
        let name = function.rsplit(':').next().unwrap_or(function);
        Self(format!("lambda/{account}/{region}/{name}/{alias}"))
    }

    /// A service in a cluster. A cluster or service named by ARN and by name is the same target
    /// (`arn:aws:ecs:<region>:<account>:cluster/<name>`, `...:service/<cluster>/<name>`).
    pub fn ecs(account: &str, region: &str, cluster: &str, service: &str) -> Self {
        let last = |s: &'_ str| -> String { s.rsplit('/').next().unwrap_or(s).to_owned() };
        Self(format!("ecs/{account}/{region}/{}/{}", last(cluster), last(service)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A target key as [`TargetKey::as_str`] writes it (`lambda/<account>/<region>/<function>/<alias>`,
    /// `ecs/<account>/<region>/<cluster>/<service>`); `None` for anything else.
    pub fn parse(text: &str) -> Option<TargetKey> {
        let key = TargetKey(text.to_owned());
        key.parts().is_some().then_some(key)
    }

    /// The target's parts, read back from the key.
    pub fn parts(&self) -> Option<TargetParts> {
        let mut it = self.0.split('/');
        let (kind, account, region, a, b) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || [account, region, a, b].iter().any(|p| p.is_empty()) {
            return None;
        }
        let (account, region) = (account.to_owned(), region.to_owned());
        match kind {
            "lambda" => Some(TargetParts::Lambda { account, region, function: a.to_owned(), alias: b.to_owned() }),
            "ecs" => Some(TargetParts::Ecs { account, region, cluster: a.to_owned(), service: b.to_owned() }),
            _ => None,
        }
    }

    /// `<account>/<region>`: the key of the ledger's by-account index.
    pub fn account_region(&self) -> Option<String> {
        self.parts().map(|p| {
            let (account, region) = p.account_region();
            format!("{account}/{region}")
        })
    }
}

/// A target, in its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetParts {
    Lambda { account: String, region: String, function: String, alias: String },
    Ecs { account: String, region: String, cluster: String, service: String },
}

impl TargetParts {
    pub fn account_region(&self) -> (&str, &str) {
        match self {
            TargetParts::Lambda { account, region, .. } | TargetParts::Ecs { account, region, .. } => (account, region),
        }
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
    /// Until when the lease holds (seconds since the epoch), as read back.
    #[serde(default)]
    pub until: u64,
    /// The fingerprint of the updater request the holder is about to send (or sends again):
    /// the one request an updater acts on for this target (see [`crate::check_origin`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
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
    /// The updater is at work; `state` is what it handed back (`null`: run it afresh: it finds
    /// its own earlier work on the target).
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
    /// What the target served when the job that wrote it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stands: Option<crossdeploy_protocol::Stands>,
    /// Updater invocations in a row, up to the job that wrote it, that gave no outcome.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub silent: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
    /// What was deployed: the new version or task definition (also when the deployment failed
    /// after it had changed the target).
    pub deployed: Option<String>,
    /// What the target served when the record was last written, as its updater reported it.
    /// `None`: the deployment had not changed the target (as far as the worker heard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<Serving>,
    /// The output variables of a successful deployment.
    pub outputs: BTreeMap<String, String>,
    pub message: Option<String>,
    /// The alarms that gated the deployment; an alarm among them condemns it within the bake window.
    #[serde(default)]
    pub alarm_names: Vec<String>,
    /// Its rollback, once one was attempted (kept in its own attributes of the item, see
    /// [`crate::Ledger::claim_rollback`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
}

/// How a deployment's rollback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackStatus {
    /// Condemned while the deployment was still running (an action of its stage failed): its
    /// worker rolls it back as soon as it ends.
    Pending,
    /// A rollback function run is at it (until its claim expires).
    InProgress,
    /// The target was put back.
    Restored,
    /// The target ran what stood before already.
    AlreadyRestored,
    /// The target ran something else (someone deployed since), or was busy: not touched.
    LeftAlone,
    /// ECS's circuit breaker rolled the service back itself (SERVICE_DEPLOYMENT_FAILED).
    RolledBackByEcs,
    /// The attempt failed; a later event may try again.
    Failed,
}

impl RollbackStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RollbackStatus::Pending => "Pending",
            RollbackStatus::InProgress => "InProgress",
            RollbackStatus::Restored => "Restored",
            RollbackStatus::AlreadyRestored => "AlreadyRestored",
            RollbackStatus::LeftAlone => "LeftAlone",
            RollbackStatus::RolledBackByEcs => "RolledBackByEcs",
            RollbackStatus::Failed => "Failed",
        }
    }
}

/// One deployment's rollback: what triggered it and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RollbackRecord {
    pub status: RollbackStatus,
    /// What condemned the deployment, e.g. "alarm orders-5xx went to ALARM in account 222222222222".
    pub trigger: String,
    /// The EventBridge event's id, or the direct request's id.
    pub event_id: String,
    /// Who holds the claim (the rollback function's request id).
    pub by: String,
    /// Milliseconds since the epoch.
    pub at: u64,
    /// What the target was put back on (or runs now).
    pub restored: Option<String>,
    pub message: Option<String>,
}

impl DeploymentRecord {
    /// The item's key: the target, then start time and id.
    pub(crate) fn key(&self) -> (String, String) {
        (format!("TARGET#{}", self.target.as_str()), format!("DEPLOY#{:015}#{}", self.started_at, self.deployment_id))
    }

    /// `<pipeline>#<execution>#<stage>`: the key of the ledger's by-execution index.
    pub fn execution_stage(&self) -> Option<String> {
        let p = &self.pipeline;
        Some(execution_stage(p.pipeline_name.as_deref()?, p.execution_id.as_deref()?, p.stage.as_deref()?))
    }

    /// The record as its `data` attribute holds it. The rollback lives in its own attributes,
    /// written by conditional updates.
    pub(crate) fn data(&self) -> String {
        serde_json::to_string(&DeploymentRecord { rollback: None, ..self.clone() }).unwrap_or_default()
    }

    pub(crate) fn item(&self) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let (pk, sk) = self.key();
        let mut item = HashMap::from([
            ("pk".to_owned(), s(&pk)),
            ("sk".to_owned(), s(&sk)),
            ("status".to_owned(), s(self.status.as_str())),
            ("data".to_owned(), s(&self.data())),
        ]);
        // A finished deployment expires with the other finished items; one in progress stays.
        if let Some(finished) = self.finished_at {
            let expires = finished / 1000 + crate::RETENTION.as_secs();
            item.insert("expires_at".to_owned(), AttributeValue::N(expires.to_string()));
        }
        if let Some(k) = self.execution_stage() {
            item.insert(crate::EXECUTION_INDEX_KEY.to_owned(), s(&k));
        }
        if let Some(k) = self.target.account_region() {
            item.insert(crate::ACCOUNT_INDEX_KEY.to_owned(), s(&k));
        }
        if let Some(p) = &self.pipeline.pipeline_name {
            item.insert("pipeline".to_owned(), s(p));
        }
        if let Some(e) = &self.pipeline.execution_id {
            item.insert("execution_id".to_owned(), s(e));
        }
        item
    }
}

pub(crate) fn execution_stage(pipeline: &str, execution: &str, stage: &str) -> String {
    format!("{pipeline}#{execution}#{stage}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_key_reads_back_into_its_parts() {
        let k = TargetKey::lambda(
            "222222222222",
            "eu-west-1",
            "arn:aws:lambda:eu-west-1:222222222222:function:orders",
            "live",
        );
        assert_eq!(
            k.parts(),
            Some(TargetParts::Lambda {
                account: "222222222222".into(),
                region: "eu-west-1".into(),
                function: "orders".into(),
                alias: "live".into()
            })
        );
        assert_eq!(k.account_region().as_deref(), Some("222222222222/eu-west-1"));
        let e = TargetKey::ecs("222222222222", "us-east-1", "apps", "web");
        assert!(
            matches!(e.parts(), Some(TargetParts::Ecs { cluster, service, .. }) if cluster == "apps" && service == "web")
        );
        assert_eq!(
            TargetKey::ecs(
                "222222222222",
                "us-east-1",
                "arn:aws:ecs:us-east-1:222222222222:cluster/apps",
                "arn:aws:ecs:us-east-1:222222222222:service/apps/web"
            ),
            e,
            "a cluster and service named by ARN are the same target as by name"
        );
        assert_eq!(TargetKey("lambda/1/2/3".into()).parts(), None);
        assert_eq!(TargetKey("s3/1/2/3/4".into()).parts(), None);
    }
}
