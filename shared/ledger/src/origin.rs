//! Where an updater's request comes from. An updater acts only on a request that the target's
//! live lease vouches for: the worker and deploy-rollback take the target's lease, and record in
//! it the fingerprint of the very request they are about to send ([`UpdaterRequest::fingerprint`]:
//! all of it, the state to resume from and the deadline too), before each invocation. Only their roles may write the ledger, so a caller that can
//! invoke an updater but not write the ledger cannot have it act: not on a target nobody is
//! deploying, and not with another artifact or spec for a target someone is.

use crate::{now_secs, LeaseHolder, Ledger, LedgerError, TargetKey};
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::{Outcome, UpdaterRequest};

/// Why an updater refused a request.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// No live lease vouches for the request: it does not come from the worker or
    /// deploy-rollback (or they gave the target up before it arrived).
    #[error(
        "{updater} refused request {request_id} for {target}: {why}. The updaters act only on requests the worker or deploy-rollback recorded in the target's lease in the ledger; deploy through a pipeline, and roll back through deploy-rollback, not by invoking an updater"
    )]
    Refused { updater: String, request_id: String, target: TargetKey, why: String },
    /// The ledger could not be read: the request's origin is unknown, so nothing was done.
    #[error("{updater} could not check where request {request_id} comes from, so it did nothing: {error}")]
    Unreadable { updater: String, request_id: String, error: LedgerError },
    /// The updater has no ledger table to check against.
    #[error("{updater} has no ledger table to check where its requests come from: set CROSSDEPLOY_LEDGER_TABLE (template.yaml does)")]
    NoLedger { updater: String },
}

/// What an updater checks its requests' origin against: the ledger (from
/// `CROSSDEPLOY_LEDGER_TABLE`) and the region the functions run in (targets without a region
/// are in it, as the worker keys them).
#[derive(Debug, Clone)]
pub struct Origin {
    ledger: Option<Ledger>,
    region: String,
}

impl Origin {
    pub fn new(ledger: Option<Ledger>, region: impl Into<String>) -> Self {
        Self { ledger, region: region.into() }
    }

    /// From the function's environment: with no ledger table set, every request is refused.
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        let ledger = std::env::var(crate::LEDGER_TABLE_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .map(|table| Ledger::new(aws_sdk_dynamodb::Client::new(config), table));
        // The worker's default too, so that both key a target alike.
        let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_owned());
        Self { ledger, region }
    }

    /// Checks that `request`, whose JSON as received has `fingerprint`, comes from the worker
    /// or deploy-rollback ([`check_origin`]), retrying the ledger's transient faults until `deadline`.
    pub async fn check(
        &self,
        updater: &str,
        request: &UpdaterRequest,
        fingerprint: &str,
        deadline: Deadline,
    ) -> Result<(), OriginError> {
        let ledger = self.ledger.as_ref().map(|l| l.until(deadline));
        check_origin(ledger.as_ref(), updater, request, fingerprint, &self.region).await
    }
}

/// The answer to a request whose origin could not be checked (the ledger did not answer in
/// time, [`OriginError::Unreadable`]): in progress from the state it came with, so that the caller
/// invokes again; nothing was done, and what stands is unchanged.
pub fn not_checked(request: &UpdaterRequest, error: &OriginError) -> Outcome {
    let state = match request {
        UpdaterRequest::Deploy(r) => r.resume.clone().unwrap_or(serde_json::Value::Null),
        UpdaterRequest::Rollback(_) => serde_json::Value::Null,
    };
    tracing::warn!(%error, "could not check where the request comes from; nothing done");
    Outcome::InProgress { summary: format!("{error}; trying again"), percent_complete: 0, state, stands: None }
}

/// Whether `holder` (the target's lease as read, if any) vouches, at `now` (epoch seconds), for
/// the request whose fingerprint is `fingerprint`; `Err` says why not.
pub fn vouches(holder: Option<&LeaseHolder>, fingerprint: &str, now: u64) -> Result<(), String> {
    let Some(holder) = holder else {
        return Err("no deployment or rollback holds the target's lease".to_owned());
    };
    // Who holds it is not said: a caller that may not act learns nothing of the run that may.
    if holder.until < now {
        return Err(format!("the target's lease expired {} s ago", now - holder.until));
    }
    match holder.request.as_deref() {
        Some(f) if f == fingerprint => Ok(()),
        Some(_) => Err("the target's lease vouches for another request".to_owned()),
        None => Err("the target's lease vouches for no request now".to_owned()),
    }
}

/// Checks, against the ledger, that `request` comes from the worker or deploy-rollback (see the
/// module's documentation). `default_region` is the region the functions run in.
pub async fn check_origin(
    ledger: Option<&Ledger>,
    updater: &str,
    request: &UpdaterRequest,
    fingerprint: &str,
    default_region: &str,
) -> Result<(), OriginError> {
    let Some(ledger) = ledger else {
        return Err(OriginError::NoLedger { updater: updater.to_owned() });
    };
    let target = TargetKey::of_request(request, default_region);
    let request_id = request.request_id().to_owned();
    let holder = ledger.lease_holder(&target).await.map_err(|error| OriginError::Unreadable {
        updater: updater.to_owned(),
        request_id: request_id.clone(),
        error,
    })?;
    vouches(holder.as_ref(), fingerprint, now_secs()).map_err(|why| OriginError::Refused {
        updater: updater.to_owned(),
        request_id,
        target,
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(request: Option<&str>, until: u64) -> LeaseHolder {
        LeaseHolder {
            deployment_id: "job-1".into(),
            pipeline: Some("orders".into()),
            execution_id: Some("e-1".into()),
            job_id: Some("job-1".into()),
            since: 900,
            until,
            request: request.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_live_lease_holding_the_requests_fingerprint_vouches_for_it() {
        assert_eq!(vouches(Some(&holder(Some("f1"), 1_000)), "f1", 1_000), Ok(()));
        let refused = [
            (None, "no deployment or rollback holds"),
            (Some(holder(Some("f1"), 999)), "expired 1 s ago"),
            (Some(holder(Some("f2"), 2_000)), "vouches for another request"),
            (Some(holder(None, 2_000)), "vouches for no request"),
        ];
        for (lease, why) in refused {
            let e = vouches(lease.as_ref(), "f1", 1_000).unwrap_err();
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("orders") && !e.contains("job-1"), "the holder is not named: {e}");
        }
    }
}
