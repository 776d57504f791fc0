use crate::{classify, poll_and_process, Invoke, Trigger, Worker, ANSWER_MARGIN};
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{
    now_millis, now_secs, Claim, Continuation, DeploymentRecord, DeploymentStatus, Lease, LeaseHolder, Phase, TargetKey,
};
use crossdeploy_pipeline_job::{
    answer_job, fetch_pipeline_context, job_configuration, Answered, Job, JobAnswer, JobError, ReportError, Success,
    MAX_CONTINUATION_TOKEN,
};
use crossdeploy_protocol::{outputs, DeployRequest, DeploySpec, FailureType, Outcome, UpdaterRequest};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Continuation tokens are this prefix and the id of the job that wrote them: only a key into the ledger.
const TOKEN_PREFIX: &str = "crossdeploy:v1:";

/// What the worker did with one job (the Lambda's own return value; CodePipeline ignores it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandledJob {
    pub job_id: String,
    /// "Succeeded", "InProgress" (continuation), the failure type, or "ClaimedElsewhere".
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
    #[error(transparent)]
    Ledger(#[from] crossdeploy_ledger::LedgerError),
    #[error(transparent)]
    Poll(#[from] crossdeploy_pipeline_job::PollError),
}

impl WorkerError {
    /// A stable name for the runtime's error report (not the Rust type name).
    pub fn error_type(&self) -> &'static str {
        match self {
            WorkerError::NotAJob(_) => "crossdeploy.NotACodePipelineJob",
            WorkerError::Report(_) => "crossdeploy.AnswerFailed",
            WorkerError::Ledger(_) => "crossdeploy.LedgerFailed",
            WorkerError::Poll(_) => "crossdeploy.PollFailed",
        }
    }
}

impl From<WorkerError> for lambda_runtime::Diagnostic {
    fn from(e: WorkerError) -> Self {
        lambda_runtime::Diagnostic { error_type: e.error_type().to_owned(), error_message: e.to_string() }
    }
}

/// Handles whatever woke the worker: an Invoke action's job, a custom action's STARTED event,
/// or the schedule. `run_id` (the Lambda request id) names this run in the ledger.
pub async fn handle_event<I: Invoke>(
    event: serde_json::Value,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    run_id: &str,
) -> Result<Vec<HandledJob>, WorkerError> {
    match classify(&event) {
        Trigger::InvokeJob => Ok(handle_invoke_event(event, worker, deadline, run_id).await?.into_iter().collect()),
        Trigger::ActionStarted { provider } => {
            Ok(poll_and_process(worker, &[provider.as_str()], deadline, run_id).await?.handled)
        }
        Trigger::Schedule => {
            Ok(poll_and_process(worker, &crossdeploy_pipeline_job::actions::PROVIDERS, deadline, run_id).await?.handled)
        }
        Trigger::Ignored { why } => {
            tracing::info!(%why, "nothing to do for this event");
            Ok(Vec::new())
        }
    }
}

/// Handles the `CodePipeline.job` event of an Invoke action. `None`: another run has the job.
pub async fn handle_invoke_event<I: Invoke>(
    event: serde_json::Value,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    run_id: &str,
) -> Result<Option<HandledJob>, WorkerError> {
    let job = Job::from_invoke_event(&event);
    drop(event); // it holds the artifact credentials: keep it no longer than needed
    match job {
        Ok(job) => handle_job(job, worker, deadline, run_id).await,
        Err(JobError::Malformed { job_id, problem }) => {
            tracing::error!(job_id, %problem, "malformed job");
            if worker.ledger.claim_job(&job_id, run_id, deadline.remaining()).await? == Claim::Taken {
                return Ok(None);
            }
            let answer = failure(
                FailureType::JobFailed,
                &job_id,
                format!("crossdeploy could not read CodePipeline job {job_id}: {problem}"),
            );
            Ok(Some(send(&worker, &job_id, run_id, &answer).await?))
        }
        Err(e) => {
            tracing::error!(error = %e, "ignored an event that is not a CodePipeline job");
            Err(WorkerError::NotAJob(e))
        }
    }
}

