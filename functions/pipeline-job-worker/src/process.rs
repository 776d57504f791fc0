use crate::{Invoke, Worker, ANSWER_MARGIN};
use crossdeploy_aws::Deadline;
use crossdeploy_pipeline_job::{
    answer_job, fetch_pipeline_context, parse_user_parameters, Answered, Job, JobAnswer, JobError,
    ReportError, Success, MAX_CONTINUATION_TOKEN,
};
use crossdeploy_protocol::{DeployRequest, DeploySpec, FailureType, Outcome, UpdaterRequest};
use serde::Serialize;
use std::sync::Arc;

/// What the worker did with one event (the Lambda's own return value; CodePipeline ignores it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandledJob {
    pub job_id: String,
    /// "Succeeded", "InProgress" (continuation), or the failure type.
    pub answer: String,
    /// The job had an answer already; nothing was sent.
    pub already_answered: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    NotAJob(JobError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Handles the `CodePipeline.job` event of an Invoke action: the job gets exactly one answer,
/// whatever happens while it is processed (an error, a panic, the deadline).
pub async fn handle_invoke_event<I: Invoke>(
    event: serde_json::Value,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
) -> Result<HandledJob, WorkerError> {
    let job = match Job::from_invoke_event(&event) {
        Ok(job) => job,
        Err(JobError::Malformed { job_id, problem }) => {
            tracing::error!(job_id, %problem, "malformed job");
            let answer = JobAnswer::Failure {
                failure_type: FailureType::JobFailed,
                message: format!("crossdeploy could not read CodePipeline job {job_id}: {problem}"),
                external_execution_id: Some(job_id.clone()),
            };
            return send(&worker, &job_id, &answer).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "ignored an event that is not a CodePipeline job");
            return Err(WorkerError::NotAJob(e));
        }
    };
    drop(event); // it holds the artifact credentials: keep it no longer than needed
    tracing::info!(job_id = %job.id, continuation = job.continuation_token.is_some(), "job received");
    let answer = run_guarded(job.clone(), worker.clone(), deadline).await;
    send(&worker, &job.id, &answer).await
}

/// Runs [`process_job`] in its own task, so that a panic or the deadline still yields an answer.
async fn run_guarded<I: Invoke>(job: Job, worker: Arc<Worker<I>>, deadline: Deadline) -> JobAnswer {
    let work_deadline = deadline.less(ANSWER_MARGIN);
    let job_id = job.id.clone();
    let task = tokio::spawn(async move { process_job(&job, &worker, work_deadline).await });
    let abort = task.abort_handle();
    match tokio::time::timeout_at(work_deadline.instant(), task).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(join)) if join.is_panic() => {
            tracing::error!(job_id, "processing the job panicked");
            failure(FailureType::JobFailed, &job_id, "crossdeploy's worker hit an internal error (a panic) while processing this job; the deployment's state is unknown: check the target before retrying, and report the worker's logs".to_owned())
        }
        Ok(Err(_)) => failure(
            FailureType::JobFailed,
            &job_id,
            "the worker's processing of this job was cancelled".to_owned(),
        ),
        Err(_) => {
            abort.abort();
            tracing::error!(job_id, "ran out of time");
            failure(FailureType::JobFailed, &job_id, "crossdeploy's worker ran out of time before the updater answered; the deployment may still be going on: check the target, then retry the action (raise the worker's timeout if this repeats)".to_owned())
        }
    }
}

async fn send<I: Invoke>(
    worker: &Worker<I>,
    job_id: &str,
    answer: &JobAnswer,
) -> Result<HandledJob, WorkerError> {
    let answered = answer_job(&worker.codepipeline, job_id, answer).await?;
    let label = match answer {
        JobAnswer::Success(s) if s.continuation_token.is_some() => "InProgress".to_owned(),
        JobAnswer::Success(_) => "Succeeded".to_owned(),
        JobAnswer::Failure { failure_type, .. } => failure_type.as_str().to_owned(),
    };
    tracing::info!(job_id, answer = %label, already = answered == Answered::Already, "job answered");
    Ok(HandledJob {
        job_id: job_id.to_owned(),
        answer: label,
        already_answered: answered == Answered::Already,
    })
}

fn failure(failure_type: FailureType, job_id: &str, message: String) -> JobAnswer {
    JobAnswer::Failure {
        failure_type,
        message,
        external_execution_id: Some(job_id.to_owned()),
    }
}

