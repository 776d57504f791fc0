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
pub use poll::{poll_and_process, time_for_a_job as poll_time_for_a_job, PollReport};
pub use process::{handle_event, handle_invoke_event, handle_job, HandledJob, WorkerError, MIN_SLICE};

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
    /// How long a deployment waits for another one on the same target before it fails.
    pub lease_wait: Duration,
    /// How long past a run's deadline its target's lease holds: a run that dies (killed, out of
    /// memory) frees its target this soon after its deadline.
    pub lease_grace: Duration,
    /// How long a target's lease holds between a continuation answer and the deployment's next
    /// job (CodePipeline sends it at once for an Invoke action; the one-minute schedule polls it
    /// for a custom action).
    pub continuation_gap: Duration,
    /// The longest one updater invocation works before it hands back its state. A lost answer
    /// costs at most this long: the worker waits it out before it runs the updater again.
    pub updater_slice: Duration,
    /// The least time left before the worker's deadline to start an updater invocation.
    pub min_slice: Duration,
    /// Jobs processed at once by one run (and polled at most, per run): `CROSSDEPLOY_JOBS_PER_RUN`.
    pub concurrency: usize,
    /// Who may deploy where (`CROSSDEPLOY_DEPLOY_POLICY`).
    pub policy: Policy,
    /// Jobs come from the crossdeploy command line, not CodePipeline: answers are recorded in
    /// the ledger (where the command line reads them) and never sent.
    pub local: bool,
}

/// The deploy policy the worker enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Policy {
    /// None configured: the allow-list alone decides.
    #[default]
    None,
    Enforced(std::sync::Arc<crossdeploy_pipeline_job::policy::DeployPolicy>),
    /// Configured but unreadable: every job is refused, saying why.
    Broken(crossdeploy_pipeline_job::policy::PolicyError),
}

impl Settings {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            lease_wait: Duration::from_secs(30 * 60),
            lease_grace: Duration::from_secs(60),
            continuation_gap: Duration::from_secs(10 * 60),
            updater_slice: Duration::from_secs(60),
            min_slice: MIN_SLICE,
            concurrency: 4,
            policy: Policy::None,
            local: false,
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

/// How long one updater invocation may work at most, in seconds (default 60, 30 to 600).
pub const UPDATER_SLICE_ENV: &str = "CROSSDEPLOY_UPDATER_SLICE_SECONDS";
/// How many custom-action jobs one run polls and works on at once, at most (default 4, 1 to 100).
pub const JOBS_PER_RUN_ENV: &str = "CROSSDEPLOY_JOBS_PER_RUN";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{LEDGER_TABLE_ENV} is not set: the worker needs its ledger table")]
    Missing,
    #[error("{UPDATER_SLICE_ENV} is {0:?}: give a whole number of seconds from 30 to 600")]
    BadSlice(String),
    #[error("{JOBS_PER_RUN_ENV} is {0:?}: give a whole number of jobs from 1 to 100")]
    BadJobsPerRun(String),
}

impl Worker<aws_sdk_lambda::Client> {
    pub fn from_config(config: &SdkConfig) -> Result<Self, ConfigError> {
        let table = std::env::var(LEDGER_TABLE_ENV).ok().filter(|t| !t.is_empty()).ok_or(ConfigError::Missing)?;
        let mut settings =
            Settings::new(config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_owned()));
        if let Some(v) = std::env::var(UPDATER_SLICE_ENV).ok().filter(|v| !v.trim().is_empty()) {
            let secs = v.trim().parse::<u64>().ok().filter(|s| (30..=600).contains(s));
            settings.updater_slice = Duration::from_secs(secs.ok_or_else(|| ConfigError::BadSlice(v.clone()))?);
        }
        if let Some(v) = std::env::var(JOBS_PER_RUN_ENV).ok().filter(|v| !v.trim().is_empty()) {
            let jobs = v.trim().parse::<usize>().ok().filter(|j| (1..=100).contains(j));
            settings.concurrency = jobs.ok_or_else(|| ConfigError::BadJobsPerRun(v.clone()))?;
        }
        // An unreadable policy does not stop the worker: every job is answered, refused, saying why.
        settings.policy = match crossdeploy_pipeline_job::policy::DeployPolicy::from_env() {
            Ok(None) => Policy::None,
            Ok(Some(policy)) => Policy::Enforced(std::sync::Arc::new(policy)),
            Err(e) => {
                tracing::error!(error = %e, "the deploy policy cannot be read; every job will be refused");
                Policy::Broken(e)
            }
        };
        Ok(Self {
            codepipeline: aws_sdk_codepipeline::Client::new(config),
            // Invoke calls are sent once: see `crossdeploy_aws::invoke::invoke_until`.
            invoker: aws_sdk_lambda::Client::new(config),
            updaters: Updaters::from_env(),
            ledger: Ledger::new(aws_sdk_dynamodb::Client::new(config), table),
            settings,
        })
    }
}
