//! Custom actions: PollForJobs per action type, AcknowledgeJob, and the jobs run concurrently.

use crate::process::handle_claimed;
use crate::{HandledJob, Invoke, Worker, WorkerError, ANSWER_MARGIN};
use crossdeploy_aws::invoke::{CLOCK_SKEW, INVOKE_SLACK};
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{Claim, PolledJob};
use crossdeploy_pipeline_job::{acknowledge_job, job_details, poll_for_jobs, Job, JobSource};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct PollReport {
    pub handled: Vec<HandledJob>,
}

/// The time a job needs at least when it starts: one whole updater invocation, and the time to
/// record and send its answer. A job is polled and acknowledged only with this much left.
pub fn time_for_a_job<I: Invoke>(worker: &Worker<I>) -> Duration {
    worker.settings.updater_slice.max(worker.settings.min_slice)
        + INVOKE_SLACK
        + CLOCK_SKEW
        + ANSWER_MARGIN
        + Duration::from_secs(5)
}

/// Takes up the jobs this run polled before (Lambda retried it), then polls each provider for
/// no more jobs than the run can start now (again while it gives some and room is left), notes
/// them in the ledger, claims and acknowledges each, and processes them all at once. No job is polled and then left unacknowledged: what
/// CodePipeline does with such a job is not documented.
pub async fn poll_and_process<I: Invoke>(
    worker: Arc<Worker<I>>,
    providers: &[&str],
    deadline: Deadline,
    run_id: &str,
) -> Result<PollReport, WorkerError> {
    let ledger = worker.ledger.until(deadline);
    let mut jobs: Vec<(Job, bool)> = Vec::new();
    for polled in ledger.polled_jobs(run_id).await? {
        match job_details(&worker.codepipeline, &polled.job_id, deadline).await {
            Ok(details) => match Job::from_details(&details, &polled.provider, &polled.nonce) {
                Ok(job) => jobs.push((job, true)),
                Err(e) => {
                    tracing::error!(job_id = %polled.job_id, error = %e, "a job this run polled before cannot be read")
                }
            },
            Err(error) => tracing::warn!(job_id = %polled.job_id, %error, "a job this run polled before is gone"),
        }
    }
    if !jobs.is_empty() {
        tracing::info!(jobs = jobs.len(), "taking up the jobs this run polled before it was retried");
    }
    let mut first_error = None;
    let mut free = worker.settings.concurrency.max(1).saturating_sub(jobs.len());
    let mut tasks = tokio::task::JoinSet::new();
    // A job handed out twice to this run (CodePipeline documents no such thing) is taken once.
    let mut taken = std::collections::HashSet::new();
    for (job, polled_before) in jobs {
        taken.insert(job.id.clone());
        let (worker, run_id) = (worker.clone(), run_id.to_owned());
        tasks.spawn(async move { take_job(job, polled_before, worker, deadline, &run_id).await });
    }
    // Each provider is polled until this run has no room left or the provider gives no more
    // jobs: CodePipeline documents no largest batch, so a poll may give fewer than asked for.
    let mut providers = providers.iter().peekable();
    while let Some(provider) = providers.peek().copied() {
        if free == 0 {
            break;
        }
        // Before each poll: a job polled now must still have time for one updater invocation.
        if deadline.remaining() < time_for_a_job(&worker) {
            tracing::info!("too little time left to start a job; polling no more");
            break;
        }
        // A poll still unanswered at the deadline is dropped: nothing polled, as far as this run knows.
        let poll =
            tokio::time::timeout_at(deadline.instant(), poll_for_jobs(&worker.codepipeline, provider, free as i32));
        let Ok(polled) = poll.await else {
            tracing::warn!(provider, "PollForJobs did not answer before the deadline");
            break;
        };
        let polled = match polled {
            Ok(polled) if !polled.is_empty() => polled,
            Ok(_) => {
                providers.next();
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "polling failed");
                first_error.get_or_insert(WorkerError::Poll(e));
                providers.next();
                continue;
            }
        };
        tracing::info!(provider, jobs = polled.len(), "polled");
        let notes: Vec<PolledJob> = polled
            .iter()
            .filter_map(|j| match &j.source {
                JobSource::Poll { nonce, provider } => {
                    Some(PolledJob { job_id: j.id.clone(), provider: provider.clone(), nonce: nonce.clone() })
                }
                JobSource::Invoke | JobSource::Local => None,
            })
            .collect();
        if let Err(e) = ledger.record_polled(run_id, &notes).await {
            tracing::error!(error = %e, "could not note the polled jobs; a retry of this run will not find them");
        }
        free = free.saturating_sub(polled.len());
        // Started at once: a further poll does not hold them up.
        for job in polled {
            if !taken.insert(job.id.clone()) {
                tracing::warn!(job_id = %job.id, "a job polled twice by one run is taken once");
                continue;
            }
            let (worker, run_id) = (worker.clone(), run_id.to_owned());
            tasks.spawn(async move { take_job(job, false, worker, deadline, &run_id).await });
        }
    }
    let mut report = PollReport::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(Some(handled))) => report.handled.push(handled),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a polled job could not be handled");
                first_error.get_or_insert(e);
            }
            Err(join) => tracing::error!(error = %join, "a polled job's task ended abnormally"),
        }
    }
    match first_error {
        Some(e) if report.handled.is_empty() => Err(e),
        _ => Ok(report),
    }
}

/// One polled job: claimed in the ledger, acknowledged, processed and answered.
async fn take_job<I: Invoke>(
    job: Job,
    polled_before: bool,
    worker: Arc<Worker<I>>,
    deadline: Deadline,
    run_id: &str,
) -> Result<Option<HandledJob>, WorkerError> {
    let JobSource::Poll { nonce, provider } = &job.source else { return Ok(None) };
    let ledger = worker.ledger.until(deadline);
    let claimed = match ledger.claim_job(&job.id, run_id, deadline.remaining() + ANSWER_MARGIN).await? {
        Claim::Taken => {
            tracing::warn!(job_id = %job.id, "a polled job is claimed by another run; leaving it");
            return Ok(None);
        }
        Claim::Answered(earlier) => {
            return Ok(Some(crate::process::resend(&worker, &job.id, earlier, deadline).await?));
        }
        Claim::Claimed { since_ms, retried } => (since_ms, retried),
    };
    if !acknowledge_job(&worker.codepipeline, provider, &job.id, nonce, polled_before, deadline).await? {
        return Ok(None);
    }
    handle_claimed(job, worker, deadline, run_id, claimed).await.map(Some)
}