/// One job, whichever way it came: claimed once, worked out under its target's lease, answered
/// exactly once. `None`: another run has the job (a second delivery or an overlapping run).
pub async fn handle_job<I: Invoke>(
    job: Job,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    run_id: &str,
) -> Result<Option<HandledJob>, WorkerError> {
    if worker.ledger.claim_job(&job.id, run_id, deadline.remaining() + ANSWER_MARGIN).await? == Claim::Taken {
        tracing::info!(job_id = %job.id, "claimed by another run; nothing to do");
        return Ok(None);
    }
    tracing::info!(job_id = %job.id, continuation = job.continuation_token.is_some(), "job claimed");
    let answer = match prepare(&job, &worker).await {
        Ok(prepared) => run_guarded(prepared, worker.clone(), deadline).await,
        Err(answer) => answer,
    };
    Ok(Some(send(&worker, &job.id, run_id, &answer).await?))
}

/// A job ready to run: its request, its target and the deployment it belongs to.
#[derive(Debug, Clone)]
struct Prepared {
    job_id: String,
    request: DeployRequest,
    updater: String,
    target: TargetKey,
    deployment_id: String,
    started_at: u64,
    /// Where the deployment stood when the previous job of it ended (`None`: a new deployment).
    phase: Option<Phase>,
}

/// Reads the job into a request: configuration, artifact, updater, and the continuation it carries.
async fn prepare<I: Invoke>(job: &Job, worker: &Worker<I>) -> Result<Prepared, JobAnswer> {
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
        job_configuration(job).map_err(|e| failure(FailureType::ConfigurationError, &job.id, e.to_string()))?;
    let artifact = job.input_artifacts.first().ok_or_else(|| {
        failure(
            FailureType::ConfigurationError,
            &job.id,
            "the action has no input artifact; give it the build output that holds the package".to_owned(),
        )
    })?;
    let (kind, updater) = match &config.spec {
        DeploySpec::Lambda(_) => ("Lambda", &worker.updaters.lambda),
        DeploySpec::Ecs(_) => ("Ecs", &worker.updaters.ecs),
    };
    let updater = updater.clone().ok_or_else(|| {
        let var = if kind == "Lambda" { crate::LAMBDA_UPDATER_ENV } else { crate::ECS_UPDATER_ENV };
        failure(FailureType::JobFailed, &job.id, format!("crossdeploy's worker has no updater for Kind {kind}: set {var} on the worker (a crossdeploy installation problem, not the pipeline's)"))
    })?;
    let continuation = match &job.continuation_token {
        None => None,
        Some(token) => {
            let key = token.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
                failure(
                    FailureType::JobFailed,
                    &job.id,
                    "the job's continuation token is not one crossdeploy wrote; retry the action to start over"
                        .to_owned(),
                )
            })?;
            let loaded = worker
                .ledger
                .load_continuation(key)
                .await
                .map_err(|e| failure(FailureType::JobFailed, &job.id, e.to_string()))?;
            Some(loaded.ok_or_else(|| {
                failure(
                    FailureType::JobFailed,
                    &job.id,
                    format!(
                        "the continuation state {token} is not in the ledger {}; retry the action to start over",
                        worker.ledger.table()
                    ),
                )
            })?)
        }
    };
    let mut request = DeployRequest {
        request_id: job.id.clone(),
        pipeline,
        target: config.target,
        artifact: artifact.location.clone(),
        spec: config.spec,
        alarm_names: config.alarm_names,
        resume: None,
    };
    // A deployment's record starts when it gets to work: a waiting one is restamped by each job.
    let (deployment_id, started_at, phase) = match continuation {
        None => (job.id.clone(), now_millis(), None),
        Some(c) => match &c.phase {
            Phase::Updating { state } => {
                request.resume = Some(state.clone());
                (c.deployment_id, c.started_at, Some(c.phase))
            }
            Phase::WaitingForLease { .. } => (c.deployment_id, now_millis(), Some(c.phase)),
        },
    };
    Ok(Prepared {
        job_id: job.id.clone(),
        target: TargetKey::of(&request, &worker.settings.region),
        request,
        updater,
        deployment_id,
        started_at,
        phase,
    })
}

