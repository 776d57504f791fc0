use crate::{classify, poll_and_process, Invoke, Trigger, Worker, ANSWER_MARGIN};
use crossdeploy_aws::invoke::{invoke_until, Invoked, CLOCK_SKEW, INVOKE_SLACK};
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{
    now_millis, now_secs, Begin, Begun, Claim, Continuation, Decided, Deployment, DeploymentRecord, DeploymentStatus,
    End, Lease, LeaseHolder, Ledger, Phase, RecordedAnswer, RollbackClaim, RollbackRecord, RollbackStatus, TargetKey,
};
use crossdeploy_pipeline_job::policy::Origin;
use crossdeploy_pipeline_job::{
    answer_job, fetch_pipeline_context, job_configuration, Answered, Job, JobAnswer, JobError, ReportError, Success,
    MAX_CONTINUATION_TOKEN,
};
use crossdeploy_protocol::{outputs, DeployRequest, DeploySpec, FailureType, Outcome, Serving, Stands, UpdaterRequest};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Continuation tokens are this prefix and the id of the job that wrote them: only a key into the ledger.
const TOKEN_PREFIX: &str = "crossdeploy:v1:";
/// An updater invocation is started only with at least this long before the worker's deadline
/// (the default of `Settings::min_slice`).
pub const MIN_SLICE: Duration = Duration::from_secs(15);
/// How long a job's first transaction may retry transient faults: the time comes out of the
/// first updater invocation's slice, whose request (and deadline) the transaction vouches for.
const BEGIN_BUDGET: Duration = Duration::from_secs(5);
/// Updater invocations in a row that give no outcome (across continuation jobs) before the
/// deployment fails.
const MAX_SILENT: u32 = 3;

/// What the worker did with one job (the Lambda's own return value; CodePipeline ignores it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandledJob {
    pub job_id: String,
    /// "Succeeded", "InProgress" (continuation), the failure type, or "ClaimedElsewhere".
    pub answer: String,
    /// The job had an answer already; nothing new was decided.
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
/// or the schedule. `run_id` (the Lambda request id) names this run in the ledger: Lambda's
/// retry of this invocation carries the same id, and takes up this run's jobs.
pub async fn handle_event<I: Invoke>(
    event: serde_json::Value,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    run_id: &str,
) -> Result<Vec<HandledJob>, WorkerError> {
    // Boxed: a job's future is deep, and the runtime's future must keep a bounded layout.
    match classify(&event) {
        Trigger::InvokeJob => {
            Ok(Box::pin(handle_invoke_event(event, worker, deadline, run_id)).await?.into_iter().collect())
        }
        Trigger::ActionStarted { provider } => {
            Ok(Box::pin(poll_and_process(worker, &[provider.as_str()], deadline, run_id)).await?.handled)
        }
        Trigger::Schedule => {
            let providers = &crossdeploy_pipeline_job::actions::PROVIDERS;
            Ok(Box::pin(poll_and_process(worker, providers, deadline, run_id)).await?.handled)
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
            let ledger = worker.ledger.until(deadline);
            match ledger.claim_job(&job_id, run_id, deadline.remaining() + ANSWER_MARGIN).await? {
                Claim::Taken => return Ok(None),
                Claim::Answered(earlier) => return Ok(Some(resend(&worker, &job_id, earlier, deadline).await?)),
                Claim::Claimed { .. } => {}
            }
            let answer = failure(
                FailureType::JobFailed,
                &job_id,
                format!("crossdeploy could not read CodePipeline job {job_id}: {problem}"),
            );
            Ok(Some(send(&worker, &job_id, run_id, &answer, deadline).await?))
        }
        Err(e) => {
            tracing::error!(error = %e, "ignored an event that is not a CodePipeline job");
            Err(WorkerError::NotAJob(e))
        }
    }
}

/// One job, whichever way it came: claimed once, worked out under its target's lease, answered
/// exactly once. `None`: another run has the job (a second delivery or an overlapping run).
/// The same run handling it again (Lambda's retry) finds its claim, or its recorded answer.
///
/// The job is read first (nothing written). A job delivered for the first time, to a free
/// target, is then claimed, its target leased and its deployment recorded in one transaction;
/// anything else (a retry, a busy target, a job that cannot run) is claimed on its own first.
pub async fn handle_job<I: Invoke>(
    job: Job,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    run_id: &str,
) -> Result<Option<HandledJob>, WorkerError> {
    let prepared = prepare(&job, &worker, run_id, deadline).await;
    if let Ok(p) = &prepared {
        let p = p.clone().claimed(now_millis(), false);
        if let Some(first) = begin(&p, &worker, deadline, true).await {
            let (answer, recorded) = run_guarded(p, worker.clone(), deadline, Some(first)).await;
            return deliver(&worker, &job.id, run_id, &answer, recorded, deadline).await.map(Some);
        }
    }
    let ledger = worker.ledger.until(deadline);
    let claimed = match ledger.claim_job(&job.id, run_id, deadline.remaining() + ANSWER_MARGIN).await? {
        Claim::Taken => {
            tracing::info!(job_id = %job.id, "claimed by another run; nothing to do");
            return Ok(None);
        }
        Claim::Answered(earlier) => return Ok(Some(resend(&worker, &job.id, earlier, deadline).await?)),
        Claim::Claimed { since_ms, retried } => (since_ms, retried),
    };
    // The transaction found the target busy, or the job claimed before: one write at a time.
    answer_claimed(&job.id, prepared, worker, deadline, run_id, claimed, false).await.map(Some)
}

/// A job this run has claimed (a custom action's, before it acknowledged it): read, worked out
/// and answered.
pub(crate) async fn handle_claimed<I: Invoke>(
    job: Job,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    run_id: &str,
    claimed: (u64, bool),
) -> Result<HandledJob, WorkerError> {
    let prepared = prepare(&job, &worker, run_id, deadline).await;
    answer_claimed(&job.id, prepared, worker, deadline, run_id, claimed, true).await
}

