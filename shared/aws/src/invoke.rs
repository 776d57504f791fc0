//! Reaching an updater: Lambda Invoke (RequestResponse) with an [`UpdaterRequest`], answered by an [`Outcome`].

use crate::{Deadline, ErrorInfo};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use crossdeploy_protocol::{Outcome, UpdaterRequest};
use std::future::Future;
use std::time::Duration;

/// How long after a request's deadline an updater's answer may still be on its way.
pub const INVOKE_SLACK: Duration = Duration::from_secs(3);
/// How far the clocks of two Lambda functions may disagree, and how long AWS may take to apply a
/// call cut at the deadline: an updater that may still be acting is assumed to have stopped
/// only this long after its deadline.
pub const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// Function name of the Lambda updater.
pub const LAMBDA_UPDATER_ENV: &str = "CROSSDEPLOY_LAMBDA_UPDATER";
/// Function name of the ECS updater.
pub const ECS_UPDATER_ENV: &str = "CROSSDEPLOY_ECS_UPDATER";

/// The updaters' function names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Updaters {
    pub lambda: Option<String>,
    pub ecs: Option<String>,
}

impl Updaters {
    pub fn from_env() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.trim().is_empty());
        Self { lambda: var(LAMBDA_UPDATER_ENV), ecs: var(ECS_UPDATER_ENV) }
    }
}

/// How the worker and the rollback function reach an updater. In production, Lambda Invoke ([`aws_sdk_lambda::Client`]).
pub trait Invoke: Send + Sync + 'static {
    fn invoke(
        &self,
        function: &str,
        request: &UpdaterRequest,
    ) -> impl Future<Output = Result<Outcome, InvokeError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("failed to invoke the updater {function}: {error}")]
    Call { function: String, error: ErrorInfo },
    #[error("the updater {function} failed: {error_type}: {message}")]
    Function { function: String, error_type: String, message: String },
    #[error("the updater {function} answered something that is not an outcome: {problem}")]
    BadAnswer { function: String, problem: String },
}

impl InvokeError {
    /// Lambda refused the invocation before running the function (throttled, function not
    /// ready): nothing ran, so trying again is safe at once.
    pub fn not_run(&self) -> bool {
        match self {
            InvokeError::Call { error, .. } => {
                error.is_throttling() || error.code.as_deref() == Some("ResourceNotReadyException")
            }
            _ => false,
        }
    }
}

/// What became of one invocation of an updater.
#[derive(Debug)]
pub enum Invoked {
    /// The updater answered.
    Answered(Outcome),
    /// Lambda did not run it (throttled): nothing happened.
    NotRun(InvokeError),
    /// The updater ran and ended without an outcome (it crashed, or answered garbage): it is
    /// not acting any more; what it did is for a fresh run to find.
    Ended(InvokeError),
    /// No answer came (a broken connection, a 5xx, a timeout): it may have run, and may still
    /// be running. Returned only once its deadline has passed, so it has stopped changing the
    /// target; what it did is for a fresh run to find.
    Unknown(InvokeError),
}

/// Invokes `function` with `request`, whose deadline (`deadline`) the caller has written into
/// it. The SDK does not retry an Invoke (a retry could run the updater twice at once); when the
/// answer is lost, this waits until the updater's deadline (and [`CLOCK_SKEW`]) has passed, so
/// that whatever the caller does next, no updater is still acting for it.
pub async fn invoke_until<I: Invoke>(
    invoker: &I,
    function: &str,
    request: &UpdaterRequest,
    deadline: Deadline,
) -> Invoked {
    let bound = deadline.instant() + INVOKE_SLACK;
    match tokio::time::timeout_at(bound, invoker.invoke(function, request)).await {
        Ok(Ok(outcome)) => Invoked::Answered(outcome),
        Ok(Err(e)) if e.not_run() => Invoked::NotRun(e),
        Ok(Err(e @ (InvokeError::Function { .. } | InvokeError::BadAnswer { .. }))) => Invoked::Ended(e),
        Ok(Err(e)) => {
            tracing::warn!(function, error = %e, "the updater's answer was lost; waiting until its deadline has passed");
            tokio::time::sleep_until(deadline.instant() + CLOCK_SKEW).await;
            Invoked::Unknown(e)
        }
        Err(_) => Invoked::Unknown(InvokeError::Call {
            function: function.to_owned(),
            error: ErrorInfo {
                code: None,
                message: format!("no answer within {} s of the updater's deadline", INVOKE_SLACK.as_secs()),
            },
        }),
    }
}

