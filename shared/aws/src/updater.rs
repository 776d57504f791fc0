//! What both updaters do around a deployment: read the request, keep time to answer, turn every
//! error into a failed outcome of the right failure type, and say what happened in the logs.

use crate::Deadline;
use crossdeploy_protocol::{FailureType, Outcome, UpdaterRequest};
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// An updater's error: it knows its CodePipeline failure type.
pub trait UpdaterFailure: Display {
    fn failure_type(&self) -> FailureType;
}

/// Handles one updater invocation (the Lambda event, as JSON) and always answers with an
/// [`Outcome`]: `work` gets the request (a deploy or a rollback) and a deadline `margin` before
/// the invocation's.
pub async fn handle_updater_request<E, F, Fut>(
    event: serde_json::Value,
    deadline: Deadline,
    margin: Duration,
    work: F,
) -> Outcome
where
    E: UpdaterFailure,
    F: FnOnce(UpdaterRequest, Deadline) -> Fut,
    Fut: Future<Output = Result<Outcome, E>>,
{
    let request: UpdaterRequest = match serde_json::from_value(event) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("the updater could not read its request: {e}");
            tracing::error!(%message, "refused a request");
            return Outcome::failed(FailureType::JobFailed, message);
        }
    };
    let request_id = request.request_id().to_owned();
    let action = match &request {
        UpdaterRequest::Deploy(_) => "deploy",
        UpdaterRequest::Rollback(_) => "rollback",
    };
    let outcome = match work(request, deadline.less(margin)).await {
        Ok(o) => o,
        Err(e) => Outcome::failed(e.failure_type(), e.to_string()),
    };
    match &outcome {
        Outcome::Succeeded { summary, .. } => tracing::info!(%request_id, action, %summary, "succeeded"),
        Outcome::InProgress { summary, .. } => tracing::info!(%request_id, action, %summary, "in progress"),
        Outcome::Failed { failure_type, message } => {
            tracing::error!(%request_id, action, failure_type = failure_type.as_str(), %message, "failed")
        }
    }
    outcome
}
