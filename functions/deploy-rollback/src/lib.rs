//! deploy-rollback: puts back what a failed pipeline stage, an alarm in its bake window, or a
//! direct request condemns.
//!
//! Triggers (EventBridge): "CodePipeline Action Execution State Change" FAILED → the
//! deployments crossdeploy made in that stage of that execution; "CloudWatch Alarm State
//! Change" to ALARM, forwarded from a target account → per target, the latest deployment the
//! alarm guarded, if within its bake window; "ECS Deployment State Change"
//! SERVICE_DEPLOYMENT_FAILED → recorded (ECS's circuit breaker rolled back already) and
//! reported. Or a direct request naming a target.
//!
//! For each condemned deployment it reads the ledger (what was deployed, what stood before),
//! claims the rollback there (conditional write: the same event twice, or two events for one
//! deployment, restore once), takes the target's lease, asks the right updater to restore —
//! the updater leaves alone a target no longer on what crossdeploy deployed — and records how
//! it ended.

mod choose;
mod event;

pub use choose::{choose, condemned_by_alarm, ecs_failure_record, left_changes, Choice};
pub use event::{parse_time, read_event, BadEvent, Trigger};

use aws_config::SdkConfig;
use crossdeploy_aws::invoke::{invoke_until, Invoke, Invoked, Updaters};
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{
    now_millis, now_secs, DeploymentRecord, Lease, LeaseHolder, Ledger, LedgerError, RollbackClaim, RollbackRecord,
    RollbackStatus, TargetParts, LEDGER_TABLE_ENV,
};
use crossdeploy_protocol::policy::{DeployPolicy, PolicyError};
use crossdeploy_protocol::{
    outputs, EcsRollback, LambdaRollback, Outcome, RoleArn, RollbackRequest, RollbackResult, RollbackSpec, Target,
    UpdaterRequest,
};
use serde::Serialize;
use std::time::Duration;

/// How long after a deployment finished an alarm still condemns it, in minutes (default 60).
pub const BAKE_WINDOW_ENV: &str = "CROSSDEPLOY_BAKE_WINDOW_MINUTES";
pub const DEFAULT_BAKE_WINDOW: Duration = Duration::from_secs(60 * 60);
/// The budget when the runtime gives no usable deadline.
pub const FALLBACK_BUDGET: Duration = Duration::from_secs(300);
/// Time kept back from the deadline to record the outcome.
pub const RECORD_MARGIN: Duration = Duration::from_secs(5);
/// How far back, before the bake window, an alarm looks for deployments that were still running.
const LONGEST_DEPLOYMENT: Duration = Duration::from_secs(24 * 3600);
/// How long past this run's deadline the target's lease holds, should the run die.
const LEASE_GRACE: Duration = Duration::from_secs(60);

/// How the function behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The region the function runs in: a direct request's default.
    pub region: String,
    pub bake_window: Duration,
    /// How long a rollback's claim (and the target's lease) holds if this run dies.
    pub claim_hold: Duration,
    /// Who may send direct requests (the deploy policy's `RollbackPrincipals`).
    pub direct: DirectRequests,
}

impl Settings {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            bake_window: DEFAULT_BAKE_WINDOW,
            claim_hold: Duration::from_secs(15 * 60),
            direct: DirectRequests::Anyone,
        }
    }
}

/// Who may send direct requests, from the deploy policy (`CROSSDEPLOY_DEPLOY_POLICY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectRequests {
    /// No policy, or one without `RollbackPrincipals`: whoever IAM lets invoke the function.
    Anyone,
    /// Only the principals the policy names, through the function URL.
    Policy(std::sync::Arc<DeployPolicy>),
    /// The policy cannot be read: every direct request is refused, saying why (events are still handled).
    Unreadable(PolicyError),
}

impl DirectRequests {
    pub fn from_env() -> Self {
        match DeployPolicy::from_env() {
            Ok(Some(policy)) if policy.rollback_principals.is_some() => {
                DirectRequests::Policy(std::sync::Arc::new(policy))
            }
            Ok(_) => DirectRequests::Anyone,
            Err(e) => DirectRequests::Unreadable(e),
        }
    }

    /// Whether a direct request signed by `sent_by` (`None`: not known) may roll back.
    pub fn check(&self, sent_by: Option<&str>) -> Result<(), String> {
        match self {
            DirectRequests::Anyone => Ok(()),
            DirectRequests::Policy(p) => p.may_roll_back(sent_by),
            DirectRequests::Unreadable(e) => Err(format!("{e}; direct rollback requests are refused until then")),
        }
    }
}

