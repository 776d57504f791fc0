//! Custom actions: PollForJobs per action type, AcknowledgeJob, and the jobs run concurrently.

use crate::{handle_job, HandledJob, Invoke, Worker, WorkerError};
use crossdeploy_aws::Deadline;
use crossdeploy_pipeline_job::{acknowledge_job, poll_for_jobs, JobSource};
use std::sync::Arc;
use std::time::Duration;

/// A job is started only with at least this much time left; otherwise it stays queued for the next run.
const MIN_TIME_FOR_A_JOB: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct PollReport {
    pub handled: Vec<HandledJob>,
}

/// Polls each provider, acknowledges each job it will process, and processes them at most
/// `settings.concurrency` at a time. A job left unacknowledged is handed out again later.
pub async fn poll_and_process<I: Invoke>(
    worker: Arc<Worker<I>>,
    providers: &[&str],
    deadline: Deadline,
    run_id: &str,
) -> Result<PollReport, WorkerError> {
    let mut jobs = Vec::new();
    for provider in providers {
        let polled = poll_for_jobs(&worker.codepipeline, provider, worker.settings.batch_size).await?;
        tracing::info!(provider, jobs = polled.len(), "polled");
        jobs.extend(polled);
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(worker.settings.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let (worker, limit, run_id) = (worker.clone(), limit.clone(), run_id.to_owned());
        tasks.spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else { return Ok(None) };
            if deadline.remaining() < MIN_TIME_FOR_A_JOB {
                tracing::info!(job_id = %job.id, "too little time left; the job stays queued for the next run");
                return Ok(None);
            }
            let JobSource::Poll { nonce, provider } = &job.source else { return Ok(None) };
            if !acknowledge_job(&worker.codepipeline, provider, &job.id, nonce).await? {
                return Ok(None);
            }
            handle_job(job, worker, deadline, &run_id).await
        });
    }
    let mut report = PollReport::default();
    let mut first_error = None;
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
