//! The deployment ledger, in one DynamoDB table (`CROSSDEPLOY_LEDGER_TABLE`, key `pk` + `sk`,
//! TTL attribute `expires_at`), written with conditional writes only:
//!
//! - **jobs** (`JOB#<job id>`): a job is claimed by one worker run; a second delivery, or an
//!   overlapping run, finds it taken and does nothing. A claim whose run died expires.
//! - **leases** (`LEASE#<target>`): one deployment per target (account, region, function and
//!   alias, or cluster and service) at a time. The holder renews it; a dead holder's lease expires.
//! - **deployments** (`TARGET#<target>`, `DEPLOY#<started>#<id>`): what was deployed, what stood
//!   before, by which pipeline run, when, and how it ended — what rollback reads.
//!   Two sparse global secondary indexes find them for rollback: `by-execution` (pipeline,
//!   execution and stage) and `by-account` (account and region, newest first).
//! - **rollbacks**: in the deployment's item (`rollback_status`, `rollback_data`), claimed with a
//!   conditional update, so the same event twice, or two events for one deployment, restore once.
//! - **continuations** (`CONT#<token>`): the state a long deployment resumes from; the
//!   continuation token CodePipeline carries is only this key.

mod records;

pub use records::{
    Continuation, DeploymentRecord, DeploymentStatus, LeaseHolder, Phase, RollbackRecord, RollbackStatus, TargetKey,
    TargetParts,
};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use crossdeploy_aws::ErrorInfo;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The table's name.
pub const LEDGER_TABLE_ENV: &str = "CROSSDEPLOY_LEDGER_TABLE";
/// The index of deployments by pipeline, execution and stage.
pub const EXECUTION_INDEX: &str = "by-execution";
/// Its key attribute: `<pipeline>#<execution>#<stage>`.
pub const EXECUTION_INDEX_KEY: &str = "execution_stage";
/// The index of deployments by target account and region, sorted by start time.
pub const ACCOUNT_INDEX: &str = "by-account";
/// Its key attribute: `<account>/<region>`.
pub const ACCOUNT_INDEX_KEY: &str = "account_region";
/// Items read from one index query, at most (pages of 1 MB each).
const MAX_QUERY_PAGES: usize = 20;

/// Finished items are kept this long, then DynamoDB's TTL removes them.
pub(crate) const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
#[error("failed to {action} in the ledger table {table}: {error}")]
pub struct LedgerError {
    pub action: &'static str,
    pub table: String,
    pub error: ErrorInfo,
}

/// Whether this run got the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    /// Another run holds it, or it was answered already.
    Taken,
}

/// Whether this run got a deployment's rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackClaim {
    Claimed,
    /// Another run is at it, or it is done: how it stands.
    Taken(Option<RollbackRecord>),
}

/// Whether this deployment got the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    Acquired,
    HeldBy(LeaseHolder),
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Deployment times are in milliseconds: two deployments of one target can start within a second.
pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A deployment record read from its item, with its rollback.
fn record_of(item: &HashMap<String, AttributeValue>) -> Option<DeploymentRecord> {
    let mut record: DeploymentRecord = serde_json::from_str(get_s(item, "data")?).ok()?;
    record.rollback = rollback_of(item);
    Some(record)
}

fn rollback_of(item: &HashMap<String, AttributeValue>) -> Option<RollbackRecord> {
    get_s(item, "rollback_data").and_then(|d| serde_json::from_str(d).ok())
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// The ledger, over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct Ledger {
    client: Client,
    table: String,
}