/// Clients and settings built once per cold start.
pub struct Rollback<I> {
    pub ledger: Ledger,
    pub invoker: I,
    pub updaters: Updaters,
    pub settings: Settings,
}

/// One run: the function's clients, and the ledger retrying transient faults until the run's deadline.
struct Run<'a, I> {
    base: &'a Rollback<I>,
    ledger: Ledger,
}

impl<I> std::ops::Deref for Run<'_, I> {
    type Target = Rollback<I>;
    fn deref(&self) -> &Rollback<I> {
        self.base
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{LEDGER_TABLE_ENV} is not set: deploy-rollback needs its ledger table")]
    NoLedgerTable,
    #[error("{BAKE_WINDOW_ENV} is {0:?}: give a whole number of minutes, at least 1")]
    BadBakeWindow(String),
}

impl Rollback<aws_sdk_lambda::Client> {
    pub fn from_config(config: &SdkConfig) -> Result<Self, ConfigError> {
        let table = std::env::var(LEDGER_TABLE_ENV).ok().filter(|t| !t.is_empty()).ok_or(ConfigError::NoLedgerTable)?;
        let mut settings =
            Settings::new(config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_owned()));
        if let Some(v) = std::env::var(BAKE_WINDOW_ENV).ok().filter(|v| !v.trim().is_empty()) {
            settings.bake_window = parse_bake_window(&v)?;
        }
        settings.direct = DirectRequests::from_env();
        Ok(Self {
            ledger: Ledger::new(aws_sdk_dynamodb::Client::new(config), table),
            invoker: aws_sdk_lambda::Client::new(config),
            updaters: Updaters::from_env(),
            settings,
        })
    }
}

pub fn parse_bake_window(v: &str) -> Result<Duration, ConfigError> {
    match v.trim().parse::<u64>() {
        Ok(m) if (1..=7 * 24 * 60).contains(&m) => Ok(Duration::from_secs(m * 60)),
        _ => Err(ConfigError::BadBakeWindow(v.to_owned())),
    }
}

/// What the function did (its return value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub trigger: String,
    pub rollbacks: Vec<TargetReport>,
}

/// One condemned deployment, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetReport {
    pub deployment_id: String,
    pub target: String,
    pub result: Handled,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Handled {
    /// The updater put the target back.
    Restored,
    /// The target ran what stood before already.
    AlreadyRestored,
    /// Someone deployed since (per the ledger or the target itself), or the target is busy.
    LeftAlone,
    /// An earlier event (or run) handled this deployment's rollback.
    HandledBefore,
    /// ECS rolled the service back itself; recorded.
    RolledBackByEcs,
    /// Nothing to roll back (failed without changing the target, still running, or first deployment).
    NotApplicable,
    /// Still running when its stage failed: marked in the ledger, its worker rolls it back when it ends.
    Pending,
    /// The rollback failed; the claim is open for a later attempt.
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(transparent)]
    BadEvent(#[from] BadEvent),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    NothingRecorded(String),
    /// A direct request from someone the deploy policy does not name (or who is unknown).
    #[error("{0}")]
    NotAllowed(String),
    /// Some rollbacks failed: the invocation fails, so EventBridge retries it (then its DLQ).
    #[error("{failed} of {total} rollbacks failed ({trigger}): {messages}")]
    Failed { trigger: String, failed: usize, total: usize, messages: String },
}

impl From<RollbackError> for lambda_runtime::Diagnostic {
    fn from(e: RollbackError) -> Self {
        let error_type = match &e {
            RollbackError::BadEvent(_) => "crossdeploy.BadEvent",
            RollbackError::Ledger(_) => "crossdeploy.LedgerFailed",
            RollbackError::NothingRecorded(_) => "crossdeploy.NothingRecorded",
            RollbackError::NotAllowed(_) => "crossdeploy.NotAllowed",
            RollbackError::Failed { .. } => "crossdeploy.RollbackFailed",
        };
        lambda_runtime::Diagnostic { error_type: error_type.to_owned(), error_message: e.to_string() }
    }
}

