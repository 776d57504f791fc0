//! pipeline-job-worker: turns every CodePipeline job into one typed deploy request, has the right
//! updater run it (Lambda Invoke), and answers the job exactly once: success with output
//! variables, success with a continuation token while the work goes on, or failure with the
//! failure type — also when the updater errors, panics or runs out of time.

mod invoke;
mod process;

pub use invoke::{Invoke, InvokeError};
pub use process::{handle_invoke_event, process_job, HandledJob, WorkerError};

use aws_config::SdkConfig;
use std::time::Duration;

/// Function name of the Lambda updater.
pub const LAMBDA_UPDATER_ENV: &str = "CROSSDEPLOY_LAMBDA_UPDATER";
/// Function name of the ECS updater.
pub const ECS_UPDATER_ENV: &str = "CROSSDEPLOY_ECS_UPDATER";
/// Time kept back from the invocation's deadline to answer the job.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(5);
/// The budget when the runtime gives no usable deadline.
pub const FALLBACK_BUDGET: Duration = Duration::from_secs(300);

/// The updaters' function names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Updaters {
    pub lambda: Option<String>,
    pub ecs: Option<String>,
}

impl Updaters {
    pub fn from_env() -> Self {
        let var = |k| {
            std::env::var(k)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        Self {
            lambda: var(LAMBDA_UPDATER_ENV),
            ecs: var(ECS_UPDATER_ENV),
        }
    }
}

/// Clients and settings built once per cold start.
pub struct Worker<I> {
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub invoker: I,
    pub updaters: Updaters,
}

impl Worker<aws_sdk_lambda::Client> {
    pub fn from_config(config: &SdkConfig) -> Self {
        Self {
            codepipeline: aws_sdk_codepipeline::Client::new(config),
            invoker: aws_sdk_lambda::Client::new(config),
            updaters: Updaters::from_env(),
        }
    }
}