/// A claimed job's work and answer. `transact`: a new claim may lease its target and record its
/// deployment in one transaction.
async fn answer_claimed<I: Invoke>(
    job_id: &str,
    prepared: Result<Prepared, JobAnswer>,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    run_id: &str,
    (since_ms, retried): (u64, bool),
    transact: bool,
) -> Result<HandledJob, WorkerError> {
    tracing::info!(job_id, retried, "job claimed");
    let (answer, recorded) = match prepared {
        Ok(p) => {
            let p = p.claimed(since_ms, retried);
            let first = match transact && !retried {
                true => begin(&p, &worker, deadline, false).await,
                false => None,
            };
            run_guarded(p, worker.clone(), deadline, first).await
        }
        Err(answer) => (answer, false),
    };
    deliver(&worker, job_id, run_id, &answer, recorded, deadline).await
}

/// Sends the job's answer: recorded in the ledger already (with the deployment's end), or
/// recorded first here.
async fn deliver<I: Invoke>(
    worker: &Worker<I>,
    job_id: &str,
    run_id: &str,
    answer: &JobAnswer,
    recorded: bool,
    deadline: Deadline,
) -> Result<HandledJob, WorkerError> {
    match recorded {
        true => post(worker, job_id, answer, true, deadline).await,
        false => send(worker, job_id, run_id, answer, deadline).await,
    }
}

/// The job's first writes in one transaction: its claim (`claim`), its target's lease vouching
/// for the deployment's first updater request, and the deployment's record (or, for a
/// deployment going on, the check that nobody condemned it). `Some(that request)`: all written,
/// nothing else to do before it is sent. `None`: nothing written; go one write at a time.
async fn begin<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    deadline: Deadline,
    claim: bool,
) -> Option<(Deadline, UpdaterRequest)> {
    let work_deadline = deadline.less(ANSWER_MARGIN);
    // Not one invocation fits: the one-by-one path says so.
    if work_deadline.remaining() < worker.settings.min_slice + INVOKE_SLACK + CLOCK_SKEW {
        return None;
    }
    let (slice, first) = slice_request(p, worker, p.request.resume.clone(), work_deadline);
    let holder = lease_holder(p, Some(&first));
    let deployment = record(p, DeploymentStatus::InProgress, None, None, None);
    let b = Begin {
        claim,
        job_id: &p.job_id,
        owner: &p.run_id,
        hold: deadline.remaining() + ANSWER_MARGIN,
        claimed_ms: p.claimed_ms,
        target: &p.target,
        holder: &holder,
        lease_until: lease_until(worker, work_deadline),
        deployment: match p.phase {
            Some(Phase::Updating { .. }) => Deployment::GoOn(&deployment),
            _ => Deployment::Start(&deployment),
        },
    };
    // A few seconds at most, the first slice's own time: its request is fixed already.
    match worker.ledger.until(work_deadline.at_most(BEGIN_BUDGET)).begin(&b).await {
        Ok(Begun::Written) => {
            tracing::info!(job_id = %p.job_id, target = %p.target, claimed = claim, "job claimed, target leased, deployment recorded");
            Some((slice, first))
        }
        Ok(Begun::OneByOne(why)) => {
            tracing::info!(job_id = %p.job_id, target = %p.target, %why, "not a fresh job on a free target; one write at a time");
            None
        }
        Err(e) => {
            tracing::warn!(job_id = %p.job_id, error = %e, "the job's first writes failed; one write at a time");
            None
        }
    }
}

/// The updater request for one slice of the deployment, resuming from `state`: its deadline is
/// the end of the slice, well before the worker's own (`deadline`).
fn slice_request<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    state: Option<serde_json::Value>,
    deadline: Deadline,
) -> (Deadline, UpdaterRequest) {
    let slice = deadline.less(INVOKE_SLACK + CLOCK_SKEW).at_most(worker.settings.updater_slice);
    let mut request = p.request.clone();
    request.resume = state;
    request.deadline_ms = Some(slice.epoch_millis());
    (slice, UpdaterRequest::Deploy(Box::new(request)))
}

/// A job ready to run: its request, its target and the deployment it belongs to.
#[derive(Debug, Clone)]
struct Prepared {
    job_id: String,
    run_id: String,
    request: DeployRequest,
    updater: String,
    target: TargetKey,
    deployment_id: String,
    started_at: u64,
    /// Where the deployment stood when the previous job of it ended (`None`: a new deployment).
    phase: Option<Phase>,
    /// What the target served when the previous job of it ended.
    stands: Option<Stands>,
    /// Updater invocations in a row that gave no outcome, up to the previous job.
    silent: u32,
    /// Lambda retried this run (the same request id): an updater invocation of the killed
    /// attempt may still be acting.
    retried: bool,
    /// When the job was first claimed (ms since the epoch).
    claimed_ms: u64,
}

impl Prepared {
    /// This job as claimed at `since_ms` (the first claim's time, the same for every retry of
    /// the job): a deployment that starts with it is keyed by that time.
    fn claimed(mut self, since_ms: u64, retried: bool) -> Prepared {
        if !matches!(self.phase, Some(Phase::Updating { .. })) {
            self.started_at = since_ms;
        }
        self.claimed_ms = since_ms;
        self.retried = retried;
        self
    }
}

