//! The deployment ledger, in one DynamoDB table (`CROSSDEPLOY_LEDGER_TABLE`, key `pk` + `sk`,
//! TTL attribute `expires_at`), written with conditional writes only. Every conditional write
//! names its holder (a run's request id, a deployment's id): the same holder sending it again
//! (the SDK retrying a write whose answer was lost, Lambda retrying an invocation with the same
//! request id) finds its own earlier write and goes on; another holder is refused. An item is
//! updated, never replaced, once written.
//!
//! - **jobs** (`JOB#<job id>`): a job is claimed by one worker run; its answer is recorded
//!   before it is sent, so whoever finds the job again (a retry, another run) sends exactly that
//!   answer and nothing else. A claim whose run died expires.
//! - **runs** (`RUN#<request id>`): the custom-action jobs a run polled, so that Lambda's retry
//!   of that run (same request id) takes them up again.
//! - **leases** (`LEASE#<target>`): one deployment per target (account, region, function and
//!   alias, or cluster and service) at a time, until a moment just past its holder's deadline.
//!   A lease whose holder's job was answered for good is free.
//! - **deployments** (`TARGET#<target>`, `DEPLOY#<started>#<id>`): what was deployed, what stood
//!   before, what the target serves, by which pipeline run, when, and how it ended — what
//!   rollback reads. Two sparse global secondary indexes find them for rollback: `by-execution`
//!   (pipeline, execution and stage) and `by-account` (account and region, newest first).
//! - **rollbacks**: in the deployment's item (`rollback_status`, `rollback_data`), claimed with a
//!   conditional update, so the same event twice, or two events for one deployment, restore
//!   once; a deployment condemned while it runs is marked `Pending` and rolled back when it ends.
//! - **continuations** (`CONT#<token>`): the state a long deployment resumes from; the
//!   continuation token CodePipeline carries is only this key.

mod deployments;
mod inventory;
mod jobs;
mod leases;
mod origin;
mod records;
mod steps;

pub use deployments::Finished;
pub use inventory::{Filter, HeldLease};
pub use jobs::{Claim, Decided, JobState, PolledJob, RecordedAnswer};
pub use origin::{check_origin, not_checked, vouches, Origin, OriginError};
pub use records::{
    Continuation, DeploymentRecord, DeploymentStatus, LeaseHolder, Phase, RollbackRecord, RollbackStatus, TargetKey,
    TargetParts,
};
pub use steps::{Begin, Begun, Deployment, End};

use aws_sdk_dynamodb::types::{AttributeValue, Update};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};
use std::collections::HashMap;
use std::future::Future;
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
/// How long a call retries transient faults when the ledger was given no deadline.
const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(20);

/// Finished items are kept this long, then DynamoDB's TTL removes them.
pub(crate) const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
#[error("failed to {action} in the ledger table {table}: {error}")]
pub struct LedgerError {
    pub action: &'static str,
    pub table: String,
    pub error: ErrorInfo,
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

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(crate) fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> Option<u64> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// Whether a failed write is DynamoDB refusing its condition.
pub(crate) fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

/// The ledger, over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct Ledger {
    client: Client,
    table: String,
    /// Transient faults are retried until this deadline (default: 20 s from each call).
    deadline: Option<Deadline>,
}

impl Ledger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), deadline: None }
    }

    /// This ledger, retrying transient faults (throttling, 5xx, timeouts, broken connections)
    /// until `deadline` instead of for 20 s from each call.
    pub fn until(&self, deadline: Deadline) -> Ledger {
        Ledger { deadline: Some(deadline), ..self.clone() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub(crate) fn error<E>(&self, action: &'static str, e: &SdkError<E, HttpResponse>) -> LedgerError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        LedgerError { action, table: self.table.clone(), error: ErrorInfo::from_sdk(e) }
    }

    /// A write that could not be put together (a bug: every required part is set here).
    pub(crate) fn unbuilt(&self, action: &'static str, e: aws_sdk_dynamodb::error::BuildError) -> LedgerError {
        LedgerError {
            action,
            table: self.table.clone(),
            error: ErrorInfo { code: None, message: format!("crossdeploy could not build the request: {e}") },
        }
    }

    /// `update` as one UpdateItem call (the same write a transaction may carry instead).
    pub(crate) fn update_item(
        &self,
        update: &Update,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
    }

    /// Sends a ledger call, retrying transient faults with backoff and jitter until the deadline.
    /// A retried conditional write that meets its own earlier attempt fails its condition: every
    /// caller's condition lets the same holder through, or reads back what is there.
    pub(crate) async fn send<T, E, F, Fut>(&self, what: &'static str, op: F) -> Result<T, SdkError<E, HttpResponse>>
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let deadline = self.deadline.unwrap_or_else(|| Deadline::after(DEFAULT_RETRY_BUDGET));
        retry(what, Backoff::LEDGER, deadline, |e: &SdkError<E, HttpResponse>| is_transient(e), op).await
    }

    /// One item, read consistently (`None`: there is none).
    pub(crate) async fn get(
        &self,
        pk: &str,
        sk: &str,
        action: &'static str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LedgerError> {
        let out = self
            .send(action, || {
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(pk))
                    .key("sk", s(sk))
                    .consistent_read(true)
                    .send()
            })
            .await
            .map_err(|e| self.error(action, &e))?;
        Ok(out.item)
    }

    /// Stores a continuation under `token` for `owner` (the run that writes it). The same run
    /// saving it again (a retry whose first answer was lost) succeeds; another run may only
    /// write exactly what is there.
    pub async fn save_continuation(
        &self,
        token: &str,
        continuation: &Continuation,
        owner: &str,
    ) -> Result<(), LedgerError> {
        let data = serde_json::to_string(continuation).unwrap_or_default();
        let result = self
            .send("save continuation state", || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(format!("CONT#{token}")))
                    .key("sk", s("CONT"))
                    .update_expression("SET #data = :data, #owner = :me, expires_at = :exp")
                    .condition_expression("attribute_not_exists(pk) OR #owner = :me OR #data = :data")
                    .expression_attribute_names("#data", "data")
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":data", s(&data))
                    .expression_attribute_values(":me", s(owner))
                    .expression_attribute_values(":exp", n(now_secs() + RETENTION.as_secs()))
                    .send()
            })
            .await;
        result.map(|_| ()).map_err(|e| self.error("save continuation state", &e))
    }

    pub async fn load_continuation(&self, token: &str) -> Result<Option<Continuation>, LedgerError> {
        let item = self.get(&format!("CONT#{token}"), "CONT", "load continuation state").await?;
        Ok(item.as_ref().and_then(|i| get_s(i, "data")).and_then(|d| serde_json::from_str(d).ok()))
    }
}
