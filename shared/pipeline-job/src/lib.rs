//! One CodePipeline job, whichever way it arrives, its typed configuration, and the one answer it gets.
//!
//! - [`Job`]: from the `CodePipeline.job` event of an Invoke action ([`Job::from_invoke_event`]);
//!   the custom-action path (PollForJobs) produces the same type.
//! - [`DeployConfig`]: the configuration contract of DESIGN.md, parsed with errors that name the key.
//! - [`answer_job`]: `PutJobSuccessResult` / `PutJobFailureResult`, and [`fetch_pipeline_context`].

pub mod actions;
mod config;
mod job;
/// The deploy policy lives with the protocol, which deploy-rollback shares (its direct requests).
pub use crossdeploy_protocol::policy;
mod poll;
mod report;

pub use config::{
    check_durations, job_configuration, parse_configuration, parse_user_parameters, ActionLimit, ConfigError,
    DeployConfig, Kind, CUSTOM_ACTION_LIMIT, DEPLOYMENT_RESERVE_MINUTES, INVOKE_ACTION_LIMIT,
};
pub use job::{InputArtifact, Job, JobError, JobSource};
pub use poll::{acknowledge_job, poll_for_jobs, PollError};
pub use report::{
    answer_job, fetch_pipeline_context, job_details, Answered, JobAnswer, ReportError, Success, MAX_CONTINUATION_TOKEN,
};