/// Reads the job into a request: configuration, artifact, updater, and the continuation it carries.
/// Only reads: the job is not claimed yet, or claimed by this run ([`Prepared::claimed`] says when).
async fn prepare<I: Invoke>(
    job: &Job,
    worker: &Worker<I>,
    run_id: &str,
    deadline: Deadline,
) -> Result<Prepared, JobAnswer> {
    let mut pipeline = job.pipeline.clone();
    if pipeline.pipeline_name.is_none() && !worker.settings.local {
        // An Invoke action's job: its pipeline and stage are established only if CodePipeline
        // serves its details (documented for custom actions only; either answer is safe: a
        // target the deploy policy restricts to pipelines refuses a job it cannot place).
        match fetch_pipeline_context(&worker.codepipeline, &job.id, deadline.less(ANSWER_MARGIN)).await {
            Ok(ctx) => pipeline = ctx,
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "CodePipeline did not serve the job's details; its pipeline is not established")
            }
        }
    }
    let config =
        job_configuration(job).map_err(|e| failure(FailureType::ConfigurationError, &job.id, e.to_string()))?;
    // Who may deploy where: checked before anything else happens (no updater, no AssumeRole).
    match &worker.settings.policy {
        crate::Policy::None => {}
        crate::Policy::Broken(e) => return Err(failure(FailureType::PermissionError, &job.id, e.to_string())),
        crate::Policy::Enforced(policy) => {
            // A local deployment's pipeline is only what its caller says: not established.
            let origin = match worker.settings.local {
                true => Origin { pipeline: None, stage: None },
                false => Origin { pipeline: pipeline.pipeline_name.as_deref(), stage: pipeline.stage.as_deref() },
            };
            policy.check(origin, &config.target.role_arn).map_err(|why| {
                tracing::warn!(job_id = %job.id, pipeline = ?origin.pipeline, stage = ?origin.stage, role = %config.target.role_arn, "refused by the deploy policy");
                failure(FailureType::PermissionError, &job.id, why)
            })?;
        }
    }
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
                .until(deadline)
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
        deployment_id: None,
        deadline_ms: None,
    };
    // A deployment's record starts when it gets to work: a waiting one is restamped by each job,
    // with the time its job was first claimed (set once claimed: `Prepared::claimed`).
    let (deployment_id, started_at, phase, stands, silent) = match continuation {
        None => (job.id.clone(), 0, None, None, 0),
        Some(c) => match &c.phase {
            Phase::Updating { state } => {
                request.resume = (!state.is_null()).then(|| state.clone());
                (c.deployment_id, c.started_at, Some(c.phase), c.stands, c.silent)
            }
            Phase::WaitingForLease { .. } => (c.deployment_id, 0, Some(c.phase), None, 0),
        },
    };
    request.deployment_id = Some(deployment_id.clone());
    Ok(Prepared {
        job_id: job.id.clone(),
        run_id: run_id.to_owned(),
        target: TargetKey::of(&request, &worker.settings.region),
        request,
        updater,
        deployment_id,
        started_at,
        phase,
        stands,
        silent,
        retried: false,
        claimed_ms: 0,
    })
}

/// What a job's run knows while it works, shared with the guard that answers if the run panics.
#[derive(Debug, Default)]
struct Progress {
    /// The deadline (ms since the epoch) of the updater invocation under way, 0 when none is.
    updater_deadline_ms: AtomicU64,
    /// What the target served at the updater's last word.
    stands: Mutex<Option<Stands>>,
    /// An invocation has ended without a word since the last one (killed, timed out, its answer
    /// lost): it may have changed the target after that word.
    unheard: AtomicBool,
    /// The answer returned was recorded in the ledger with the deployment's end.
    recorded: AtomicBool,
}

impl Progress {
    fn stands(&self) -> Option<Stands> {
        self.stands.lock().map(|s| s.clone()).unwrap_or(None)
    }

    fn set_stands(&self, stands: Option<Stands>) {
        if let Ok(mut s) = self.stands.lock() {
            *s = stands;
        }
    }

    /// Waits until no updater invocation of this run can still be acting (never past `deadline`).
    async fn updater_stopped(&self, deadline: Deadline) {
        let ms = self.updater_deadline_ms.load(Ordering::SeqCst);
        if ms == 0 {
            return;
        }
        let stopped = Deadline::at_epoch_millis(ms).instant() + CLOCK_SKEW;
        tokio::time::sleep_until(stopped.min(deadline.instant())).await;
    }
}

/// Runs the job in its own task, so that a panic or the deadline still yields an answer — only
/// once no updater can still be acting for it — and gives the target's lease back then. Says
/// whether the answer is recorded in the ledger already. `first`: the job's first writes are
/// done, and its lease vouches for this request (see [`begin`]).
async fn run_guarded<I: Invoke>(
    p: Prepared,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    first: Option<(Deadline, UpdaterRequest)>,
) -> (JobAnswer, bool) {
    let work_deadline = deadline.less(ANSWER_MARGIN);
    let progress = Arc::new(Progress::default());
    progress.set_stands(p.stands.clone());
    progress.unheard.store(p.silent > 0, Ordering::SeqCst);
    let task = tokio::spawn({
        let (p, worker, progress) = (p.clone(), worker.clone(), progress.clone());
        async move { Box::pin(execute(&p, &worker, work_deadline, &progress, first)).await }
    });
    let abort = task.abort_handle();
    let message = match tokio::time::timeout_at(work_deadline.instant(), task).await {
        Ok(Ok(answer)) => return (answer, progress.recorded.load(Ordering::SeqCst)),
        Ok(Err(join)) if join.is_panic() => "crossdeploy's worker hit an internal error (a panic) while processing this job; the ledger records what the target serves as far as the updater said: check the target before retrying, and report the worker's logs".to_owned(),
        Ok(Err(_)) => "the worker's processing of this job was cancelled".to_owned(),
        Err(_) => {
            abort.abort();
            "crossdeploy's worker ran out of time before the job's work ended (the ledger was too slow to answer); the ledger records what the target serves as far as the updater said: check the target, then retry the action".to_owned()
        }
    };
    tracing::error!(job_id = %p.job_id, %message, "job cut short");
    let acting = progress.updater_deadline_ms.load(Ordering::SeqCst) != 0;
    progress.updater_stopped(deadline.less(Duration::from_secs(3))).await;
    // The updater's last word holds only if nothing acted unheard since.
    let stands = if acting || progress.unheard.load(Ordering::SeqCst) {
        Some(unknown_after(progress.stands()))
    } else {
        progress.stands()
    };
    let ledger = worker.ledger.until(deadline.less(Duration::from_secs(3)));
    finish(&p, &ledger, DeploymentStatus::Failed, None, Some(&message), stands.as_ref()).await;
    (failure(FailureType::JobFailed, &p.job_id, message), false)
}