/// Runs the job in its own task, so that a panic or the deadline still yields an answer — and
/// gives the target's lease back then, so the next deployment is not held up.
async fn run_guarded<I: Invoke>(p: Prepared, worker: Arc<Worker<I>>, deadline: Deadline) -> JobAnswer {
    let work_deadline = deadline.less(ANSWER_MARGIN);
    let task = tokio::spawn({
        let (p, worker) = (p.clone(), worker.clone());
        async move { execute(&p, &worker, work_deadline).await }
    });
    let abort = task.abort_handle();
    let message = match tokio::time::timeout_at(work_deadline.instant(), task).await {
        Ok(Ok(answer)) => return answer,
        Ok(Err(join)) if join.is_panic() => "crossdeploy's worker hit an internal error (a panic) while processing this job; the deployment's state is unknown: check the target before retrying, and report the worker's logs".to_owned(),
        Ok(Err(_)) => "the worker's processing of this job was cancelled".to_owned(),
        Err(_) => {
            abort.abort();
            "crossdeploy's worker ran out of time before the updater answered; the deployment may still be going on: check the target, then retry the action (raise the worker's timeout if this repeats)".to_owned()
        }
    };
    tracing::error!(job_id = %p.job_id, %message, "job cut short");
    finish(&p, &worker, DeploymentStatus::Failed, None, Some(&message)).await;
    failure(FailureType::JobFailed, &p.job_id, message)
}

/// The deployment step of one job: the lease, the updater, the ledger, the answer.
async fn execute<I: Invoke>(p: &Prepared, worker: &Worker<I>, deadline: Deadline) -> JobAnswer {
    let ctx = &p.request.pipeline;
    let holder = LeaseHolder {
        deployment_id: p.deployment_id.clone(),
        pipeline: ctx.pipeline_name.clone(),
        execution_id: ctx.execution_id.clone(),
        job_id: Some(p.job_id.clone()),
        since: now_secs(),
    };
    match worker.ledger.acquire_lease(&p.target, &holder, worker.settings.lease_ttl).await {
        Err(e) => return failure(FailureType::JobFailed, &p.job_id, e.to_string()),
        Ok(Lease::HeldBy(other)) => {
            let since = match &p.phase {
                Some(Phase::WaitingForLease { since }) => *since,
                _ => now_secs(),
            };
            let waited = now_secs().saturating_sub(since);
            if waited >= worker.settings.lease_wait.as_secs() {
                return failure(
                    FailureType::JobFailed,
                    &p.job_id,
                    format!(
                        "{} is being deployed by {other}; this deployment waited {} minutes for it and gave up. Retry once that deployment has finished",
                        p.target,
                        waited / 60
                    ),
                );
            }
            tracing::info!(job_id = %p.job_id, target = %p.target, holder = %other, "target busy; waiting through continuation");
            let summary = format!("waiting for {other} to finish deploying {}", p.target);
            return continue_later(p, worker, Phase::WaitingForLease { since }, summary, 0).await;
        }
        Ok(Lease::Acquired) => {}
    }
    if !matches!(p.phase, Some(Phase::Updating { .. })) {
        if let Err(e) = worker.ledger.start_deployment(&record(p, DeploymentStatus::InProgress, None, None)).await {
            worker.ledger.release_lease(&p.target, &p.deployment_id).await.ok();
            return failure(FailureType::JobFailed, &p.job_id, e.to_string());
        }
    }
    tracing::info!(job_id = %p.job_id, updater = %p.updater, target = %p.target, "invoking the updater");
    // The updater's own timeout comes a second before the guard's in `run_guarded`, so that its
    // more precise message is the one given.
    let invoke_deadline = deadline.less(Duration::from_secs(1));
    let request = UpdaterRequest::Deploy(Box::new(p.request.clone()));
    let outcome = match tokio::time::timeout_at(invoke_deadline.instant(), worker.invoker.invoke(&p.updater, &request)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::failed(FailureType::JobFailed, e.to_string()),
        Err(_) => Outcome::failed(
            FailureType::JobFailed,
            format!("the updater {} did not answer before the worker's deadline; the deployment may still be going on: check the target, then retry the action", p.updater),
        ),
    };
    match outcome {
        Outcome::Succeeded { summary, outputs } => {
            finish(p, worker, DeploymentStatus::Succeeded, Some(&outputs), None).await;
            JobAnswer::Success(Success {
                summary,
                external_execution_id: Some(p.job_id.clone()),
                percent_complete: Some(100),
                output_variables: outputs,
                continuation_token: None,
            })
        }
        Outcome::InProgress { summary, percent_complete, state } => {
            continue_later(p, worker, Phase::Updating { state }, summary, percent_complete).await
        }
        Outcome::Failed { failure_type, message } => {
            finish(p, worker, DeploymentStatus::Failed, None, Some(&message)).await;
            failure(failure_type, &p.job_id, message)
        }
    }
}