/// Handles one event or direct request. `request_id` (the Lambda request id) names this run.
pub async fn handle<I: Invoke>(
    event: serde_json::Value,
    rb: &Rollback<I>,
    deadline: Deadline,
    request_id: &str,
) -> Result<Report, RollbackError> {
    let trigger = match read_event(&event, &rb.settings.region, request_id) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "refused an event");
            return Err(e.into());
        }
    };
    // Who may ask, before anything is read or changed.
    if let Trigger::Direct { sent_by, target, .. } = &trigger {
        if let Err(why) = rb.settings.direct.check(sent_by.as_deref()) {
            tracing::error!(%target, sent_by = sent_by.as_deref().unwrap_or("unknown"), %why, "refused a direct request");
            return Err(RollbackError::NotAllowed(why));
        }
    }
    let described = trigger.describe();
    tracing::info!(trigger = %described, event_id = trigger.event_id(), "rollback triggered");
    let mut report = Report { trigger: described.clone(), rollbacks: Vec::new() };
    let rb = &Run { base: rb, ledger: rb.ledger.until(deadline) };
    match &trigger {
        Trigger::Ignored(why) => tracing::info!(%why, "nothing to roll back"),
        Trigger::ActionFailed { pipeline, execution_id, stage, .. } => {
            let records = rb.ledger.deployments_in_stage(pipeline, execution_id, stage).await?;
            if records.is_empty() {
                tracing::info!(%pipeline, %execution_id, %stage, "crossdeploy deployed nothing in this stage");
            }
            for r in &records {
                report.rollbacks.push(roll_back(rb, r, &trigger, None, request_id, deadline).await?);
            }
        }
        Trigger::Alarm { account, region, alarm, time_ms, .. } => {
            let window = rb.settings.bake_window;
            let since = time_ms.saturating_sub((window + LONGEST_DEPLOYMENT).as_millis() as u64);
            let records = rb.ledger.deployments_in_account(account, region, since).await?;
            let (condemned, passed) = condemned_by_alarm(&records, alarm, *time_ms, window);
            for why in &passed {
                tracing::info!(%alarm, %why, "not rolled back");
            }
            if condemned.is_empty() && passed.is_empty() {
                tracing::info!(%alarm, %account, %region, "no crossdeploy deployment is guarded by this alarm");
            }
            for r in condemned {
                report.rollbacks.push(roll_back(rb, r, &trigger, None, request_id, deadline).await?);
            }
        }
        Trigger::EcsDeploymentFailed { account, region, cluster, service, deployment_id, reason, .. } => {
            let target = crossdeploy_ledger::TargetKey::ecs(account, region, cluster, service);
            let history = rb.ledger.deployments(&target).await?;
            match ecs_failure_record(&history, deployment_id) {
                None => tracing::info!(%target, %deployment_id, "not a deployment crossdeploy made; nothing recorded"),
                Some(r) => report.rollbacks.push(record_ecs_rollback(rb, r, &trigger, reason, request_id).await?),
            }
        }
        Trigger::Direct { target, restore, reason, .. } => {
            let history = rb.ledger.deployments(target).await?;
            // The latest deployment that left something of its own on the target: a success, or
            // a failure whose updater said the target did not serve what stood before.
            let latest = history
                .iter()
                .find(|r| r.status != crossdeploy_ledger::DeploymentStatus::InProgress && left_changes(r));
            let Some(latest) = latest else {
                return Err(RollbackError::NothingRecorded(format!(
                    "the ledger {} holds no successful crossdeploy deployment of {target}: there is nothing crossdeploy can roll back ({reason})",
                    rb.ledger.table()
                )));
            };
            report.rollbacks.push(roll_back(rb, latest, &trigger, restore.as_deref(), request_id, deadline).await?);
        }
    }
    for r in &report.rollbacks {
        let result =
            serde_json::to_value(r.result).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        crossdeploy_aws::metrics::emit(
            &[("Trigger", trigger.kind()), ("Result", &result)],
            &[("Rollbacks", 1.0, crossdeploy_aws::metrics::Unit::Count)],
        );
    }
    let failed: Vec<_> = report.rollbacks.iter().filter(|r| r.result == Handled::Failed).collect();
    if !failed.is_empty() {
        return Err(RollbackError::Failed {
            trigger: described,
            failed: failed.len(),
            total: report.rollbacks.len(),
            messages: failed.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("; "),
        });
    }
    Ok(report)
}

/// This run's claim on a deployment's rollback, for `trigger`.
fn claim(trigger: &Trigger, request_id: &str, restored: Option<String>) -> RollbackRecord {
    RollbackRecord {
        status: RollbackStatus::InProgress,
        trigger: trigger.describe(),
        event_id: trigger.event_id().to_owned(),
        by: request_id.to_owned(),
        at: now_millis(),
        restored,
        message: None,
    }
}

