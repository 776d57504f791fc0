use crossdeploy_aws::Deadline;
use crossdeploy_protocol::{Outcome, UpdaterRequest};
use pipeline_job_worker::{Invoke, InvokeError};
use std::time::Duration;

/// The updaters run in this process: the worker's request and the updater's outcome still go
/// through JSON, as over Lambda Invoke.
pub struct InProcessUpdater {
    pub lambda: lambda_alias_updater::Deps,
    pub budget: Duration,
}

impl Invoke for InProcessUpdater {
    async fn invoke(
        &self,
        function: &str,
        request: &UpdaterRequest,
    ) -> Result<Outcome, InvokeError> {
        let bad = |problem: String| InvokeError::BadAnswer {
            function: function.to_owned(),
            problem,
        };
        let event = serde_json::to_value(request).map_err(|e| bad(e.to_string()))?;
        let outcome = match function {
            "lambda-alias-updater" => {
                lambda_alias_updater::handle(event, &self.lambda, Deadline::after(self.budget))
                    .await
            }
            other => {
                return Err(InvokeError::Call {
                    function: other.to_owned(),
                    error: crossdeploy_aws::ErrorInfo {
                        code: Some("ResourceNotFoundException".into()),
                        message: format!("Function not found: {other}"),
                    },
                })
            }
        };
        let json = serde_json::to_vec(&outcome).map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))
    }
}
