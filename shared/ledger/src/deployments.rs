//! Deployment records and their rollbacks.

use crate::records::execution_stage;
use crate::{
    condition_failed, get_s, n, now_secs, s, DeploymentRecord, DeploymentStatus, Ledger, LedgerError, RollbackClaim,
    RollbackRecord, RollbackStatus, ACCOUNT_INDEX, ACCOUNT_INDEX_KEY, EXECUTION_INDEX, EXECUTION_INDEX_KEY,
    MAX_QUERY_PAGES,
};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Update};
use std::collections::HashMap;
use std::time::Duration;

/// A deployment record read from its item, with its rollback.
pub(crate) fn record_of(item: &HashMap<String, AttributeValue>) -> Option<DeploymentRecord> {
    let mut record: DeploymentRecord = serde_json::from_str(get_s(item, "data")?).ok()?;
    record.rollback = rollback_of(item);
    Some(record)
}

fn rollback_of(item: &HashMap<String, AttributeValue>) -> Option<RollbackRecord> {
    get_s(item, "rollback_data").and_then(|d| serde_json::from_str(d).ok())
}

/// What the ledger held once a deployment's end was recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// The deployment's rollback, if one was recorded on it: it was condemned while it ran (its
    /// stage failed: `Pending`), or handled since (a retried run finds its rollback under way
    /// or done). Either way the deployment must not be answered as a success.
    pub condemned: Option<RollbackRecord>,
}

impl Ledger {
    /// Records a deployment as it starts; a second call for the same deployment changes nothing.
    pub async fn start_deployment(&self, record: &DeploymentRecord) -> Result<(), LedgerError> {
        let result = self
            .send("record a deployment", || {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(record.item()))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(self.error("record a deployment", &e)),
        }
    }