fn target_report(r: &DeploymentRecord, result: Handled, message: String) -> TargetReport {
    match result {
        Handled::Failed => {
            tracing::error!(deployment_id = %r.deployment_id, target = %r.target, %message, "rollback failed")
        }
        Handled::LeftAlone => {
            tracing::warn!(deployment_id = %r.deployment_id, target = %r.target, %message, "left alone")
        }
        _ => {
            tracing::info!(deployment_id = %r.deployment_id, target = %r.target, result = ?result, %message, "rollback")
        }
    }
    TargetReport { deployment_id: r.deployment_id.clone(), target: r.target.to_string(), result, message }
}

/// One condemned deployment: choice, claim, lease, updater, record.
async fn roll_back<I: Invoke>(
    rb: &Run<'_, I>,
    condemned: &DeploymentRecord,
    trigger: &Trigger,
    restore: Option<&str>,
    request_id: &str,
    deadline: Deadline,
) -> Result<TargetReport, RollbackError> {
    let history = rb.ledger.deployments(&condemned.target).await?;
    let alive = is_alive(rb, condemned).await?;
    // Ok: what to restore over what; Err: why the target is left alone.
    let work = match choose(condemned, &history, restore, alive) {
        Choice::NotApplicable(why) => return Ok(target_report(condemned, Handled::NotApplicable, why)),
        Choice::StillRunning(why) => {
            if !matches!(trigger, Trigger::ActionFailed { .. }) {
                return Ok(target_report(condemned, Handled::NotApplicable, why));
            }
            // An action of its stage failed while it ran: its worker rolls it back when it ends.
            let pending = RollbackRecord { status: RollbackStatus::Pending, ..claim(trigger, request_id, None) };
            if rb.ledger.condemn_in_progress(condemned, &pending).await? {
                let message = format!(
                    "deployment {} of {} was still running when {}: it is rolled back as soon as it ends",
                    condemned.deployment_id,
                    condemned.target,
                    trigger.describe()
                );
                return Ok(target_report(condemned, Handled::Pending, message));
            }
            // It ended meanwhile: judge it as it ended. Still running, it was condemned (or
            // handled) by another event already.
            let Some(ended) = rb.ledger.deployment(condemned).await? else {
                let message = format!("deployment {} is no longer in the ledger", condemned.deployment_id);
                return Ok(target_report(condemned, Handled::NotApplicable, message));
            };
            if ended.status == crossdeploy_ledger::DeploymentStatus::InProgress {
                let how = ended
                    .rollback
                    .as_ref()
                    .map(|r| format!("{}, {}", r.status.as_str(), r.trigger))
                    .unwrap_or_default();
                let message =
                    format!("deployment {} is still running and was condemned before ({how})", ended.deployment_id);
                return Ok(target_report(condemned, Handled::HandledBefore, message));
            }
            return Box::pin(roll_back(rb, &ended, trigger, restore, request_id, deadline)).await;
        }
        Choice::LeftAlone(why) => Err(why),
        Choice::Restore { restore, deployed } => Ok((restore, deployed)),
        Choice::RestoreByMark => Ok((String::new(), String::new())),
    };
    let claim = claim(trigger, request_id, None);
    match rb.ledger.claim_rollback(condemned, &claim, rb.settings.claim_hold).await? {
        RollbackClaim::Claimed => {}
        RollbackClaim::Taken(Some(before)) => {
            let message = format!(
                "deployment {} was handled before ({}, {}): {}",
                condemned.deployment_id,
                before.status.as_str(),
                before.trigger,
                before.message.unwrap_or_default()
            );
            return Ok(target_report(condemned, Handled::HandledBefore, message));
        }
        RollbackClaim::Taken(None) => {
            let message = format!("deployment {} is no longer in the ledger", condemned.deployment_id);
            return Ok(target_report(condemned, Handled::NotApplicable, message));
        }
    }
    let (status, handled, restored, message) = match work {
        Err(why) => (RollbackStatus::LeftAlone, Handled::LeftAlone, None, why),
        Ok((restore, deployed)) => restore_target(rb, condemned, trigger, &restore, &deployed, deadline).await,
    };
    let done = RollbackRecord { status, restored, message: Some(message.clone()), at: now_millis(), ..claim };
    rb.ledger.finish_rollback(condemned, &done).await?;
    Ok(target_report(condemned, handled, message))
}

/// Whether an in-progress deployment's run still holds its target (else it died: its lease
/// lapsed or passed on, and what it recorded is all there is).
async fn is_alive<I: Invoke>(rb: &Run<'_, I>, record: &DeploymentRecord) -> Result<bool, RollbackError> {
    if record.status != crossdeploy_ledger::DeploymentStatus::InProgress {
        return Ok(false);
    }
    Ok(rb
        .ledger
        .lease_holder(&record.target)
        .await?
        .is_some_and(|h| h.deployment_id == record.deployment_id && h.until >= now_secs()))
}

