//! A job's first and last ledger writes, each as one transaction (TransactWriteItems) for the
//! common case: a job delivered for the first time, to a free target, and a deployment that ends
//! without having been condemned. Every condition the writes have one by one holds inside the
//! transaction as well (or a stricter one), and DynamoDB applies all of a transaction's writes or
//! none. Where any condition fails, nothing was written, and the caller takes the path one write
//! at a time (claim, lease, record; record the end, release, record the answer), whose
//! conditions sort each case out: a retry of the run, a busy target, a condemned deployment.
//!
//! A transaction whose answer was lost is found by its retry: on real DynamoDB by its client
//! request token (the retry succeeds without writing again); anywhere, by the token it wrote on
//! the job's claim (or, for a job this run had claimed already, by the lease vouching for the
//! very updater request this attempt is about to send).

use crate::jobs::CLAIMED;
use crate::{
    get_s, n, now_secs, s, DeploymentRecord, DeploymentStatus, LeaseHolder, Ledger, LedgerError, TargetKey, RETENTION,
};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A job's first writes: its claim, its target's lease, and its deployment's record.
#[derive(Debug, Clone)]
pub struct Begin<'a> {
    /// Whether the job is claimed here (an Invoke action's job), or was claimed already (a
    /// custom action's job is claimed before it is acknowledged).
    pub claim: bool,
    pub job_id: &'a str,
    /// The run (its request id) claiming the job.
    pub owner: &'a str,
    /// How long the claim holds.
    pub hold: Duration,
    /// When the job is claimed (ms since the epoch): a new deployment's record is keyed by it.
    pub claimed_ms: u64,
    pub target: &'a TargetKey,
    /// The lease's holder: the deployment, vouching for its first updater request.
    pub holder: &'a LeaseHolder,
    /// Until when the lease holds (seconds since the epoch).
    pub lease_until: u64,
    pub deployment: Deployment<'a>,
}

/// The deployment a job works on.
#[derive(Debug, Clone, Copy)]
pub enum Deployment<'a> {
    /// A new one: its record is written (`started_at` is the claim's time).
    Start(&'a DeploymentRecord),
    /// One going on from an earlier job: it must be in progress and not condemned.
    GoOn(&'a DeploymentRecord),
}

/// What became of a job's first writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// All were written: the job is this run's (claimed at `claimed_ms`), the target's lease is
    /// the deployment's, vouching for its first request, and its record is there.
    Written,
    /// Nothing was written (why): go one write at a time.
    OneByOne(String),
}

/// A job's last writes: how its deployment ended, its target's lease given back, its answer.
#[derive(Debug, Clone)]
pub struct End<'a> {
    /// The deployment's record as it ended.
    pub record: &'a DeploymentRecord,
    pub job_id: &'a str,
    /// The run holding the job's claim.
    pub owner: &'a str,
    /// The answer's label ("Succeeded", the failure type) and the answer itself.
    pub label: &'a str,
    pub data: &'a str,
}

/// Whether DynamoDB cancelled the transaction (a condition failed, a conflict, throttling):
/// nothing of it was written. Its reasons, one per write in order. Reasons other than a failed
/// condition are logged: they are not the ledger's state speaking.
fn cancelled(e: &SdkError<TransactWriteItemsError, HttpResponse>) -> Option<String> {
    let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error() else {
        return None;
    };
    let reasons: Vec<&str> = c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
    if reasons.iter().any(|r| *r != "ConditionalCheckFailed" && *r != "None") {
        tracing::warn!(?reasons, "a ledger transaction was cancelled for a reason other than its conditions");
    }
    Some(match reasons.is_empty() {
        true => c.message().unwrap_or("cancelled").to_owned(),
        false => format!("cancelled: {}", reasons.join(", ")),
    })
}

/// A token for one transaction of `owner` on `job_id` (at most 36 characters, as DynamoDB asks).
fn token(owner: &str, job_id: &str, what: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let hash = crossdeploy_protocol::fingerprint_of(&serde_json::json!([owner, job_id, what, nanos.to_string()]));
    hash.chars().take(32).collect()
}

