//! Job claims, the answer each job gets (recorded before it is sent), and the jobs a run polled.

use crate::{condition_failed, get_n, get_s, n, now_millis, now_secs, s, Ledger, LedgerError, RETENTION};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Update};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

pub(crate) const CLAIMED: &str = "CLAIMED";
const ANSWERED: &str = "ANSWERED";

/// The answer a job was given (or is being given), as recorded before it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAnswer {
    /// "Succeeded", "InProgress" (a continuation), or the failure type.
    pub label: String,
    /// The answer itself, as the worker wrote it (JSON). Whether CodePipeline took it is
    /// CodePipeline's to say: sending it again to a job answered already changes nothing.
    pub data: String,
}

/// Whether this run got the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This run holds the job: a new claim, or its own earlier one (Lambda retried the run with
    /// the same request id: `retried`). `since_ms`: when the job was first claimed, the same for
    /// every retry: a deployment's record is keyed by it.
    Claimed { since_ms: u64, retried: bool },
    /// Another run holds it and is alive (its claim has not lapsed).
    Taken,
    /// The job's answer was decided already: send it (again) if it was not sent.
    Answered(RecordedAnswer),
}

/// What became of recording an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// This answer is the job's: send it.
    Ours,
    /// The job has another answer already (an earlier attempt of this run): send that one.
    Earlier(RecordedAnswer),
    /// The claim passed to another run (this one outlived it): send nothing.
    LostClaim,
}

/// A job as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub owner: String,
    /// `None` while claimed.
    pub answer: Option<RecordedAnswer>,
}

/// A custom action's job a run polled: enough to take it up again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolledJob {
    pub job_id: String,
    pub provider: String,
    pub nonce: String,
}

fn recorded(item: &HashMap<String, AttributeValue>) -> Option<RecordedAnswer> {
    (get_s(item, "status") == Some(ANSWERED)).then(|| RecordedAnswer {
        label: get_s(item, "answer").unwrap_or_default().to_owned(),
        data: get_s(item, "answer_data").unwrap_or_default().to_owned(),
    })
}

