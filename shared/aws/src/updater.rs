//! What both updaters do around a deployment: read the request, keep time to answer, turn every
//! error into a failed outcome of the right failure type, and say what happened in the logs.

use crate::Deadline;
use crossdeploy_protocol::{FailureType, Outcome, Stands, UpdaterRequest};
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// An updater's error: it knows its CodePipeline failure type, and what the target serves when
/// the deployment had changed it before it failed.
pub trait UpdaterFailure: Display {
    fn failure_type(&self) -> FailureType;

    /// `None`: the deployment changed nothing on the target (or it was all put back and said so).
    fn stands(&self) -> Option<Stands> {
        None
    }
}

/// Handles one updater invocation (the Lambda event, as JSON) and always answers with an
/// [`Outcome`]: `work` gets the request (a deploy or a rollback) and a deadline: `margin` before
/// the invocation's, or the request's own deadline if that comes first (the worker or the
/// rollback function answers for the work after it, so nothing may change the target later).
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
    let (action, asked) = match &request {
        UpdaterRequest::Deploy(r) => ("deploy", r.deadline_ms),
        UpdaterRequest::Rollback(r) => ("rollback", r.deadline_ms),
    };
    let deadline = deadline.less(margin).min_epoch_millis(asked);
    let outcome = match work(request, deadline).await {
        Ok(o) => o,
        Err(e) => Outcome::Failed { failure_type: e.failure_type(), message: e.to_string(), stands: e.stands() },
    };
    match &outcome {
        Outcome::Succeeded { summary, .. } => tracing::info!(%request_id, action, %summary, "succeeded"),
        Outcome::InProgress { summary, .. } => tracing::info!(%request_id, action, %summary, "in progress"),
        Outcome::Failed { failure_type, message, stands } => {
            let serving = stands.as_ref().map(|s| s.serving.as_str()).unwrap_or("unchanged");
            tracing::error!(%request_id, action, failure_type = failure_type.as_str(), %message, serving, "failed")
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdeploy_protocol::{LambdaRollback, RollbackRequest, RollbackSpec, Target};

    #[derive(Debug)]
    struct Never;
    impl std::fmt::Display for Never {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("never")
        }
    }
    impl UpdaterFailure for Never {
        fn failure_type(&self) -> FailureType {
            FailureType::JobFailed
        }
    }

    fn rollback(deadline_ms: Option<u64>) -> serde_json::Value {
        serde_json::to_value(UpdaterRequest::Rollback(Box::new(RollbackRequest {
            request_id: "rollback-1".into(),
            target: Target {
                role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".parse().unwrap(),
                region: None,
            },
            spec: RollbackSpec::Lambda(LambdaRollback {
                function_name: "f".into(),
                alias: "live".into(),
                restore_version: "1".into(),
                deployed_version: "2".into(),
            }),
            reason: "test".into(),
            deadline_ms,
            deployment_id: None,
        })))
        .unwrap()
    }

    #[tokio::test]
    async fn the_work_gets_the_earlier_of_the_updaters_deadline_and_the_one_the_request_carries() {
        let own = Deadline::after(Duration::from_secs(300));
        let asked = crate::now_epoch_millis() + 20_000;
        let seen = std::sync::Mutex::new(None);
        handle_updater_request(rollback(Some(asked)), own, Duration::from_secs(10), |_, d| {
            *seen.lock().unwrap() = Some(d.remaining());
            async { Err::<Outcome, Never>(Never) }
        })
        .await;
        let left = seen.lock().unwrap().unwrap();
        assert!(left <= Duration::from_secs(20) && left > Duration::from_secs(19), "{left:?}");
        // Without a deadline in the request, the updater's own (less its margin) applies.
        handle_updater_request(rollback(None), own, Duration::from_secs(10), |_, d| {
            *seen.lock().unwrap() = Some(d.remaining());
            async { Err::<Outcome, Never>(Never) }
        })
        .await;
        let left = seen.lock().unwrap().unwrap();
        assert!(left <= Duration::from_secs(290) && left > Duration::from_secs(289), "{left:?}");
    }
}