/// Handles one invocation as Lambda hands it over: an event or direct request (answered with the
/// report, or failing), or a request to the function URL, answered as an HTTP response: 200 with
/// the report, or 400 (bad request), 403 (not allowed), 404 (nothing recorded), 500 (a rollback
/// failed), 503 (the ledger failed), each with `{"Error", "Message"}`.
pub async fn handle_invocation<I: Invoke>(
    event: serde_json::Value,
    rb: &Rollback<I>,
    deadline: Deadline,
    request_id: &str,
) -> Result<serde_json::Value, RollbackError> {
    let through_url = event.get("requestContext").is_some();
    // Boxed: the rollback's future is deep, and rustc's layout of the runtime's future must stay bounded.
    let result = Box::pin(handle(event, rb, deadline, request_id)).await;
    if !through_url {
        return result.map(|report| serde_json::to_value(report).unwrap_or_default());
    }
    let (status, body) = match result {
        Ok(report) => (200, serde_json::to_value(report).unwrap_or_default()),
        Err(e) => {
            let status = match &e {
                RollbackError::BadEvent(_) => 400,
                RollbackError::NotAllowed(_) => 403,
                RollbackError::NothingRecorded(_) => 404,
                RollbackError::Failed { .. } => 500,
                RollbackError::Ledger(_) => 503,
            };
            let kind = lambda_runtime::Diagnostic::from(e);
            (status, serde_json::json!({"Error": kind.error_type, "Message": kind.error_message}))
        }
    };
    Ok(serde_json::json!({
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body.to_string(),
    }))
}