/// Saves where the deployment stands and answers with a continuation token for it.
async fn continue_later<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    phase: Phase,
    summary: String,
    percent: u8,
) -> JobAnswer {
    let token = format!("{TOKEN_PREFIX}{}", p.job_id);
    if token.len() > MAX_CONTINUATION_TOKEN {
        return failure(
            FailureType::JobFailed,
            &p.job_id,
            format!("the job id is too long for a continuation token ({} characters)", token.len()),
        );
    }
    let continuation = Continuation { deployment_id: p.deployment_id.clone(), started_at: p.started_at, phase };
    if let Err(e) = worker.ledger.save_continuation(&p.job_id, &continuation).await {
        finish(p, worker, DeploymentStatus::Failed, None, Some(&e.to_string())).await;
        return failure(FailureType::JobFailed, &p.job_id, e.to_string());
    }
    JobAnswer::Success(Success {
        summary,
        external_execution_id: Some(p.job_id.clone()),
        percent_complete: Some(percent.min(99)),
        output_variables: Default::default(),
        continuation_token: Some(token),
    })
}

fn record(
    p: &Prepared,
    status: DeploymentStatus,
    outputs: Option<&std::collections::BTreeMap<String, String>>,
    message: Option<&str>,
) -> DeploymentRecord {
    let get = |a: &str, b: &str| outputs.and_then(|o| o.get(a).or_else(|| o.get(b))).cloned();
    DeploymentRecord {
        deployment_id: p.deployment_id.clone(),
        target: p.target.clone(),
        role_arn: p.request.target.role_arn.to_string(),
        pipeline: p.request.pipeline.clone(),
        started_at: p.started_at,
        finished_at: (status != DeploymentStatus::InProgress).then(now_millis),
        status,
        previous: get(outputs::PREVIOUS_VERSION, outputs::PREVIOUS_TASK_DEFINITION_ARN),
        deployed: get(outputs::FUNCTION_VERSION, outputs::TASK_DEFINITION_ARN),
        outputs: outputs.cloned().unwrap_or_default(),
        message: message.map(str::to_owned),
        alarm_names: p.request.alarm_names.clone(),
        rollback: None,
    }
}

/// Records how the deployment ended and gives the target back. Ledger trouble here is logged:
/// the job's answer stands, and an unreleased lease expires.
async fn finish<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    status: DeploymentStatus,
    outputs: Option<&std::collections::BTreeMap<String, String>>,
    message: Option<&str>,
) {
    // Independent writes: done at once.
    let record = record(p, status, outputs, message);
    let (recorded, released) = tokio::join!(
        worker.ledger.finish_deployment(&record),
        worker.ledger.release_lease(&p.target, &p.deployment_id)
    );
    if let Err(e) = recorded {
        tracing::error!(error = %e, deployment_id = %p.deployment_id, "could not record how the deployment ended");
    }
    if let Err(e) = released {
        tracing::error!(error = %e, target = %p.target, "could not release the lease; it expires on its own");
    }
}

async fn send<I: Invoke>(
    worker: &Worker<I>,
    job_id: &str,
    run_id: &str,
    answer: &JobAnswer,
) -> Result<HandledJob, WorkerError> {
    let answered = answer_job(&worker.codepipeline, job_id, answer).await?;
    let label = match answer {
        JobAnswer::Success(s) if s.continuation_token.is_some() => "InProgress".to_owned(),
        JobAnswer::Success(_) => "Succeeded".to_owned(),
        JobAnswer::Failure { failure_type, .. } => failure_type.as_str().to_owned(),
    };
    if let Err(e) = worker.ledger.finish_job(job_id, run_id, &label).await {
        tracing::error!(job_id, error = %e, "answered, but could not mark the job answered in the ledger");
    }
    tracing::info!(job_id, answer = %label, already = answered == Answered::Already, "job answered");
    Ok(HandledJob { job_id: job_id.to_owned(), answer: label, already_answered: answered == Answered::Already })
}

fn failure(failure_type: FailureType, job_id: &str, message: String) -> JobAnswer {
    JobAnswer::Failure { failure_type, message, external_execution_id: Some(job_id.to_owned()) }
}
