//! Custom actions: PollForJobs and AcknowledgeJob.

use crate::actions::ACTION_VERSION;
use crate::{Job, JobError};
use aws_sdk_codepipeline::types::{ActionCategory, ActionOwner, ActionTypeId, JobStatus};
use aws_sdk_codepipeline::Client;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};

#[derive(Debug, thiserror::Error)]
#[error("failed to {action} for action type {provider}: {error}")]
pub struct PollError {
    pub action: &'static str,
    pub provider: String,
    pub error: ErrorInfo,
}

fn action_type(provider: &str) -> Result<ActionTypeId, PollError> {
    ActionTypeId::builder()
        .category(ActionCategory::Deploy)
        .owner(ActionOwner::Custom)
        .provider(provider)
        .version(ACTION_VERSION)
        .build()
        .map_err(|e| PollError {
            action: "name the action type",
            provider: provider.to_owned(),
            error: ErrorInfo { code: None, message: e.to_string() },
        })
}

/// Up to `max` queued jobs of the custom action `provider`. A job that cannot be read is left
/// out (and logged): it is not acknowledged, so nothing is promised for it.
///
/// PollForJobs hands a job out once: a poll whose answer was lost may have taken jobs that no
/// one acknowledges. It is therefore never retried here; the next run polls afresh.
pub async fn poll_for_jobs(client: &Client, provider: &str, max: i32) -> Result<Vec<Job>, PollError> {
    let id = action_type(provider)?;
    let out = client
        .poll_for_jobs()
        .action_type_id(id)
        .max_batch_size(max)
        .customize()
        .config_override(
            aws_sdk_codepipeline::config::Config::builder()
                .retry_config(aws_sdk_codepipeline::config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
        .map_err(|e| PollError {
            action: "poll for jobs",
            provider: provider.to_owned(),
            error: ErrorInfo::from_sdk(&e),
        })?;
    Ok(out
        .jobs()
        .iter()
        .filter_map(|j| match Job::from_polled(j, provider) {
            Ok(job) => Some(job),
            Err(JobError::Malformed { job_id, problem }) => {
                tracing::error!(%job_id, %problem, "left a malformed polled job alone");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "left a polled job without an id alone");
                None
            }
        })
        .collect())
}

/// Acknowledges a polled job with its nonce. `Ok(true)`: the job is ours and in progress.
///
/// Transient faults are retried until `deadline`, by this function rather than the SDK: what a
/// second AcknowledgeJob with the same nonce answers is not documented (the CLI's example shows
/// `InProgress`; an `InvalidNonceException` is as plausible). So an `InvalidNonceException` on
/// the first attempt means the job is not ours, and on a retry after a fault (the first attempt
/// may have been applied) it means ours, acknowledged: either answer is safe. `already_ours`
/// says the run polled this job before (a retried run): then an `InvalidNonceException` is its
/// own earlier acknowledgement too.
pub async fn acknowledge_job(
    client: &Client,
    provider: &str,
    job_id: &str,
    nonce: &str,
    already_ours: bool,
    deadline: Deadline,
) -> Result<bool, PollError> {
    let mut attempts = 0u32;
    let result = retry("AcknowledgeJob", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        attempts += 1;
        client
            .acknowledge_job()
            .job_id(job_id)
            .nonce(nonce)
            .customize()
            .config_override(
                aws_sdk_codepipeline::config::Config::builder()
                    .retry_config(aws_sdk_codepipeline::config::retry::RetryConfig::disabled()),
            )
            .send()
    })
    .await;
    match result {
        Ok(out) => Ok(out.status() == Some(&JobStatus::InProgress)),
        Err(e)
            if e.as_service_error().is_some_and(|s| s.is_invalid_nonce_exception())
                && (attempts > 1 || already_ours) =>
        {
            tracing::info!(job_id, "the job's acknowledgement was applied before its answer was lost");
            Ok(true)
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_nonce_exception() || s.is_job_not_found_exception()) =>
        {
            tracing::warn!(job_id, error = %ErrorInfo::from_sdk(&e), "the job was not ours to acknowledge");
            Ok(false)
        }
        Err(e) => Err(PollError {
            action: "acknowledge a job",
            provider: provider.to_owned(),
            error: ErrorInfo::from_sdk(&e),
        }),
    }
}