/// What stands once an updater invocation may have acted unheard since its last word (`None`:
/// no word at all): unknown, whatever that word was. With nothing known of what stood or what was
/// deployed, deploy-rollback restores by the deployment's mark on the target.
fn unknown_after(stands: Option<Stands>) -> Stands {
    match stands {
        Some(s) => Stands { serving: Serving::Unknown, ..s },
        None => Stands {
            previous: String::new(),
            deployed: String::new(),
            serving: Serving::Unknown,
            detail: "what it serves is unknown: the updater gave no word of what it did; the deployment's mark on the target tells".to_owned(),
            service_deployment_arn: None,
        },
    }
}

/// The lease's end for a run whose work ends at `deadline`: a run that dies frees its target
/// this soon after its deadline.
fn lease_until<I: Invoke>(worker: &Worker<I>, deadline: Deadline) -> u64 {
    deadline.epoch_millis() / 1000 + worker.settings.lease_grace.as_secs()
}

/// This deployment as the holder of its target's lease, vouching for `request` (the very
/// invocation about to be sent, resume state and deadline included): the one request the
/// updater will act on (see `crossdeploy_ledger::check_origin`). `None`: for none yet.
fn lease_holder(p: &Prepared, request: Option<&UpdaterRequest>) -> LeaseHolder {
    let ctx = &p.request.pipeline;
    LeaseHolder {
        deployment_id: p.deployment_id.clone(),
        pipeline: ctx.pipeline_name.clone(),
        execution_id: ctx.execution_id.clone(),
        job_id: Some(p.job_id.clone()),
        since: now_secs(),
        until: 0,
        request: request.and_then(UpdaterRequest::fingerprint),
    }
}

/// Takes the target's lease for this deployment. A lease held by a deployment whose job was
/// answered for good (its run could not release it) is free: taken over.
async fn take_lease(
    p: &Prepared,
    ledger: &Ledger,
    holder: &LeaseHolder,
    until: u64,
) -> Result<Lease, crossdeploy_ledger::LedgerError> {
    match ledger.acquire_lease(&p.target, holder, until).await? {
        Lease::HeldBy(other) => {
            let Some(job) = other.job_id.as_deref().filter(|j| !j.is_empty()) else {
                return Ok(Lease::HeldBy(other));
            };
            let answered_for_good =
                ledger.job_state(job).await?.and_then(|s| s.answer).is_some_and(|a| a.label != "InProgress");
            if !answered_for_good {
                return Ok(Lease::HeldBy(other));
            }
            tracing::warn!(job_id = %p.job_id, target = %p.target, holder = %other, "the lease's holder was answered already; taking the lease over");
            ledger.take_over_lease(&p.target, holder, until, &other).await
        }
        acquired => Ok(acquired),
    }
}

/// A job's first steps one write at a time: the target's lease (or a continuation while another
/// deployment holds it), the deployment's record, and, for a run Lambda retried or a deployment
/// going on, the checks that nothing of the killed attempt acts and nobody condemned it.
/// `Some(answer)`: the job goes no further.
async fn take_up<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    ledger: &Ledger,
    deadline: Deadline,
    progress: &Progress,
    stands: Option<&Stands>,
) -> Option<JobAnswer> {
    let holder = lease_holder(p, None);
    match take_lease(p, ledger, &holder, lease_until(worker, deadline)).await {
        Err(e) => {
            // A take whose answer was lost may have been applied: give it back.
            if let Err(e) = ledger.release_lease(&p.target, &p.deployment_id).await {
                tracing::error!(error = %e, target = %p.target, "could not release the lease; it expires on its own");
            }
            return Some(failure(FailureType::JobFailed, &p.job_id, e.to_string()));
        }
        Ok(Lease::HeldBy(other)) => {
            let since = match &p.phase {
                Some(Phase::WaitingForLease { since }) => *since,
                _ => now_secs(),
            };
            let waited = now_secs().saturating_sub(since);
            if waited >= worker.settings.lease_wait.as_secs() {
                return Some(failure(
                    FailureType::JobFailed,
                    &p.job_id,
                    format!(
                        "{} is being deployed by {other}; this deployment waited {} minutes for it and gave up. Retry once that deployment has finished",
                        p.target,
                        waited / 60
                    ),
                ));
            }
            tracing::info!(job_id = %p.job_id, target = %p.target, holder = %other, "target busy; waiting through continuation");
            let summary = format!("waiting for {other} to finish deploying {}", p.target);
            return Some(
                continue_later(p, worker, ledger, Phase::WaitingForLease { since }, None, 0, summary, 0).await,
            );
        }
        Ok(Lease::Acquired) => {}
    }
    if !matches!(p.phase, Some(Phase::Updating { .. })) {
        if let Err(e) = ledger.start_deployment(&record(p, DeploymentStatus::InProgress, None, None, None)).await {
            if let Err(e) = ledger.release_lease(&p.target, &p.deployment_id).await {
                tracing::error!(error = %e, target = %p.target, "could not release the lease; it expires on its own");
            }
            return Some(failure(FailureType::JobFailed, &p.job_id, e.to_string()));
        }
    }
    // Lambda retried this run (the same request id): the killed attempt's updater invocation may
    // still be acting until its deadline, at most one slice from now. Nothing starts before,
    // not even the restore of a deployment condemned meanwhile.
    if p.retried {
        let orphan = worker.settings.updater_slice + INVOKE_SLACK + CLOCK_SKEW;
        tracing::info!(job_id = %p.job_id, wait_s = orphan.as_secs(), "a retried run: waiting out the killed attempt's updater");
        tokio::time::sleep(orphan.min(deadline.remaining())).await;
    }
    // A deployment condemned (or rolled back) already goes no further: a run revived by
    // Lambda's retry must not deploy again what deploy-rollback put back.
    match ledger.deployment(&record(p, DeploymentStatus::InProgress, None, None, None)).await {
        Ok(Some(r)) if r.rollback.is_some() => {
            let message =
                format!("deployment {} of {} was condemned before this job could go on", p.deployment_id, p.target);
            let answer = failure(FailureType::JobFailed, &p.job_id, message.clone());
            let ended = Ended { status: DeploymentStatus::Failed, outputs: None, message: Some(&message) };
            Some(conclude(p, worker, ledger, ended, stands, answer, deadline, progress).await)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, deployment_id = %p.deployment_id, "could not read the deployment's record");
            None
        }
    }
}