/// Works out the answer to one job: configuration, request, the updater's outcome.
/// Sends nothing to CodePipeline: the caller answers, once.
pub async fn process_job<I: Invoke>(
    job: &Job,
    worker: &Worker<I>,
    deadline: Deadline,
) -> JobAnswer {
    let mut pipeline = job.pipeline.clone();
    if pipeline.pipeline_name.is_none() {
        match fetch_pipeline_context(&worker.codepipeline, &job.id).await {
            Ok(ctx) => pipeline = ctx,
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "GetJobDetails failed; naming the run by its job id")
            }
        }
    }
    let config =
        match parse_user_parameters(job.configuration.get("UserParameters").map(String::as_str)) {
            Ok(c) => c,
            Err(e) => return failure(FailureType::ConfigurationError, &job.id, e.to_string()),
        };
    let Some(artifact) = job.input_artifacts.first() else {
        return failure(
            FailureType::ConfigurationError,
            &job.id,
            "the action has no input artifact; give it the build output that holds the package"
                .to_owned(),
        );
    };
    let (kind, function) = match &config.spec {
        DeploySpec::Lambda(_) => ("Lambda", &worker.updaters.lambda),
        DeploySpec::Ecs(_) => ("Ecs", &worker.updaters.ecs),
    };
    let Some(function) = function else {
        return failure(
            FailureType::JobFailed,
            &job.id,
            format!(
                "crossdeploy's worker has no updater for Kind {kind}: set {} on the worker (a crossdeploy installation problem, not the pipeline's)",
                if kind == "Lambda" { crate::LAMBDA_UPDATER_ENV } else { crate::ECS_UPDATER_ENV }
            ),
        );
    };
    let resume = match &job.continuation_token {
        None => None,
        Some(token) => match serde_json::from_str(token) {
            Ok(state) => Some(state),
            Err(_) => {
                return failure(
                    FailureType::JobFailed,
                    &job.id,
                    "the job's continuation token is not one crossdeploy wrote; retry the action to start over".to_owned(),
                )
            }
        },
    };
    let request = UpdaterRequest::Deploy(DeployRequest {
        request_id: job.id.clone(),
        pipeline,
        target: config.target,
        artifact: artifact.location.clone(),
        spec: config.spec,
        alarm_names: config.alarm_names,
        resume,
    });
    tracing::info!(job_id = %job.id, updater = %function, "invoking the updater");
    // The updater's own timeout comes a second before the guard's in `run_guarded`, so that its
    // more precise message is the one given.
    let invoke_deadline = deadline.less(std::time::Duration::from_secs(1));
    let outcome = match tokio::time::timeout_at(invoke_deadline.instant(), worker.invoker.invoke(function, &request)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => return failure(FailureType::JobFailed, &job.id, e.to_string()),
        Err(_) => {
            return failure(
                FailureType::JobFailed,
                &job.id,
                format!("the updater {function} did not answer before the worker's deadline; the deployment may still be going on: check the target, then retry the action"),
            )
        }
    };
    answer_for(&job.id, outcome)
}

/// The CodePipeline answer for an updater's outcome.
fn answer_for(job_id: &str, outcome: Outcome) -> JobAnswer {
    match outcome {
        Outcome::Succeeded { summary, outputs } => JobAnswer::Success(Success {
            summary,
            external_execution_id: Some(job_id.to_owned()),
            percent_complete: Some(100),
            output_variables: outputs,
            continuation_token: None,
        }),
        Outcome::InProgress {
            summary,
            percent_complete,
            state,
        } => {
            let token = state.to_string();
            if token.len() > MAX_CONTINUATION_TOKEN {
                return failure(
                    FailureType::JobFailed,
                    job_id,
                    format!("the updater's state to continue from is {} characters, over CodePipeline's {MAX_CONTINUATION_TOKEN}; this is a crossdeploy bug, please report it", token.len()),
                );
            }
            JobAnswer::Success(Success {
                summary,
                external_execution_id: Some(job_id.to_owned()),
                percent_complete: Some(percent_complete.min(99)),
                output_variables: Default::default(),
                continuation_token: Some(token),
            })
        }
        Outcome::Failed {
            failure_type,
            message,
        } => failure(failure_type, job_id, message),
    }
}

impl WorkerError {
    /// A stable name for the runtime's error report (not the Rust type name).
    pub fn error_type(&self) -> &'static str {
        match self {
            WorkerError::NotAJob(_) => "crossdeploy.NotACodePipelineJob",
            WorkerError::Report(_) => "crossdeploy.AnswerFailed",
        }
    }
}

impl From<WorkerError> for lambda_runtime::Diagnostic {
    fn from(e: WorkerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}