/// The target's lease, then the updater's guarded restore.
async fn restore_target<I: Invoke>(
    rb: &Run<'_, I>,
    condemned: &DeploymentRecord,
    trigger: &Trigger,
    restore: &str,
    deployed: &str,
    deadline: Deadline,
) -> (RollbackStatus, Handled, Option<String>, String) {
    let failed = |m: String| (RollbackStatus::Failed, Handled::Failed, None, m);
    let request = match rollback_request(condemned, trigger, restore, deployed) {
        Ok(r) => r,
        Err(m) => return failed(m),
    };
    let updater = match &request.spec {
        RollbackSpec::Lambda(_) => (&rb.updaters.lambda, crossdeploy_aws::invoke::LAMBDA_UPDATER_ENV),
        RollbackSpec::Ecs(_) => (&rb.updaters.ecs, crossdeploy_aws::invoke::ECS_UPDATER_ENV),
    };
    let Some(updater) = updater.0.clone() else {
        return failed(format!("deploy-rollback has no updater for {}: set {}", condemned.target, updater.1));
    };
    let holder = LeaseHolder {
        deployment_id: request.request_id.clone(),
        pipeline: condemned.pipeline.pipeline_name.clone(),
        execution_id: condemned.pipeline.execution_id.clone(),
        job_id: None,
        since: now_secs(),
        until: 0,
        // Vouching for no request yet: each invocation is vouched for as it is sent.
        request: None,
    };
    let until = deadline.epoch_millis() / 1000 + LEASE_GRACE.as_secs();
    match rb.ledger.acquire_lease(&condemned.target, &holder, until).await {
        Err(e) => return failed(e.to_string()),
        // Its own run still holds the target (finishing up, or about to roll it back itself):
        // not done, and not final: a retry (EventBridge's) finds the target free.
        Ok(Lease::HeldBy(other)) if other.deployment_id == condemned.deployment_id => {
            return failed(format!(
                "{} is still held by deployment {} itself (finishing up): retry once its lease is free",
                condemned.target, condemned.deployment_id
            ));
        }
        Ok(Lease::HeldBy(other)) => {
            let why = format!(
                "{} is being deployed by {other}: a deployment is under way, so it is left alone",
                condemned.target
            );
            return (RollbackStatus::LeftAlone, Handled::LeftAlone, None, why);
        }
        Ok(Lease::Acquired) => {}
    }
    // The lease vouches for each invocation in turn (crossdeploy_ledger::check_origin).
    let vouch = |r: &UpdaterRequest| {
        let holder = LeaseHolder { request: r.fingerprint(), ..holder.clone() };
        async move {
            match rb.ledger.acquire_lease(&condemned.target, &holder, until).await {
                Ok(Lease::Acquired) => Ok(()),
                Ok(Lease::HeldBy(other)) => Err(format!("{} is held by {other}", condemned.target)),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let resolution = invoke_rollback(&rb.invoker, &updater, request.clone(), deadline.less(RECORD_MARGIN), vouch).await;
    if let Err(e) = rb.ledger.release_lease(&condemned.target, &request.request_id).await {
        tracing::error!(error = %e, target = %condemned.target, "could not release the lease; it expires on its own");
    }
    (resolution.status, resolution.handled, resolution.restored, resolution.message)
}

/// How a rollback request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub status: RollbackStatus,
    pub handled: Handled,
    /// What the target runs now, as the updater reported it.
    pub restored: Option<String>,
    pub message: String,
}

/// Has `updater` carry out `request`, with `deadline` as the last moment it may change the
/// target. Each invocation gets at most [`ROLLBACK_SLICE`] (written into the request); one Lambda
/// did not run (throttled) is tried again after a pause, and one whose answer was lost is waited
/// out to its deadline and run again (the updater's guard makes a second run find the target
/// restored), while `deadline` allows. Returns only once no updater is acting: a rollback that
/// could not be carried out is reported as failed (its claim stays open to a retry).
/// `vouch` records each invocation's request in the target's lease before it is sent (the
/// updater acts on nothing else); an `Err` from it means that invocation was not sent.
pub async fn invoke_rollback<I, V, Fut>(
    invoker: &I,
    updater: &str,
    request: RollbackRequest,
    deadline: Deadline,
    vouch: V,
) -> Resolution
where
    I: Invoke,
    V: Fn(&UpdaterRequest) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = None;
    let mut pause = std::time::Duration::from_millis(200);
    while deadline.remaining() > MIN_ROLLBACK_SLICE {
        let slice = deadline.at_most(ROLLBACK_SLICE);
        match invoke_rollback_once(invoker, updater, request.clone(), slice, &vouch).await {
            Attempt::Done(resolution) => return resolution,
            Attempt::Again(resolution, wait) => {
                last = Some(resolution);
                if wait {
                    tokio::time::sleep(pause.min(deadline.remaining())).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }
    last.unwrap_or(Resolution {
        status: RollbackStatus::Failed,
        handled: Handled::Failed,
        restored: None,
        message: format!("no time was left to have {updater} restore the target; retry"),
    })
}

/// Each rollback invocation lasts at most this long.
pub const ROLLBACK_SLICE: std::time::Duration = std::time::Duration::from_secs(30);
/// A rollback invocation is started only with this long left.
const MIN_ROLLBACK_SLICE: std::time::Duration = std::time::Duration::from_secs(8);

enum Attempt {
    Done(Resolution),
    /// Worth another try; `true`: after a pause (nothing ran).
    Again(Resolution, bool),
}

async fn invoke_rollback_once<I, V, Fut>(
    invoker: &I,
    updater: &str,
    mut request: RollbackRequest,
    deadline: Deadline,
    vouch: &V,
) -> Attempt
where
    I: Invoke,
    V: Fn(&UpdaterRequest) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    request.deadline_ms = Some(deadline.epoch_millis());
    let failed = |message: String| Resolution {
        status: RollbackStatus::Failed,
        handled: Handled::Failed,
        restored: None,
        message,
    };
    let target = match &request.spec {
        RollbackSpec::Lambda(l) => format!("alias {} of function {}", l.alias, l.function_name),
        RollbackSpec::Ecs(e) => format!("service {} in cluster {}", e.service_name, e.cluster_name),
    };
    let request = UpdaterRequest::Rollback(Box::new(request));
    if let Err(e) = vouch(&request).await {
        return Attempt::Again(failed(format!("{e}; nothing was changed: retry")), true);
    }
    match invoke_until(invoker, updater, &request, deadline).await {
        Invoked::NotRun(e) => Attempt::Again(failed(format!("{e}; nothing was changed: retry")), true),
        Invoked::Ended(e) | Invoked::Unknown(e) => Attempt::Again(
            failed(format!("{e}; the updater has stopped, but what it did is unknown: check {target} and retry")),
            false,
        ),
        Invoked::Answered(Outcome::Failed { failure_type, message, .. }) => {
            Attempt::Done(failed(format!("{}: {message}", failure_type.as_str())))
        }
        Invoked::Answered(Outcome::InProgress { summary, .. }) => {
            Attempt::Again(failed(format!("the updater answered InProgress to a rollback ({summary}); retry")), false)
        }
        Invoked::Answered(Outcome::Succeeded { summary, outputs }) => {
            let current = outputs.get(outputs::CURRENT).cloned();
            let done =
                |status, handled| Resolution { status, handled, restored: current.clone(), message: summary.clone() };
            Attempt::Done(match outputs.get(outputs::ROLLBACK_RESULT).and_then(|r| RollbackResult::parse(r)) {
                Some(RollbackResult::Restored) => done(RollbackStatus::Restored, Handled::Restored),
                Some(RollbackResult::AlreadyRestored) => {
                    done(RollbackStatus::AlreadyRestored, Handled::AlreadyRestored)
                }
                Some(RollbackResult::LeftAlone) => done(RollbackStatus::LeftAlone, Handled::LeftAlone),
                None => {
                    failed(format!("the updater {updater} answered a rollback without a RollbackResult: {summary}"))
                }
            })
        }
    }
}

/// The updater's request for restoring `restore` on the condemned deployment's target.
fn rollback_request(
    condemned: &DeploymentRecord,
    trigger: &Trigger,
    restore: &str,
    deployed: &str,
) -> Result<RollbackRequest, String> {
    rollback_request_for(condemned, &trigger.describe(), restore, deployed)
}

/// The updater's request for restoring `restore` over `deployed` on `condemned`'s target, for
/// `reason`. Its request id is `rollback-<deployment id>`: every attempt at it is the same holder.
/// Empty `restore` and `deployed`: a rollback by mark (see [`RollbackRequest::deployment_id`]).
pub fn rollback_request_for(
    condemned: &DeploymentRecord,
    reason: &str,
    restore: &str,
    deployed: &str,
) -> Result<RollbackRequest, String> {
    let role: RoleArn = condemned.role_arn.parse().map_err(|e| {
        format!(
            "deployment {} recorded role {:?}, which is not a role ARN: {e}",
            condemned.deployment_id, condemned.role_arn
        )
    })?;
    let parts = condemned.target.parts().ok_or_else(|| {
        format!("deployment {} names a target the ledger cannot read: {}", condemned.deployment_id, condemned.target)
    })?;
    let (spec, region) = match parts {
        TargetParts::Lambda { region, function, alias, .. } => (
            RollbackSpec::Lambda(LambdaRollback {
                function_name: function,
                alias,
                restore_version: restore.to_owned(),
                deployed_version: deployed.to_owned(),
            }),
            region,
        ),
        TargetParts::Ecs { region, cluster, service, .. } => (
            RollbackSpec::Ecs(EcsRollback {
                cluster_name: cluster,
                service_name: service,
                restore_task_definition: restore.to_owned(),
                deployed_task_definition: deployed.to_owned(),
            }),
            region,
        ),
    };
    Ok(RollbackRequest {
        request_id: format!("rollback-{}", condemned.deployment_id),
        target: Target { role_arn: role, region: Some(region) },
        spec,
        reason: reason.to_owned(),
        deadline_ms: None,
        deployment_id: Some(condemned.deployment_id.clone()),
    })
}

/// ECS rolled the service back itself: record it once on the deployment, and report it.
async fn record_ecs_rollback<I: Invoke>(
    rb: &Run<'_, I>,
    record: &DeploymentRecord,
    trigger: &Trigger,
    reason: &str,
    request_id: &str,
) -> Result<TargetReport, RollbackError> {
    let claim = claim(trigger, request_id, record.previous.clone());
    match rb.ledger.claim_rollback(record, &claim, rb.settings.claim_hold).await? {
        RollbackClaim::Claimed => {
            let message = format!(
                "ECS's circuit breaker failed the deployment and rolled {} back itself: {reason}",
                record.target
            );
            let done =
                RollbackRecord { status: RollbackStatus::RolledBackByEcs, message: Some(message.clone()), ..claim };
            rb.ledger.finish_rollback(record, &done).await?;
            Ok(target_report(record, Handled::RolledBackByEcs, message))
        }
        RollbackClaim::Taken(before) => {
            let message = match before {
                Some(b) => format!("recorded before ({}, {})", b.status.as_str(), b.trigger),
                None => "no longer in the ledger".to_owned(),
            };
            Ok(target_report(record, Handled::HandledBefore, format!("deployment {} {message}", record.deployment_id)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdeploy_aws::invoke::InvokeError;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Throttled `throttled` times, then restores.
    struct Throttled(AtomicU32, u32);

    impl Invoke for Throttled {
        async fn invoke(&self, function: &str, _: &UpdaterRequest) -> Result<Outcome, InvokeError> {
            if self.0.fetch_add(1, Ordering::SeqCst) < self.1 {
                return Err(InvokeError::Call {
                    function: function.to_owned(),
                    error: crossdeploy_aws::ErrorInfo {
                        code: Some("TooManyRequestsException".into()),
                        message: "Rate Exceeded.".into(),
                    },
                });
            }
            Ok(RollbackResult::Restored.outcome("restored".into(), "1"))
        }
    }

    fn request() -> RollbackRequest {
        RollbackRequest {
            request_id: "rollback-d".into(),
            target: Target {
                role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".parse().unwrap(),
                region: None,
            },
            spec: RollbackSpec::Lambda(LambdaRollback {
                function_name: "f".into(),
                alias: "live".into(),
                restore_version: "1".into(),
                deployed_version: "2".into(),
            }),
            reason: "test".into(),
            deadline_ms: None,
            deployment_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_rollback_is_tried_again_while_the_deadline_allows() {
        let invoker = Throttled(AtomicU32::new(0), 3);
        let r = invoke_rollback(
            &invoker,
            "u",
            request(),
            Deadline::after(Duration::from_secs(60)),
            |_: &UpdaterRequest| async { Ok(()) },
        )
        .await;
        assert_eq!((r.status, r.handled), (RollbackStatus::Restored, Handled::Restored), "{r:?}");
        assert_eq!(invoker.0.load(Ordering::SeqCst), 4);
        // Throttled until the deadline: failed, and open to a retry.
        let invoker = Throttled(AtomicU32::new(0), u32::MAX);
        let r = invoke_rollback(
            &invoker,
            "u",
            request(),
            Deadline::after(Duration::from_secs(20)),
            |_: &UpdaterRequest| async { Ok(()) },
        )
        .await;
        assert_eq!(r.status, RollbackStatus::Failed);
        assert!(r.message.contains("nothing was changed"), "{}", r.message);
    }

    /// Records what it is asked, in order, after what the vouching recorded.
    struct Recording(std::sync::Mutex<Vec<String>>);

    impl Invoke for Recording {
        async fn invoke(&self, _: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
            let UpdaterRequest::Rollback(r) = request else { panic!("a rollback only") };
            self.0.lock().unwrap().push(format!("invoked {:?} {:?}", r.deadline_ms, request.fingerprint()));
            Ok(RollbackResult::Restored.outcome("restored".into(), "1"))
        }
    }

    #[tokio::test]
    async fn each_rollback_invocation_carries_a_deadline_before_the_callers_and_is_vouched_for_first() {
        let seen = Recording(std::sync::Mutex::new(Vec::new()));
        let deadline = Deadline::after(Duration::from_secs(120));
        let vouch = |r: &UpdaterRequest| {
            seen.0.lock().unwrap().push(format!("vouched {:?}", r.fingerprint()));
            async { Ok(()) }
        };
        let r = invoke_rollback(&seen, "u", request(), deadline, vouch).await;
        assert_eq!(r.handled, Handled::Restored, "{r:?}");
        let log = seen.0.lock().unwrap().clone();
        assert_eq!(log.len(), 2, "{log:?}");
        let (vouched, invoked) = (&log[0], &log[1]);
        // The invocation's deadline: one slice, within the caller's.
        let ms: u64 = invoked.split(['(', ')']).nth(1).unwrap().parse().unwrap();
        assert!(ms <= deadline.epoch_millis() && ms > crossdeploy_aws::now_epoch_millis(), "{invoked}");
        // What was vouched for is exactly what was sent, deadline included.
        assert_eq!(vouched.trim_start_matches("vouched "), invoked.rsplit(' ').next().unwrap(), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollback_invocation_its_caller_could_not_vouch_for_is_never_sent() {
        let none = Recording(std::sync::Mutex::new(Vec::new()));
        let r = invoke_rollback(
            &none,
            "u",
            request(),
            Deadline::after(Duration::from_secs(20)),
            |_: &UpdaterRequest| async { Err("the ledger did not answer".to_owned()) },
        )
        .await;
        assert_eq!(r.status, RollbackStatus::Failed);
        assert!(
            r.message.contains("the ledger did not answer") && r.message.contains("nothing was changed"),
            "{}",
            r.message
        );
        assert!(none.0.lock().unwrap().is_empty());
    }

    #[test]
    fn the_bake_window_is_whole_minutes() {
        assert_eq!(parse_bake_window("90").unwrap(), Duration::from_secs(5400));
        for bad in ["0", "-1", "1h", "", "100000"] {
            assert!(parse_bake_window(bad).is_err(), "{bad}");
        }
    }
}