/// The deployment step of one job: the lease, the updater (one invocation per slice of time,
/// resumed while time is left), the ledger, the answer. `first`: the lease is held, vouching for
/// this first request, and the deployment recorded (see [`begin`]).
async fn execute<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    deadline: Deadline,
    progress: &Progress,
    first: Option<(Deadline, UpdaterRequest)>,
) -> JobAnswer {
    let ledger = worker.ledger.until(deadline);
    let mut state = p.request.resume.clone();
    let mut stands = p.stands.clone();
    if first.is_none() {
        if let Some(answer) = take_up(p, worker, &ledger, deadline, progress, stands.as_ref()).await {
            return answer;
        }
    }
    let mut first = first;
    let mut last = (format!("deploying {}", p.target), 10u8);
    let mut silent = p.silent;
    let mut slices = 0u32;
    loop {
        if deadline.remaining() < worker.settings.min_slice + INVOKE_SLACK + CLOCK_SKEW {
            if slices == 0 {
                // Not one invocation fits: continuing would never get anywhere.
                let message = format!(
                    "the worker had {} s left for this job, too little to run the updater (at least {} s): raise the worker's timeout",
                    deadline.remaining().as_secs(),
                    (worker.settings.min_slice + INVOKE_SLACK + CLOCK_SKEW).as_secs()
                );
                finish(p, &ledger, DeploymentStatus::Failed, None, Some(&message), stands.as_ref()).await;
                return failure(FailureType::JobFailed, &p.job_id, with_stands(message, stands.as_ref()));
            }
            let phase = Phase::Updating { state: state.clone().unwrap_or(serde_json::Value::Null) };
            return continue_later(p, worker, &ledger, phase, stands, silent, last.0, last.1).await;
        }
        slices += 1;
        let (slice, request) = match first.take() {
            // Its lease vouches for it already (written with the job's claim).
            Some(first) => first,
            None => {
                let (slice, request) = slice_request(p, worker, state.clone(), deadline);
                progress.updater_deadline_ms.store(slice.epoch_millis(), Ordering::SeqCst);
                // The lease vouches for this very invocation, its state and deadline too: the
                // updater acts on nothing else.
                match ledger
                    .acquire_lease(&p.target, &lease_holder(p, Some(&request)), lease_until(worker, deadline))
                    .await
                {
                    Ok(Lease::Acquired) => {}
                    Ok(Lease::HeldBy(other)) => {
                        let message = format!(
                            "the lease of {} passed to {other} while this deployment ran (its run was too slow to renew it); it stopped here",
                            p.target
                        );
                        let answer =
                            failure(FailureType::JobFailed, &p.job_id, with_stands(message.clone(), stands.as_ref()));
                        let ended = Ended { status: DeploymentStatus::Failed, outputs: None, message: Some(&message) };
                        return conclude(p, worker, &ledger, ended, stands.as_ref(), answer, deadline, progress).await;
                    }
                    Err(e) => {
                        // Applied or not, nothing was invoked: the next turn writes it again.
                        tracing::warn!(job_id = %p.job_id, error = %e, "could not vouch for the invocation; trying again");
                        progress.updater_deadline_ms.store(0, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(500).min(deadline.remaining())).await;
                        continue;
                    }
                }
                (slice, request)
            }
        };
        progress.updater_deadline_ms.store(slice.epoch_millis(), Ordering::SeqCst);
        tracing::info!(job_id = %p.job_id, updater = %p.updater, target = %p.target, resume = state.is_some(), "invoking the updater");
        let invoked = invoke_until(&worker.invoker, &p.updater, &request, slice).await;
        progress.updater_deadline_ms.store(0, Ordering::SeqCst);
        match &invoked {
            Invoked::Answered(_) => progress.unheard.store(false, Ordering::SeqCst),
            Invoked::Ended(_) | Invoked::Unknown(_) => progress.unheard.store(true, Ordering::SeqCst),
            Invoked::NotRun(_) => {}
        }
        match invoked {
            Invoked::Answered(Outcome::Succeeded { summary, outputs }) => {
                let deployed = Stands {
                    previous: outputs::previous_of(&outputs).unwrap_or_default(),
                    deployed: outputs::deployed_of(&outputs).unwrap_or_default(),
                    serving: Serving::Deployed,
                    detail: summary.clone(),
                    service_deployment_arn: outputs.get(outputs::SERVICE_DEPLOYMENT_ARN).cloned(),
                };
                progress.set_stands(Some(deployed.clone()));
                let answer = JobAnswer::Success(Success {
                    summary,
                    external_execution_id: Some(p.job_id.clone()),
                    percent_complete: Some(100),
                    output_variables: outputs.clone(),
                    continuation_token: None,
                });
                let ended = Ended { status: DeploymentStatus::Succeeded, outputs: Some(&outputs), message: None };
                return conclude(p, worker, &ledger, ended, Some(&deployed), answer, deadline, progress).await;
            }
            Invoked::Answered(Outcome::Failed { failure_type, message, stands: said }) => {
                // The updater's word on what stands; if it said nothing, it changed nothing in
                // this invocation, and what stood after the last one still stands.
                let stands = said.or(stands);
                progress.set_stands(stands.clone());
                let answer = failure(failure_type, &p.job_id, with_stands(message.clone(), stands.as_ref()));
                let ended = Ended { status: DeploymentStatus::Failed, outputs: None, message: Some(&message) };
                return conclude(p, worker, &ledger, ended, stands.as_ref(), answer, deadline, progress).await;
            }
            Invoked::Answered(Outcome::InProgress { summary, percent_complete, state: next, stands: said }) => {
                silent = 0;
                state = (!next.is_null()).then_some(next);
                last = (summary, percent_complete);
                if said.is_some() && said != stands {
                    stands = said;
                    progress.set_stands(stands.clone());
                    let note = record(p, DeploymentStatus::InProgress, None, None, stands.as_ref());
                    if let Err(e) = ledger.note_progress(&note).await {
                        tracing::error!(error = %e, deployment_id = %p.deployment_id, "could not note what the target serves");
                    }
                }
            }
            Invoked::NotRun(e) => {
                tracing::warn!(job_id = %p.job_id, error = %e, "the updater was not run; trying again");
                tokio::time::sleep(Duration::from_millis(500).min(deadline.remaining())).await;
            }
            Invoked::Ended(e) | Invoked::Unknown(e) => {
                // It has stopped (or its deadline passed): a fresh invocation from the last
                // state it handed back finds what it did, as its own work.
                silent += 1;
                tracing::warn!(job_id = %p.job_id, error = %e, silent, "the updater gave no outcome; running it again from its last state");
                if silent >= MAX_SILENT {
                    let stands = Some(unknown_after(stands));
                    let message =
                        format!("the updater {} gave no outcome {silent} times in a row; the last: {e}", p.updater);
                    let answer =
                        failure(FailureType::JobFailed, &p.job_id, with_stands(message.clone(), stands.as_ref()));
                    let ended = Ended { status: DeploymentStatus::Failed, outputs: None, message: Some(&message) };
                    return conclude(p, worker, &ledger, ended, stands.as_ref(), answer, deadline, progress).await;
                }
            }
        }
    }
}