impl Ledger {
    /// One transaction, its transient faults retried under the same client request token.
    async fn transact(
        &self,
        what: &'static str,
        items: Vec<TransactWriteItem>,
        token: &str,
    ) -> Result<(), SdkError<TransactWriteItemsError, HttpResponse>> {
        self.send(what, || {
            self.client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(token)
                .send()
        })
        .await
        .map(|_| ())
    }

    /// Claims a job delivered for the first time, takes its target's lease and records its
    /// deployment, in one transaction: all of it, or nothing (then [`Begun::OneByOne`]).
    pub async fn begin(&self, b: &Begin<'_>) -> Result<Begun, LedgerError> {
        const WHAT: &str = "claim a job, its target and its deployment";
        let now = now_secs();
        let token = token(b.owner, b.job_id, "begin");
        // The claim as `claim_job` writes it, on a job never claimed.
        let claim = Put::builder()
            .table_name(&self.table)
            .set_item(Some(HashMap::from([
                ("pk".to_owned(), s(format!("JOB#{}", b.job_id))),
                ("sk".to_owned(), s("JOB")),
                ("status".to_owned(), s(CLAIMED)),
                ("owner".to_owned(), s(b.owner)),
                ("claimed_until".to_owned(), n(now + b.hold.as_secs())),
                ("first_claimed_ms".to_owned(), n(b.claimed_ms)),
                ("expires_at".to_owned(), n(now + RETENTION.as_secs())),
                // This attempt's mark: its retry knows its own claim by it.
                ("tx".to_owned(), s(&token)),
            ])))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| self.unbuilt(WHAT, e))?;
        let lease = self.lease_update(b.target, b.holder, b.lease_until, None)?;
        let deployment = match b.deployment {
            Deployment::Start(record) => TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(record.item()))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(|e| self.unbuilt(WHAT, e))?,
                )
                .build(),
            Deployment::GoOn(record) => {
                let (dpk, dsk) = record.key();
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table)
                            .key("pk", s(dpk))
                            .key("sk", s(dsk))
                            .condition_expression("#st = :in_progress AND attribute_not_exists(rollback_status)")
                            .expression_attribute_names("#st", "status")
                            .expression_attribute_values(":in_progress", s(DeploymentStatus::InProgress.as_str()))
                            .build()
                            .map_err(|e| self.unbuilt(WHAT, e))?,
                    )
                    .build()
            }
        };
        let mut items = vec![TransactWriteItem::builder().update(lease).build(), deployment];
        if b.claim {
            items.insert(0, TransactWriteItem::builder().put(claim).build());
        }
        let Err(e) = self.transact(WHAT, items, &token).await else { return Ok(Begun::Written) };
        // Cancelled by its own earlier attempt (its answer lost, the SDK retried), or failed
        // after it was applied? Then the job's claim carries this attempt's token. (Not the
        // lease's fingerprint: two deliveries of one job, started in the same millisecond, send
        // the same request.) A job claimed before by this run is this run's alone: then the
        // lease vouching for this attempt's request tells.
        let ours = match b.claim {
            true => self
                .get(&format!("JOB#{}", b.job_id), "JOB", "read a job claim")
                .await
                .map(|job| job.as_ref().and_then(|j| get_s(j, "tx")) == Some(token.as_str())),
            false => self.lease_holder(b.target).await.map(|h| {
                h.is_some_and(|h| {
                    h.deployment_id == b.holder.deployment_id && h.request.is_some() && h.request == b.holder.request
                })
            }),
        };
        match (ours, cancelled(&e)) {
            (Ok(true), _) => Ok(Begun::Written),
            (Ok(false), Some(why)) => Ok(Begun::OneByOne(why)),
            (Err(read), Some(_)) => Err(read),
            (_, None) => Err(self.error(WHAT, &e)),
        }
    }

    /// Records how a deployment nobody condemned ended, gives its target's lease back and
    /// records its job's answer, in one transaction: all of it (`true`), or nothing (`false`:
    /// the deployment was condemned, the lease or the claim passed on, or this was written
    /// already; go one write at a time, which tells these apart).
    pub async fn end(&self, e: &End<'_>) -> Result<bool, LedgerError> {
        const WHAT: &str = "record a deployment's end and its job's answer";
        let finish =
            self.finish_update(e.record, "#st = :in_progress AND attribute_not_exists(rollback_status)", true)?;
        let release = self.lease_release(&e.record.target, &e.record.deployment_id)?;
        let answer = self.answer_update(e.job_id, e.owner, e.label, e.data, "#owner = :me AND #status = :claimed")?;
        let items = vec![
            TransactWriteItem::builder().update(finish).build(),
            TransactWriteItem::builder().delete(release).build(),
            TransactWriteItem::builder().update(answer).build(),
        ];
        let token = token(e.owner, e.job_id, "end");
        match self.transact(WHAT, items, &token).await {
            Ok(_) => Ok(true),
            Err(err) => match cancelled(&err) {
                Some(why) => {
                    tracing::info!(job_id = e.job_id, deployment_id = %e.record.deployment_id, %why, "the end's transaction was cancelled; recording it one write at a time");
                    Ok(false)
                }
                None => Err(self.error(WHAT, &err)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeploymentRecord, DeploymentStatus, LeaseHolder, TargetKey};
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use std::sync::{Arc, Mutex};

    fn record(target: &TargetKey) -> DeploymentRecord {
        DeploymentRecord {
            deployment_id: "job-1".into(),
            target: target.clone(),
            role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".into(),
            pipeline: Default::default(),
            started_at: 100,
            finished_at: None,
            status: DeploymentStatus::InProgress,
            previous: None,
            deployed: None,
            serving: None,
            outputs: Default::default(),
            message: None,
            alarm_names: vec![],
            rollback: None,
        }
    }

    fn status(code: u16, body: &'static str) -> aws_smithy_runtime_api::http::Response {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(code).unwrap(),
            aws_smithy_types::body::SdkBody::from(body),
        )
    }

    /// The transaction is applied but its answer lost (a 500); the SDK's retry is cancelled by
    /// the claim it wrote itself, which carries its token: written, not someone else's job.
    /// A claim carrying another attempt's token is someone else's.
    #[tokio::test(start_paused = true)]
    async fn a_transaction_whose_answer_was_lost_finds_its_own_claim_and_no_one_elses() {
        for own in [true, false] {
            let written = Arc::new(Mutex::new(String::new()));
            let keep = written.clone();
            let transact = mock!(Client::transact_write_items)
                .match_requests(move |r| {
                    let tx = r.transact_items().first().and_then(|i| i.put()).and_then(|p| p.item().get("tx").cloned());
                    if let Some(AttributeValue::S(tx)) = tx {
                        *keep.lock().unwrap() = tx;
                    }
                    true
                })
                .sequence()
                .http_response(|| status(500, r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError"}"#))
                .http_response(|| {
                    status(
                        400,
                        r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled","CancellationReasons":[{"Code":"ConditionalCheckFailed"},{"Code":"None"},{"Code":"None"}]}"#,
                    )
                })
                .build();
            let read = written.clone();
            let get = mock!(Client::get_item).then_output(move || {
                let tx = if own { read.lock().unwrap().clone() } else { "another-attempt".to_owned() };
                GetItemOutput::builder().item("tx", AttributeValue::S(tx)).build()
            });
            let ledger = Ledger::new(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&transact, &get]), "ledger");
            let target = TargetKey::lambda("222222222222", "us-east-1", "orders-api", "live");
            let holder = LeaseHolder { deployment_id: "job-1".into(), request: Some("r".into()), ..Default::default() };
            let record = record(&target);
            let b = Begin {
                claim: true,
                job_id: "job-1",
                owner: "run-1",
                hold: Duration::from_secs(600),
                claimed_ms: 100,
                target: &target,
                holder: &holder,
                lease_until: now_secs() + 600,
                deployment: Deployment::Start(&record),
            };
            let begun = ledger.begin(&b).await.unwrap();
            assert_eq!(transact.num_calls(), 2);
            match own {
                true => assert_eq!(begun, Begun::Written),
                false => assert!(matches!(begun, Begun::OneByOne(_)), "{begun:?}"),
            }
        }
    }
}