impl Invoke for aws_sdk_lambda::Client {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        let payload = serde_json::to_vec(request).map_err(|e| InvokeError::BadAnswer {
            function: function.to_owned(),
            problem: format!("the request could not be written: {e}"),
        })?;
        // One attempt, no SDK timeout: the caller bounds the call by the updater's deadline
        // and decides what a lost answer means (see `invoke_until`).
        let once = aws_sdk_lambda::config::Config::builder()
            .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_lambda::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .disable_operation_timeout()
                    .disable_operation_attempt_timeout()
                    .disable_read_timeout()
                    .build(),
            );
        let out = self
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .customize()
            .config_override(once)
            .send()
            .await
            .map_err(|e| InvokeError::Call { function: function.to_owned(), error: ErrorInfo::from_sdk(&e) })?;
        let body = out.payload.map(Blob::into_inner).unwrap_or_default();
        if let Some(kind) = out.function_error {
            // The runtime's error document: {"errorType": ..., "errorMessage": ...}.
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(InvokeError::Function {
                function: function.to_owned(),
                error_type: doc["errorType"].as_str().unwrap_or(&kind).to_owned(),
                message: doc["errorMessage"].as_str().unwrap_or("no message").to_owned(),
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| InvokeError::BadAnswer { function: function.to_owned(), problem: e.to_string() })
    }
}

/// A shared invoker invokes as the one it shares.
impl<T: Invoke> Invoke for std::sync::Arc<T> {
    fn invoke(
        &self,
        function: &str,
        request: &UpdaterRequest,
    ) -> impl Future<Output = Result<Outcome, InvokeError>> + Send {
        (**self).invoke(function, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdeploy_protocol::{LambdaRollback, RollbackRequest, RollbackSpec, Target};

    fn request() -> UpdaterRequest {
        UpdaterRequest::Rollback(Box::new(RollbackRequest {
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
            deadline_ms: None,
            deployment_id: None,
        }))
    }

    struct Lost;
    impl Invoke for Lost {
        async fn invoke(&self, function: &str, _: &UpdaterRequest) -> Result<Outcome, InvokeError> {
            Err(InvokeError::Call {
                function: function.to_owned(),
                error: ErrorInfo { code: None, message: "connection reset by peer".into() },
            })
        }
    }

    struct Throttled;
    impl Invoke for Throttled {
        async fn invoke(&self, function: &str, _: &UpdaterRequest) -> Result<Outcome, InvokeError> {
            Err(InvokeError::Call {
                function: function.to_owned(),
                error: ErrorInfo { code: Some("TooManyRequestsException".into()), message: "Rate exceeded".into() },
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_is_waited_out_to_the_updaters_deadline_before_anyone_goes_on() {
        let deadline = Deadline::after(Duration::from_secs(40));
        let started = tokio::time::Instant::now();
        let invoked = invoke_until(&Lost, "u", &request(), deadline).await;
        assert!(matches!(invoked, Invoked::Unknown(_)), "{invoked:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(40) + CLOCK_SKEW, "the updater may act until its deadline");
        // Throttled: Lambda did not run it; nothing to wait for.
        let started = tokio::time::Instant::now();
        assert!(matches!(invoke_until(&Throttled, "u", &request(), deadline).await, Invoked::NotRun(_)));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn the_sdk_never_retries_an_invoke_of_an_updater() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let unavailable = mock!(aws_sdk_lambda::Client::invoke).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(503).unwrap(),
                aws_smithy_types::body::SdkBody::from(r#"{"Type":"Service","message":"Service unavailable"}"#),
            )
        });
        let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&unavailable], |c| c
            .retry_config(aws_sdk_lambda::config::retry::RetryConfig::standard().with_max_attempts(5)));
        let e = Invoke::invoke(&lambda, "u", &request()).await.unwrap_err();
        assert!(matches!(e, InvokeError::Call { .. }), "{e}");
        assert_eq!(unavailable.num_calls(), 1, "a retry could run the updater twice at once");
    }
}