/// A failure's message, with what the target serves when the deployment left it changed.
fn with_stands(message: String, stands: Option<&Stands>) -> String {
    match stands {
        Some(s) if s.serving != Serving::Previous => format!(
            "{message}. The target may have been left changed ({}); crossdeploy's ledger records it, and deploy-rollback restores {} when this stage's failure reaches it",
            s.detail,
            if s.previous.is_empty() { "what stood before" } else { &s.previous }
        ),
        _ => message,
    }
}

/// How a deployment ended, as recorded.
struct Ended<'a> {
    status: DeploymentStatus,
    outputs: Option<&'a BTreeMap<String, String>>,
    message: Option<&'a str>,
}

/// Records how the deployment ended, then answers: with `answer`, unless the deployment was
/// condemned while it ran (an action of its stage failed) or its rollback was handled since
/// (a retried run): then what it left on the target is put back first, and the job fails.
#[allow(clippy::too_many_arguments)]
async fn conclude<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    ledger: &Ledger,
    ended: Ended<'_>,
    stands: Option<&Stands>,
    answer: JobAnswer,
    deadline: Deadline,
    progress: &Progress,
) -> JobAnswer {
    // A deployment nobody condemned: its end, its lease given back and its job's answer, in one
    // transaction. Anything else (or a failed write) goes one write at a time.
    let done = record(p, ended.status, ended.outputs, ended.message, stands);
    let data = serde_json::to_string(&answer).unwrap_or_default();
    let end = End { record: &done, job_id: &p.job_id, owner: &p.run_id, label: answer.label(), data: &data };
    match ledger.end(&end).await {
        Ok(true) => {
            progress.recorded.store(true, Ordering::SeqCst);
            deployment_ended(p, ended.status);
            return answer;
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, deployment_id = %p.deployment_id, "the deployment's end could not be written at once; one write at a time")
        }
    }
    let Some(finished) = finish(p, ledger, ended.status, ended.outputs, ended.message, stands).await else {
        return answer;
    };
    let Some(condemned) = finished.condemned else { return answer };
    let why = format!("deployment {} of {} was condemned ({})", p.deployment_id, p.target, condemned.trigger);
    match condemned.status {
        RollbackStatus::Pending | RollbackStatus::InProgress | RollbackStatus::Failed => {}
        done => {
            release(p, ledger).await;
            let note = format!(
                "{why}; its rollback was handled: {}: {}",
                done.as_str(),
                condemned.message.unwrap_or_default()
            );
            return match answer {
                JobAnswer::Failure { failure_type, message, .. } => {
                    failure(failure_type, &p.job_id, format!("{message}. {note}"))
                }
                JobAnswer::Success(_) => failure(FailureType::JobFailed, &p.job_id, note),
            };
        }
    }
    // What it left on the target: from its outputs (a success), or from its updater's word;
    // when no word reached this run (its earlier attempt died), from the target's own mark.
    let left = match (ended.outputs, stands) {
        (Some(outputs), _) => match outputs::previous_of(outputs).zip(outputs::deployed_of(outputs)) {
            Some((previous, deployed)) => Left::Known(previous, deployed),
            None => Left::Unknown,
        },
        (None, Some(s)) if s.serving == Serving::Previous => Left::Nothing,
        (None, Some(s)) if !s.deployed.is_empty() => Left::Known(s.previous.clone(), s.deployed.clone()),
        _ => Left::Unknown,
    };
    roll_back_condemned(p, worker, ledger, ended.status, left, &condemned, &why, deadline).await
}

/// What a condemned deployment left on its target.
enum Left {
    /// What stood before it, and what it deployed.
    Known(String, String),
    /// Nothing of it stands.
    Nothing,
    /// No word of it reached this run: the updater reads the target's mark.
    Unknown,
}

