//! Reaching an updater: Lambda Invoke (RequestResponse) with an [`UpdaterRequest`], answered by an [`Outcome`].

use crate::ErrorInfo;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use crossdeploy_protocol::{Outcome, UpdaterRequest};
use std::future::Future;

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

impl Invoke for aws_sdk_lambda::Client {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        let payload = serde_json::to_vec(request).map_err(|e| InvokeError::BadAnswer {
            function: function.to_owned(),
            problem: format!("the request could not be written: {e}"),
        })?;
        let out = self
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
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