impl Ledger {
    /// Claims `job_id` for `owner` until `hold` from now. The same owner claiming again gets its
    /// claim back; a job held by a live run is [`Claim::Taken`]; a job whose answer is decided is
    /// [`Claim::Answered`].
    pub async fn claim_job(&self, job_id: &str, owner: &str, hold: Duration) -> Result<Claim, LedgerError> {
        let pk = format!("JOB#{job_id}");
        let now = now_secs();
        let now_ms = now_millis();
        let result = self
            .send("claim job", || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s("JOB"))
                    .update_expression(
                        "SET #status = :claimed, #owner = :me, claimed_until = :until, \
                         first_claimed_ms = if_not_exists(first_claimed_ms, :now_ms), \
                         expires_at = if_not_exists(expires_at, :exp)",
                    )
                    .condition_expression(
                        "attribute_not_exists(pk) OR (#status = :claimed AND (claimed_until < :now OR #owner = :me))",
                    )
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":claimed", s(CLAIMED))
                    .expression_attribute_values(":me", s(owner))
                    .expression_attribute_values(":until", n(now + hold.as_secs()))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":now_ms", n(now_ms))
                    .expression_attribute_values(":exp", n(now + RETENTION.as_secs()))
                    .return_values(ReturnValue::AllOld)
                    .send()
            })
            .await;
        match result {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                let since_ms = get_n(&old, "first_claimed_ms").unwrap_or(now_ms);
                let retried = get_s(&old, "owner") == Some(owner) && get_s(&old, "status") == Some(CLAIMED);
                Ok(Claim::Claimed { since_ms, retried })
            }
            Err(e) if condition_failed(&e) => {
                let item = self.get(&pk, "JOB", "read a job claim").await?.unwrap_or_default();
                Ok(match recorded(&item) {
                    Some(answer) => Claim::Answered(answer),
                    None => Claim::Taken,
                })
            }
            Err(e) => Err(self.error("claim job", &e)),
        }
    }

    /// The write that records `data` (labelled `label`) as the job's answer, under `condition`
    /// (which may name `#owner`, `#status`, `:me`, `:claimed`, `:answered` and `:data`).
    pub(crate) fn answer_update(
        &self,
        job_id: &str,
        owner: &str,
        label: &str,
        data: &str,
        condition: &str,
    ) -> Result<Update, LedgerError> {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(format!("JOB#{job_id}")))
            .key("sk", s("JOB"))
            .update_expression("SET #status = :answered, answer = :label, answer_data = :data, answered_at = :now")
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":answered", s(ANSWERED))
            .expression_attribute_values(":claimed", s(CLAIMED))
            .expression_attribute_values(":label", s(label))
            .expression_attribute_values(":data", s(data))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":now", n(now_secs()))
            .build()
            .map_err(|e| self.unbuilt("record a job's answer", e))
    }

    /// Records `data` (labelled `label`) as the job's answer, before it is sent. Only the run
    /// holding the claim records; recording the same answer again succeeds.
    pub async fn record_answer(
        &self,
        job_id: &str,
        owner: &str,
        label: &str,
        data: &str,
    ) -> Result<Decided, LedgerError> {
        let pk = format!("JOB#{job_id}");
        let update = self.answer_update(
            job_id,
            owner,
            label,
            data,
            "#owner = :me AND (#status = :claimed OR (#status = :answered AND answer_data = :data))",
        )?;
        let result = self.send("record a job's answer", || self.update_item(&update).send()).await;
        match result {
            Ok(_) => Ok(Decided::Ours),
            Err(e) if condition_failed(&e) => {
                let item = self.get(&pk, "JOB", "read a job claim").await?.unwrap_or_default();
                Ok(match recorded(&item) {
                    Some(earlier) => Decided::Earlier(earlier),
                    None => Decided::LostClaim,
                })
            }
            Err(e) => Err(self.error("record a job's answer", &e)),
        }
    }

    /// A job as the ledger knows it (`None`: never claimed).
    pub async fn job_state(&self, job_id: &str) -> Result<Option<JobState>, LedgerError> {
        let item = self.get(&format!("JOB#{job_id}"), "JOB", "read a job claim").await?;
        Ok(item.map(|i| JobState { owner: get_s(&i, "owner").unwrap_or_default().to_owned(), answer: recorded(&i) }))
    }

    /// Notes the custom-action jobs run `run_id` polled, before it acknowledges them, so that a
    /// retry of the run (the same request id) takes them up again.
    pub async fn record_polled(&self, run_id: &str, jobs: &[PolledJob]) -> Result<(), LedgerError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let list: Vec<AttributeValue> = jobs.iter().map(|j| s(serde_json::to_string(j).unwrap_or_default())).collect();
        self.send("record polled jobs", || {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(format!("RUN#{run_id}")))
                .key("sk", s("RUN"))
                .update_expression("SET jobs = list_append(if_not_exists(jobs, :empty), :new), expires_at = :exp")
                .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
                .expression_attribute_values(":new", AttributeValue::L(list.clone()))
                .expression_attribute_values(":exp", n(now_secs() + 7 * 24 * 3600))
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|e| self.error("record polled jobs", &e))
    }

    /// The jobs run `run_id` polled, once each (a retried append may list one twice).
    pub async fn polled_jobs(&self, run_id: &str) -> Result<Vec<PolledJob>, LedgerError> {
        let item = self.get(&format!("RUN#{run_id}"), "RUN", "read polled jobs").await?.unwrap_or_default();
        let mut jobs: Vec<PolledJob> = Vec::new();
        let listed = item.get("jobs").and_then(|v| v.as_l().ok()).cloned().unwrap_or_default();
        for v in listed {
            if let Some(job) = v.as_s().ok().and_then(|j| serde_json::from_str::<PolledJob>(j).ok()) {
                if !jobs.iter().any(|j| j.job_id == job.job_id) {
                    jobs.push(job);
                }
            }
        }
        Ok(jobs)
    }
}