/// Puts back what a condemned deployment left on its target, records the rollback, gives the
/// lease back, and answers the job as failed, saying so.
#[allow(clippy::too_many_arguments)]
async fn roll_back_condemned<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    ledger: &Ledger,
    status: DeploymentStatus,
    left: Left,
    condemned: &RollbackRecord,
    why: &str,
    deadline: Deadline,
) -> JobAnswer {
    let done = record(p, status, None, None, None);
    let claim = RollbackRecord {
        status: RollbackStatus::InProgress,
        by: p.run_id.clone(),
        at: now_millis(),
        message: None,
        restored: None,
        ..condemned.clone()
    };
    let claimed = ledger.claim_rollback(&done, &claim, Duration::from_secs(15 * 60)).await;
    let ended = match (claimed, left) {
        (Ok(RollbackClaim::Claimed), left @ (Left::Known(..) | Left::Unknown)) if !matches!(&left, Left::Known(previous, _) if previous == "none" || previous.is_empty()) =>
        {
            let reason = format!("rolled back by crossdeploy: {}", condemned.trigger);
            let (previous, deployed) = match left {
                Left::Known(previous, deployed) => (previous, deployed),
                _ => (String::new(), String::new()),
            };
            match deploy_rollback::rollback_request_for(&done, &reason, &previous, &deployed) {
                Err(m) => deploy_rollback::Resolution {
                    status: RollbackStatus::Failed,
                    handled: deploy_rollback::Handled::Failed,
                    restored: None,
                    message: format!("the rollback could not start: {m}"),
                },
                Ok(request) => {
                    let until = deadline.less(INVOKE_SLACK + CLOCK_SKEW);
                    let lease_end = lease_until(worker, deadline);
                    // The lease vouches for each invocation of the restore in turn.
                    let vouch = |r: &UpdaterRequest| {
                        let holder = lease_holder(p, Some(r));
                        async move {
                            match ledger.acquire_lease(&p.target, &holder, lease_end).await {
                                Ok(Lease::Acquired) => Ok(()),
                                Ok(Lease::HeldBy(other)) => Err(format!("{} is held by {other}", p.target)),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                    };
                    deploy_rollback::invoke_rollback(&worker.invoker, &p.updater, request, until, vouch).await
                }
            }
        }
        (Ok(RollbackClaim::Claimed), _) => deploy_rollback::Resolution {
            status: RollbackStatus::AlreadyRestored,
            handled: deploy_rollback::Handled::AlreadyRestored,
            restored: None,
            message: "nothing of it stands on the target: nothing to put back".to_owned(),
        },
        (Ok(RollbackClaim::Taken(before)), _) => {
            release(p, ledger).await;
            let how = before.map(|b| b.status.as_str()).unwrap_or("gone");
            return failure(FailureType::JobFailed, &p.job_id, format!("{why}; its rollback is another run's ({how})"));
        }
        (Err(e), _) => {
            release(p, ledger).await;
            return failure(
                FailureType::JobFailed,
                &p.job_id,
                format!("{why}; its rollback could not be claimed: {e}"),
            );
        }
    };
    let outcome = RollbackRecord {
        status: ended.status,
        restored: ended.restored.clone(),
        message: Some(ended.message.clone()),
        at: now_millis(),
        ..claim
    };
    if let Err(e) = ledger.finish_rollback(&done, &outcome).await {
        tracing::error!(error = %e, deployment_id = %p.deployment_id, "could not record the rollback");
    }
    release(p, ledger).await;
    let message = match ended.status {
        RollbackStatus::Failed => {
            format!("{why}; the rollback failed ({}); deploy-rollback can retry it", ended.message)
        }
        _ => format!("{why}; rolled back: {}", ended.message),
    };
    failure(FailureType::JobFailed, &p.job_id, message)
}

async fn release(p: &Prepared, ledger: &Ledger) {
    if let Err(e) = ledger.release_lease(&p.target, &p.deployment_id).await {
        tracing::error!(error = %e, target = %p.target, "could not release the lease; it expires on its own");
    }
}

/// Saves where the deployment stands and answers with a continuation token for it. The lease
/// holds until the next job of the deployment comes (`continuation_gap`).
#[allow(clippy::too_many_arguments)]
async fn continue_later<I: Invoke>(
    p: &Prepared,
    worker: &Worker<I>,
    ledger: &Ledger,
    phase: Phase,
    stands: Option<Stands>,
    silent: u32,
    summary: String,
    percent: u8,
) -> JobAnswer {
    let token = format!("{TOKEN_PREFIX}{}", p.job_id);
    let holds_lease = matches!(phase, Phase::Updating { .. });
    let saved = if token.len() > MAX_CONTINUATION_TOKEN {
        Err(format!("the job id is too long for a continuation token ({} characters)", token.len()))
    } else {
        let continuation = Continuation {
            deployment_id: p.deployment_id.clone(),
            started_at: p.started_at,
            phase,
            stands: stands.clone(),
            silent,
        };
        ledger.save_continuation(&p.job_id, &continuation, &p.run_id).await.map_err(|e| e.to_string())
    };
    if let Err(message) = saved {
        if holds_lease {
            finish(p, ledger, DeploymentStatus::Failed, None, Some(&message), stands.as_ref()).await;
        }
        return failure(FailureType::JobFailed, &p.job_id, with_stands(message, stands.as_ref()));
    }
    if holds_lease {
        let holder = lease_holder(p, None);
        let until = now_secs() + worker.settings.continuation_gap.as_secs();
        match ledger.acquire_lease(&p.target, &holder, until).await {
            Ok(Lease::Acquired) => {}
            Ok(Lease::HeldBy(other)) => {
                tracing::error!(target = %p.target, holder = %other, "the lease passed to another deployment")
            }
            Err(e) => {
                tracing::error!(error = %e, target = %p.target, "could not renew the lease for the continuation; it holds until this run's deadline")
            }
        }
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
    outputs: Option<&BTreeMap<String, String>>,
    message: Option<&str>,
    stands: Option<&Stands>,
) -> DeploymentRecord {
    DeploymentRecord {
        deployment_id: p.deployment_id.clone(),
        target: p.target.clone(),
        role_arn: p.request.target.role_arn.to_string(),
        pipeline: p.request.pipeline.clone(),
        started_at: p.started_at,
        finished_at: (status != DeploymentStatus::InProgress).then(now_millis),
        status,
        previous: outputs
            .and_then(outputs::previous_of)
            .or_else(|| stands.map(|s| s.previous.clone()))
            .filter(|v| !v.is_empty()),
        deployed: outputs
            .and_then(outputs::deployed_of)
            .or_else(|| stands.map(|s| s.deployed.clone()))
            .filter(|v| !v.is_empty()),
        serving: stands.map(|s| s.serving),
        outputs: recorded_outputs(outputs, stands),
        message: message.map(str::to_owned),
        alarm_names: p.request.alarm_names.clone(),
        rollback: None,
    }
}

/// The outputs a record keeps: the job's, and the ECS service deployment moving the target when
/// the updater named one (a deployment in progress or failed has no outputs of its own).
fn recorded_outputs(outputs: Option<&BTreeMap<String, String>>, stands: Option<&Stands>) -> BTreeMap<String, String> {
    let mut recorded = outputs.cloned().unwrap_or_default();
    if let Some(arn) = stands.and_then(|s| s.service_deployment_arn.as_ref()) {
        recorded.entry(outputs::SERVICE_DEPLOYMENT_ARN.to_owned()).or_insert_with(|| arn.clone());
    }
    recorded
}

/// The `Deployments` and `DeploymentDuration` metrics of a deployment's end (see
/// `crossdeploy_aws::metrics`).
fn deployment_ended(p: &Prepared, status: DeploymentStatus) {
    use crossdeploy_aws::metrics::{emit, Unit};
    let kind = match &p.request.spec {
        DeploySpec::Lambda(_) => "Lambda",
        DeploySpec::Ecs(_) => "Ecs",
    };
    let took = crossdeploy_ledger::now_millis().saturating_sub(p.started_at) as f64;
    emit(
        &[("Kind", kind), ("Outcome", status.as_str())],
        &[("Deployments", 1.0, Unit::Count), ("DeploymentDuration", took, Unit::Milliseconds)],
    );
}

/// Records how the deployment ended and gives the target back. Ledger trouble here is logged:
/// the job's answer stands, and an unreleased lease expires soon after this run's deadline.
async fn finish(
    p: &Prepared,
    ledger: &Ledger,
    status: DeploymentStatus,
    outputs: Option<&BTreeMap<String, String>>,
    message: Option<&str>,
    stands: Option<&Stands>,
) -> Option<crossdeploy_ledger::Finished> {
    let record = record(p, status, outputs, message, stands);
    deployment_ended(p, status);
    let finished = match ledger.finish_deployment(&record).await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(error = %e, deployment_id = %p.deployment_id, "could not record how the deployment ended");
            None
        }
    };
    // A deployment condemned while it ran keeps the lease for its rollback.
    if finished.as_ref().is_none_or(|f| f.condemned.is_none()) {
        release(p, ledger).await;
    }
    finished
}

/// Records the answer, then sends it: a run that dies in between leaves the recorded answer
/// for its retry to send. A job with an answer recorded already gets that one.
async fn send<I: Invoke>(
    worker: &Worker<I>,
    job_id: &str,
    run_id: &str,
    answer: &JobAnswer,
    deadline: Deadline,
) -> Result<HandledJob, WorkerError> {
    let ledger = worker.ledger.until(deadline);
    let data = serde_json::to_string(answer).unwrap_or_default();
    let to_send = match ledger.record_answer(job_id, run_id, answer.label(), &data).await {
        Ok(Decided::Ours) => answer.clone(),
        Ok(Decided::Earlier(earlier)) => return resend(worker, job_id, earlier, deadline).await,
        Ok(Decided::LostClaim) => {
            tracing::warn!(job_id, "the job's claim passed to another run; it answers the job");
            return Ok(HandledJob {
                job_id: job_id.to_owned(),
                answer: "ClaimedElsewhere".into(),
                already_answered: false,
            });
        }
        // A local job's answer lives only in the ledger: not recorded, not answered (the command
        // line runs the job again, as Lambda retries a run, and finds its claim).
        Err(e) if worker.settings.local => return Err(e.into()),
        Err(e) => {
            tracing::error!(job_id, error = %e, "could not record the answer in the ledger; sending it anyway");
            answer.clone()
        }
    };
    post(worker, job_id, &to_send, true, deadline).await
}

/// Sends an answer recorded earlier (by this run before a crash, or by Lambda's first attempt of
/// it). If CodePipeline took it already, it says so (`InvalidJobStateException`) and nothing
/// changes: the ledger keeps no mark of its own for that, which would cost every job a write.
pub(crate) async fn resend<I: Invoke>(
    worker: &Worker<I>,
    job_id: &str,
    earlier: RecordedAnswer,
    deadline: Deadline,
) -> Result<HandledJob, WorkerError> {
    let Ok(answer) = serde_json::from_str::<JobAnswer>(&earlier.data) else {
        tracing::error!(job_id, "the recorded answer cannot be read; the job is left to CodePipeline's timeout");
        return Ok(HandledJob { job_id: job_id.to_owned(), answer: earlier.label, already_answered: true });
    };
    tracing::info!(job_id, answer = %earlier.label, "sending the answer recorded before");
    post(worker, job_id, &answer, false, deadline).await
}

/// Sends `answer`. `first`: this run decided it (not an answer recorded earlier, sent again):
/// only then does it count in the metrics.
async fn post<I: Invoke>(
    worker: &Worker<I>,
    job_id: &str,
    answer: &JobAnswer,
    first: bool,
    deadline: Deadline,
) -> Result<HandledJob, WorkerError> {
    // A local job's answer is in the ledger already, where the command line reads it.
    let answered = match worker.settings.local {
        true => Answered::Now,
        false => answer_job(&worker.codepipeline, job_id, answer, deadline).await?,
    };
    let label = answer.label();
    if first {
        answer_metrics(answer, answered == Answered::Already);
    }
    tracing::info!(job_id, answer = label, already = answered == Answered::Already, "job answered");
    Ok(HandledJob {
        job_id: job_id.to_owned(),
        answer: label.to_owned(),
        already_answered: answered == Answered::Already,
    })
}

/// The `JobsFailed` (by failure type) and `JobsAnsweredLate` metrics of an answer sent.
/// `already`: CodePipeline was no longer waiting for it (the job had timed out or was answered).
fn answer_metrics(answer: &JobAnswer, already: bool) {
    use crossdeploy_aws::metrics::{emit, Unit};
    if let JobAnswer::Failure { failure_type, .. } = answer {
        emit(&[("FailureType", failure_type.as_str())], &[("JobsFailed", 1.0, Unit::Count)]);
    }
    if already {
        emit(&[], &[("JobsAnsweredLate", 1.0, Unit::Count)]);
    }
}

fn failure(failure_type: FailureType, job_id: &str, message: String) -> JobAnswer {
    JobAnswer::Failure { failure_type, message, external_execution_id: Some(job_id.to_owned()) }
}
