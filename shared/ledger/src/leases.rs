//! Target leases: one deployment (or rollback) per target at a time.

use crate::{condition_failed, get_n, get_s, n, now_secs, s, Lease, LeaseHolder, Ledger, LedgerError, TargetKey};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Update};
use std::collections::HashMap;

/// A lease item is kept a day past its end, then DynamoDB's TTL removes it.
const LEASE_RETENTION_SECS: u64 = 24 * 3600;

pub(crate) fn holder_of(item: &HashMap<String, AttributeValue>) -> LeaseHolder {
    let mut holder =
        get_s(item, "data").and_then(|d| serde_json::from_str::<LeaseHolder>(d).ok()).unwrap_or_else(|| LeaseHolder {
            deployment_id: get_s(item, "holder").unwrap_or("unknown").to_owned(),
            ..LeaseHolder::default()
        });
    holder.until = get_n(item, "lease_until").unwrap_or(0);
    holder
}

impl Ledger {
    /// Takes the target's lease for `holder` until `until` (seconds since the epoch), or renews
    /// it when `holder` has it already (the same deployment, a retry of the same run). A live
    /// lease of another deployment is [`Lease::HeldBy`] it.
    pub async fn acquire_lease(
        &self,
        target: &TargetKey,
        holder: &LeaseHolder,
        until: u64,
    ) -> Result<Lease, LedgerError> {
        self.write_lease(target, holder, until, None).await
    }

    /// Takes the target's lease from `stale`, a holder whose job was answered for good (it will
    /// not renew it): only while `stale` still holds it with that job.
    pub async fn take_over_lease(
        &self,
        target: &TargetKey,
        holder: &LeaseHolder,
        until: u64,
        stale: &LeaseHolder,
    ) -> Result<Lease, LedgerError> {
        self.write_lease(target, holder, until, Some(stale)).await
    }

    /// The write that gives the target's lease to `holder` until `until`: taking a free or
    /// expired lease, renewing its own, or (with `stale`) taking it over from `stale` only while
    /// `stale` holds it with that job.
    pub(crate) fn lease_update(
        &self,
        target: &TargetKey,
        holder: &LeaseHolder,
        until: u64,
        stale: Option<&LeaseHolder>,
    ) -> Result<Update, LedgerError> {
        let now = now_secs();
        let stored = LeaseHolder { until, ..holder.clone() };
        let data = serde_json::to_string(&stored).unwrap_or_default();
        let job = holder.job_id.clone().unwrap_or_default();
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(format!("LEASE#{}", target.as_str())))
            .key("sk", s("LEASE"))
            .update_expression(
                "SET holder = :me, job_id = :job, #data = :data, lease_until = :until, expires_at = :exp",
            )
            .expression_attribute_names("#data", "data")
            .expression_attribute_values(":me", s(&holder.deployment_id))
            .expression_attribute_values(":job", s(&job))
            .expression_attribute_values(":data", s(&data))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":exp", n(until.max(now) + LEASE_RETENTION_SECS));
        let update = match stale {
            None => update
                .condition_expression("attribute_not_exists(pk) OR lease_until < :now OR holder = :me")
                .expression_attribute_values(":now", n(now)),
            Some(stale) => update
                .condition_expression("holder = :them AND job_id = :their_job")
                .expression_attribute_values(":them", s(&stale.deployment_id))
                .expression_attribute_values(":their_job", s(stale.job_id.clone().unwrap_or_default())),
        };
        update.build().map_err(|e| self.unbuilt("take a lease", e))
    }

    async fn write_lease(
        &self,
        target: &TargetKey,
        holder: &LeaseHolder,
        until: u64,
        stale: Option<&LeaseHolder>,
    ) -> Result<Lease, LedgerError> {
        let pk = format!("LEASE#{}", target.as_str());
        let update = self.lease_update(target, holder, until, stale)?;
        let result = self.send("take a lease", || self.update_item(&update).send()).await;
        match result {
            Ok(_) => Ok(Lease::Acquired),
            Err(e) if condition_failed(&e) => {
                let item = self.get(&pk, "LEASE", "read a lease").await?;
                match item {
                    // Released between the write and the read: try once more, as a new taker.
                    None if stale.is_some() => Box::pin(self.write_lease(target, holder, until, None)).await,
                    None => Ok(Lease::HeldBy(LeaseHolder { deployment_id: "unknown".into(), ..Default::default() })),
                    Some(item) => {
                        let other = holder_of(&item);
                        // A retried take-over that met its own first write.
                        if other.deployment_id == holder.deployment_id {
                            return Ok(Lease::Acquired);
                        }
                        Ok(Lease::HeldBy(other))
                    }
                }
            }
            Err(e) => Err(self.error("take a lease", &e)),
        }
    }

    /// Who holds the target's lease now, if anyone (an expired lease included: see `until`).
    pub async fn lease_holder(&self, target: &TargetKey) -> Result<Option<LeaseHolder>, LedgerError> {
        let item = self.get(&format!("LEASE#{}", target.as_str()), "LEASE", "read a lease").await?;
        Ok(item.as_ref().map(holder_of))
    }

    /// The write that gives the target's lease back, if `deployment_id` holds it.
    pub(crate) fn lease_release(&self, target: &TargetKey, deployment_id: &str) -> Result<Delete, LedgerError> {
        Delete::builder()
            .table_name(&self.table)
            .key("pk", s(format!("LEASE#{}", target.as_str())))
            .key("sk", s("LEASE"))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(deployment_id))
            .build()
            .map_err(|e| self.unbuilt("release a lease", e))
    }

    /// Gives the target's lease back, if `deployment_id` holds it.
    pub async fn release_lease(&self, target: &TargetKey, deployment_id: &str) -> Result<(), LedgerError> {
        let delete = self.lease_release(target, deployment_id)?;
        let result = self
            .send("release a lease", || {
                self.client
                    .delete_item()
                    .table_name(delete.table_name())
                    .set_key(Some(delete.key().clone()))
                    .set_condition_expression(delete.condition_expression().map(str::to_owned))
                    .set_expression_attribute_values(delete.expression_attribute_values().cloned())
                    .send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(self.error("release a lease", &e)),
        }
    }
}