    /// Notes, on a deployment in progress, what its target serves now (`record.previous`,
    /// `deployed`, `serving`): if its run dies, rollback reads it.
    pub async fn note_progress(&self, record: &DeploymentRecord) -> Result<(), LedgerError> {
        let (pk, sk) = record.key();
        let data = record.data();
        let result = self
            .send("record a deployment's progress", || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .update_expression("SET #data = :data")
                    .condition_expression("#status = :in_progress")
                    .expression_attribute_names("#data", "data")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":data", s(&data))
                    .expression_attribute_values(":in_progress", s(DeploymentStatus::InProgress.as_str()))
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(self.error("record a deployment's progress", &e)),
        }
    }

    /// The write that records how a deployment ended, under `condition` (which may name `#st`
    /// and `:in_progress`): every attribute of its item but its key and its rollback's (which
    /// stay), or with `started`, only those a deployment's end changes (its status, record and
    /// expiry: the index keys were written when it started, from the same pipeline and target).
    pub(crate) fn finish_update(
        &self,
        record: &DeploymentRecord,
        condition: &str,
        started: bool,
    ) -> Result<Update, LedgerError> {
        let (pk, sk) = record.key();
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .key("sk", s(&sk))
            .condition_expression(condition)
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":in_progress", s(DeploymentStatus::InProgress.as_str()));
        let mut sets = Vec::new();
        let ends = |k: &str| matches!(k, "status" | "data" | "expires_at");
        let attributes = record.item().into_iter().filter(|(k, _)| k != "pk" && k != "sk" && (!started || ends(k)));
        for (i, (k, v)) in attributes.enumerate() {
            update =
                update.expression_attribute_names(format!("#a{i}"), k).expression_attribute_values(format!(":v{i}"), v);
            sets.push(format!("#a{i} = :v{i}"));
        }
        update
            .update_expression(format!("SET {}", sets.join(", ")))
            .build()
            .map_err(|e| self.unbuilt("record how a deployment ended", e))
    }

    /// Records how a deployment ended: an update of its item (what rollback wrote on it stays),
    /// only while it is in progress. Recording the same end again succeeds. Says whether the
    /// deployment was condemned while it ran.
    pub async fn finish_deployment(&self, record: &DeploymentRecord) -> Result<Finished, LedgerError> {
        let (pk, sk) = record.key();
        let update = self.finish_update(record, "attribute_not_exists(pk) OR #st = :in_progress", false)?;
        let result = self
            .send("record how a deployment ended", || {
                self.update_item(&update).return_values(ReturnValue::AllNew).send()
            })
            .await;
        let condemned = |item: &HashMap<String, AttributeValue>| rollback_of(item);
        match result {
            Ok(out) => Ok(Finished { condemned: out.attributes.as_ref().and_then(condemned) }),
            Err(e) if condition_failed(&e) => {
                let item = self.get(&pk, &sk, "read a deployment").await?.unwrap_or_default();
                if get_s(&item, "status") == Some(record.status.as_str()) {
                    // Our own earlier write, its answer lost.
                    return Ok(Finished { condemned: condemned(&item) });
                }
                tracing::warn!(deployment_id = %record.deployment_id, "the deployment was recorded as finished already");
                Ok(Finished::default())
            }
            Err(e) => Err(self.error("record how a deployment ended", &e)),
        }
    }

    /// One deployment, read back.
    pub async fn deployment(&self, record: &DeploymentRecord) -> Result<Option<DeploymentRecord>, LedgerError> {
        let (pk, sk) = record.key();
        Ok(self.get(&pk, &sk, "read a deployment").await?.as_ref().and_then(record_of))
    }

    /// The target's deployments, newest first.
    pub async fn deployments(&self, target: &crate::TargetKey) -> Result<Vec<DeploymentRecord>, LedgerError> {
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
            .expression_attribute_values(":k", s(execution_stage(pipeline, execution_id, stage)))
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
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_QUERY_PAGES {
            let out = self
                .send(action, || query.clone().set_exclusive_start_key(start.clone()).send())
                .await
                .map_err(|e| self.error(action, &e))?;
            records.extend(out.items.unwrap_or_default().iter().filter_map(record_of));
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(records),
            }
        }
        tracing::warn!(table = %self.table, action, pages = MAX_QUERY_PAGES, "stopped reading after the page limit");
        Ok(records)
    }

    /// Marks a deployment still in progress as condemned (its stage failed while it ran): its
    /// worker rolls it back when it ends. `false`: it is not in progress any more (or is
    /// condemned by another event already): handle it as a finished deployment.
    pub async fn condemn_in_progress(
        &self,
        record: &DeploymentRecord,
        pending: &RollbackRecord,
    ) -> Result<bool, LedgerError> {
        let (pk, sk) = record.key();
        let result = self
            .send("condemn a deployment in progress", || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .update_expression("SET rollback_status = :pending, rollback_by = :by, rollback_data = :data")
                    .condition_expression("#status = :in_progress AND attribute_not_exists(rollback_status)")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":pending", s(RollbackStatus::Pending.as_str()))
                    .expression_attribute_values(":by", s(&pending.by))
                    .expression_attribute_values(":data", s(serde_json::to_string(pending).unwrap_or_default()))
                    .expression_attribute_values(":in_progress", s(DeploymentStatus::InProgress.as_str()))
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => {
                let item = self.get(&pk, &sk, "read a deployment").await?.unwrap_or_default();
                let still_running = get_s(&item, "status") == Some(DeploymentStatus::InProgress.as_str());
                Ok(still_running && get_s(&item, "rollback_status") == Some(RollbackStatus::Pending.as_str()))
            }
            Err(e) => Err(self.error("condemn a deployment in progress", &e)),
        }
    }

    /// Claims `record`'s rollback for `claim.by` until `hold` from now. A rollback done already,
    /// or under way in another live run, is [`RollbackClaim::Taken`]; a failed or pending one
    /// may be claimed, and the same holder claiming again gets its claim back.
    pub async fn claim_rollback(
        &self,
        record: &DeploymentRecord,
        claim: &RollbackRecord,
        hold: Duration,
    ) -> Result<RollbackClaim, LedgerError> {
        let (pk, sk) = record.key();
        let now = now_secs();
        let data = serde_json::to_string(claim).unwrap_or_default();
        let result = self
            .send("claim a rollback", || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .update_expression(
                        "SET rollback_status = :claimed, rollback_by = :by, rollback_until = :until, rollback_data = :data",
                    )
                    .condition_expression(
                        "attribute_exists(pk) AND (attribute_not_exists(rollback_status) OR rollback_status = :failed OR rollback_status = :pending \
                         OR (rollback_status = :claimed AND (rollback_until < :now OR rollback_by = :by)))",
                    )
                    .expression_attribute_values(":claimed", s(RollbackStatus::InProgress.as_str()))
                    .expression_attribute_values(":failed", s(RollbackStatus::Failed.as_str()))
                    .expression_attribute_values(":pending", s(RollbackStatus::Pending.as_str()))
                    .expression_attribute_values(":by", s(&claim.by))
                    .expression_attribute_values(":until", n(now + hold.as_secs()))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":data", s(&data))
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(RollbackClaim::Claimed),
            Err(e) if condition_failed(&e) => {
                let item = self.get(&pk, &sk, "read a rollback").await?.unwrap_or_default();
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
        let data = serde_json::to_string(outcome).unwrap_or_default();
        let result = self
            .send("record a rollback", || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .key("sk", s(&sk))
                    .update_expression("SET rollback_status = :status, rollback_data = :data REMOVE rollback_until")
                    .condition_expression("rollback_by = :by")
                    .expression_attribute_values(":status", s(outcome.status.as_str()))
                    .expression_attribute_values(":by", s(&outcome.by))
                    .expression_attribute_values(":data", s(&data))
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => {
                tracing::warn!(deployment_id = %record.deployment_id, "the rollback's claim passed to another run before it was recorded");
                Ok(())
            }
            Err(e) => Err(self.error("record a rollback", &e)),
        }
    }
}