impl Ledger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn error<E, R>(&self, action: &'static str, e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> LedgerError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        LedgerError { action, table: self.table.clone(), error: ErrorInfo::from_sdk(e) }
    }

    /// Claims `job_id` for `owner` until `hold` from now. A job answered already, or held by a
    /// live run, is [`Claim::Taken`].
    pub async fn claim_job(&self, job_id: &str, owner: &str, hold: Duration) -> Result<Claim, LedgerError> {
        let now = now_secs();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("JOB#{job_id}")))
            .item("sk", s("JOB"))
            .item("status", s("CLAIMED"))
            .item("owner", s(owner))
            .item("claimed_until", n(now + hold.as_secs()))
            .item("expires_at", n(now + RETENTION.as_secs()))
            .condition_expression("attribute_not_exists(pk) OR (#status = :claimed AND claimed_until < :now)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":claimed", s("CLAIMED"))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Claimed),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => {
                Ok(Claim::Taken)
            }
            Err(e) => Err(self.error("claim job", &e)),
        }
    }

    /// Marks a claimed job answered, so no run takes it again.
    pub async fn finish_job(&self, job_id: &str, owner: &str, answer: &str) -> Result<(), LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("JOB#{job_id}")))
            .key("sk", s("JOB"))
            .update_expression("SET #status = :answered, answer = :answer, answered_at = :now")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":answered", s("ANSWERED"))
            .expression_attribute_values(":answer", s(answer))
            .expression_attribute_values(":now", n(now_secs()))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => {
                tracing::warn!(job_id, "the job's claim passed to another run before it was marked answered");
                Ok(())
            }
            Err(e) => Err(self.error("mark job answered", &e)),
        }
    }

    /// Takes the target's lease for `holder` until `ttl` from now, or renews it when `holder`
    /// has it already. A live lease of another deployment is [`Lease::HeldBy`] it.
    pub async fn acquire_lease(
        &self,
        target: &TargetKey,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, LedgerError> {
        let now = now_secs();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("LEASE#{}", target.as_str())))
            .item("sk", s("LEASE"))
            .item("holder", s(&holder.deployment_id))
            .item("data", s(serde_json::to_string(holder).unwrap_or_default()))
            .item("lease_until", n(now + ttl.as_secs()))
            .item("expires_at", n(now + ttl.as_secs() + 24 * 3600))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now OR holder = :me")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":me", s(&holder.deployment_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lease::Acquired),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(format!("LEASE#{}", target.as_str())))
                    .key("sk", s("LEASE"))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| self.error("read a lease", &e))?
                    .item
                    .unwrap_or_default();
                let other = get_s(&item, "data")
                    .and_then(|d| serde_json::from_str::<LeaseHolder>(d).ok())
                    .unwrap_or_else(|| LeaseHolder {
                        deployment_id: get_s(&item, "holder").unwrap_or("unknown").to_owned(),
                        ..LeaseHolder::default()
                    });
                Ok(Lease::HeldBy(other))
            }
            Err(e) => Err(self.error("take a lease", &e)),
        }
    }

    /// Gives the target's lease back, if `deployment_id` holds it.
    pub async fn release_lease(&self, target: &TargetKey, deployment_id: &str) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("LEASE#{}", target.as_str())))
            .key("sk", s("LEASE"))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(deployment_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.error("release a lease", &e)),
        }
    }

    /// Stores a continuation under `token` (written once).
    pub async fn save_continuation(&self, token: &str, continuation: &Continuation) -> Result<(), LedgerError> {
        let now = now_secs();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CONT#{token}")))
            .item("sk", s("CONT"))
            .item("data", s(serde_json::to_string(continuation).unwrap_or_default()))
            .item("expires_at", n(now + RETENTION.as_secs()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| self.error("save continuation state", &e))?;
        Ok(())
    }

    pub async fn load_continuation(&self, token: &str) -> Result<Option<Continuation>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("CONT#{token}")))
            .key("sk", s("CONT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("load continuation state", &e))?;
        Ok(out.item.as_ref().and_then(|i| get_s(i, "data")).and_then(|d| serde_json::from_str(d).ok()))
    }

    /// Records a deployment as it starts; a second call for the same deployment changes nothing.
    pub async fn start_deployment(&self, record: &DeploymentRecord) -> Result<(), LedgerError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record.item()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.error("record a deployment", &e)),
        }
    }

    /// Records how a deployment ended; only a deployment still in progress is updated.
    pub async fn finish_deployment(&self, record: &DeploymentRecord) -> Result<(), LedgerError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record.item()))
            .condition_expression("attribute_not_exists(pk) OR #status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(DeploymentStatus::InProgress.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => {
                tracing::warn!(deployment_id = %record.deployment_id, "the deployment was recorded as finished already");
                Ok(())
            }
            Err(e) => Err(self.error("record how a deployment ended", &e)),
        }
    }

    /// The target's deployments, newest first.
    pub async fn deployments(&self, target: &TargetKey) -> Result<Vec<DeploymentRecord>, LedgerError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :deploy)")
            .expression_attribute_values(":pk", s(format!("TARGET#{}", target.as_str())))
            .expression_attribute_values(":deploy", s("DEPLOY#"))
            .scan_index_forward(false)
            .consistent_read(true);
        self.query_records(query, "read deployments").await
    }

    /// The deployments of one stage of one pipeline execution.
    pub async fn deployments_in_stage(
        &self,
        pipeline: &str,
        execution_id: &str,
        stage: &str,
    ) -> Result<Vec<DeploymentRecord>, LedgerError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(EXECUTION_INDEX)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", EXECUTION_INDEX_KEY)
            .expression_attribute_values(":k", s(records::execution_stage(pipeline, execution_id, stage)))
            .scan_index_forward(false);
        self.query_records(query, "read the deployments of a pipeline stage").await
    }

    /// The deployments into one account and region that started at or after `since_ms`, newest first.
    pub async fn deployments_in_account(
        &self,
        account: &str,
        region: &str,
        since_ms: u64,
    ) -> Result<Vec<DeploymentRecord>, LedgerError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(ACCOUNT_INDEX)
            .key_condition_expression("#k = :k AND sk >= :since")
            .expression_attribute_names("#k", ACCOUNT_INDEX_KEY)
            .expression_attribute_values(":k", s(format!("{account}/{region}")))
            .expression_attribute_values(":since", s(format!("DEPLOY#{since_ms:015}")))
            .scan_index_forward(false);
        self.query_records(query, "read the deployments into an account").await
    }

    async fn query_records(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        action: &'static str,
    ) -> Result<Vec<DeploymentRecord>, LedgerError> {
        let mut records = Vec::new();
        let mut start = None;
        for _ in 0..MAX_QUERY_PAGES {
            let out =
                query.clone().set_exclusive_start_key(start.take()).send().await.map_err(|e| self.error(action, &e))?;
            records.extend(out.items.unwrap_or_default().iter().filter_map(record_of));
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(records),
            }
        }
        tracing::warn!(table = %self.table, action, pages = MAX_QUERY_PAGES, "stopped reading after the page limit");
        Ok(records)
    }

    /// Claims `record`'s rollback for `claim.by` until `hold` from now. A rollback done already,
    /// or under way in a live run, is [`RollbackClaim::Taken`]; a failed one may be claimed again.
    pub async fn claim_rollback(
        &self,
        record: &DeploymentRecord,
        claim: &RollbackRecord,
        hold: Duration,
    ) -> Result<RollbackClaim, LedgerError> {
        let (pk, sk) = record.key();
        let now = now_secs();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(&sk))
            .update_expression("SET rollback_status = :claimed, rollback_by = :by, rollback_until = :until, rollback_data = :data")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(rollback_status) OR rollback_status = :failed OR (rollback_status = :claimed AND rollback_until < :now))",
            )
            .expression_attribute_values(":claimed", s(RollbackStatus::InProgress.as_str()))
            .expression_attribute_values(":failed", s(RollbackStatus::Failed.as_str()))
            .expression_attribute_values(":by", s(&claim.by))
            .expression_attribute_values(":until", n(now + hold.as_secs()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":data", s(serde_json::to_string(claim).unwrap_or_default()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(RollbackClaim::Claimed),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(pk))
                    .key("sk", s(sk))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| self.error("read a rollback", &e))?
                    .item
                    .unwrap_or_default();
                Ok(RollbackClaim::Taken(rollback_of(&item)))
            }
            Err(e) => Err(self.error("claim a rollback", &e)),
        }
    }

    /// Records how a claimed rollback ended (only while `outcome.by` holds the claim).
    pub async fn finish_rollback(
        &self,
        record: &DeploymentRecord,
        outcome: &RollbackRecord,
    ) -> Result<(), LedgerError> {
        let (pk, sk) = record.key();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("SET rollback_status = :status, rollback_data = :data REMOVE rollback_until")
            .condition_expression("rollback_by = :by")
            .expression_attribute_values(":status", s(outcome.status.as_str()))
            .expression_attribute_values(":by", s(&outcome.by))
            .expression_attribute_values(":data", s(serde_json::to_string(outcome).unwrap_or_default()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => {
                tracing::warn!(deployment_id = %record.deployment_id, "the rollback's claim passed to another run before it was recorded");
                Ok(())
            }
            Err(e) => Err(self.error("record a rollback", &e)),
        }
    }
}
