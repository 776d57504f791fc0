use aws_config::SdkConfig;
use crossdeploy_aws::Deadline;
use crossdeploy_credentials::{AllowList, TargetSessions};
use crossdeploy_ledger::{Ledger, Origin};
use crossdeploy_protocol::{Outcome, UpdaterRequest};
use pipeline_job_worker::{Invoke, InvokeError, Updaters};
use std::time::Duration;

/// The updaters run in this process: the worker's request and the updater's outcome still go
/// through JSON, as over Lambda Invoke.
pub struct InProcessUpdater {
    pub lambda: lambda_alias_updater::Deps,
    pub ecs: ecs_taskdef_updater::Deps,
    pub budget: Duration,
}

/// The updaters' function names, as the worker is configured with them.
pub const LAMBDA_UPDATER: &str = "lambda-alias-updater";
pub const ECS_UPDATER: &str = "ecs-taskdef-updater";

impl InProcessUpdater {
    /// Both updaters acting with `shared`'s credentials (the shared services account), each
    /// with its own session cache, as two functions would have.
    /// `ledger_table`: where they check that a request comes from the worker or deploy-rollback.
    pub fn new(shared: &SdkConfig, allowed_roles: &str, external_id: &str, ledger_table: &str) -> Self {
        let sessions = || {
            TargetSessions::new(
                aws_sdk_sts::Client::new(shared),
                shared.clone(),
                AllowList::parse(allowed_roles),
                Some(external_id.to_owned()),
            )
        };
        let origin = || {
            let ledger = Ledger::new(aws_sdk_dynamodb::Client::new(shared), ledger_table);
            Origin::new(Some(ledger), shared.region().map(|r| r.to_string()).unwrap_or_default())
        };
        Self {
            lambda: lambda_alias_updater::Deps {
                s3: aws_sdk_s3::Client::new(shared),
                sessions: sessions(),
                origin: origin(),
            },
            ecs: ecs_taskdef_updater::Deps {
                s3: aws_sdk_s3::Client::new(shared),
                sessions: sessions(),
                origin: origin(),
            },
            budget: Duration::from_secs(120),
        }
    }

    pub fn updaters() -> Updaters {
        Updaters { lambda: Some(LAMBDA_UPDATER.to_owned()), ecs: Some(ECS_UPDATER.to_owned()) }
    }
}

impl Invoke for InProcessUpdater {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        let bad = |problem: String| InvokeError::BadAnswer { function: function.to_owned(), problem };
        let event = serde_json::to_value(request).map_err(|e| bad(e.to_string()))?;
        let deadline = Deadline::after(self.budget);
        let outcome = match function {
            LAMBDA_UPDATER => lambda_alias_updater::handle(event, &self.lambda, deadline).await,
            ECS_UPDATER => ecs_taskdef_updater::handle(event, &self.ecs, deadline).await,
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
