//! pipeline-job-worker: turns every CodePipeline job into one typed deploy request, has the right
//! updater run it (Lambda Invoke), and answers the job exactly once: success with output
//! variables, success with a continuation token while the work goes on, or failure with the
//! failure type — also when the updater errors, panics or runs out of time.
//!
//! Jobs come from an Invoke action's event, or from PollForJobs for crossdeploy's custom actions
//! (triggered by the action's STARTED event and by a schedule). After parsing, both take the same
//! path: claimed once in the ledger, one deployment per target at a time (a lease), every
//! deployment recorded, continuation state kept in the ledger.

mod event;
mod poll;
mod process;

pub use crossdeploy_aws::invoke::{Invoke, InvokeError, Updaters, ECS_UPDATER_ENV, LAMBDA_UPDATER_ENV};
pub use event::{classify, Trigger};
pub use poll::{poll_and_process, PollReport};
pub use process::{handle_event, handle_invoke_event, handle_job, HandledJob, WorkerError};

use aws_config::SdkConfig;
use crossdeploy_ledger::{Ledger, LEDGER_TABLE_ENV};
use std::time::Duration;

/// Time kept back from the invocation's deadline to answer the job.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(5);
/// The budget when the runtime gives no usable deadline.
pub const FALLBACK_BUDGET: Duration = Duration::from_secs(300);

/// How the worker paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The region targets default to: the one the functions run in.
    pub region: String,
    /// How long a target's lease lasts unless renewed (each continuation renews it).
    pub lease_ttl: Duration,
    /// How long a deployment waits for another one on the same target before it fails.
    pub lease_wait: Duration,
    /// Jobs processed at once by one run.
    pub concurrency: usize,
    /// Jobs taken per PollForJobs call.
    pub batch_size: i32,
}

impl Settings {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            lease_ttl: Duration::from_secs(60 * 60),
            lease_wait: Duration::from_secs(30 * 60),
            concurrency: 4,
            batch_size: 10,
        }
    }
}

/// Clients and settings built once per cold start.
pub struct Worker<I> {
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub invoker: I,
    pub updaters: Updaters,
    pub ledger: Ledger,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
#[error("{LEDGER_TABLE_ENV} is not set: the worker needs its ledger table")]
pub struct NoLedgerTable;

impl Worker<aws_sdk_lambda::Client> {
    pub fn from_config(config: &SdkConfig) -> Result<Self, NoLedgerTable> {
        let table = std::env::var(LEDGER_TABLE_ENV).ok().filter(|t| !t.is_empty()).ok_or(NoLedgerTable)?;
        Ok(Self {
            codepipeline: aws_sdk_codepipeline::Client::new(config),
            invoker: aws_sdk_lambda::Client::new(config),
            updaters: Updaters::from_env(),
            ledger: Ledger::new(aws_sdk_dynamodb::Client::new(config), table),
            settings: Settings::new(config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_owned())),
        })
    }
}
