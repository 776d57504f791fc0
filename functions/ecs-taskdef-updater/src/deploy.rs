//! The ECS deployment: image file -> new revision -> UpdateService -> the service deployment it
//! started, followed to its end (or, where ECS has no service deployments, the rollout read from
//! the service's deployments list).

use crate::images::ImageChange;
use crate::service::{assess, check_controller, describe_service, update_service, Rollout, ServiceRef};
use crate::service_deployment::{self as sd, is_ongoing, short_id, Lookup, Stop, View};
use crate::strategy::{self, Asked};
use crate::taskdef::{clone_into, replace_images, runs_images, DEPLOYMENT_TAG, PREVIOUS_TAG};
use crate::EcsError;
use aws_sdk_ecs::types::{ServiceDeploymentStatus, SortOrder, Tag, TaskDefinition, TaskDefinitionField};
use crossdeploy_alarms::firing_alarm;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};
use crossdeploy_protocol::{outputs, Outcome, Serving, Stands};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The alarms that gate a rollout, in the target account.
#[derive(Debug, Clone, Copy)]
pub struct Alarms<'a> {
    pub names: &'a [String],
    pub cloudwatch: &'a aws_sdk_cloudwatch::Client,
}

/// The longest time between two reads of a rollout.
pub const POLL: Duration = Duration::from_secs(10);
/// The first wait between two reads; each next wait doubles, up to [`POLL`].
pub const FIRST_POLL: Duration = Duration::from_secs(1);
/// Time kept before the deadline to put the service back when a rollout fails.
pub const RESTORE_RESERVE: Duration = Duration::from_secs(10);
/// A change of the service starts only with this long (besides [`RESTORE_RESERVE`]) before the deadline.
pub const MUTATION_MARGIN: Duration = Duration::from_secs(5);
/// How long a rollback ECS is doing (its own, or one crossdeploy asked for) is followed before
/// the deployment fails with the service's state unknown. The same 10 minutes a pipeline action
/// keeps for the deployment's end (crossdeploy_pipeline_job's DEPLOYMENT_RESERVE_MINUTES).
pub const ROLLBACK_LIMIT: Duration = Duration::from_secs(10 * 60);

fn time_to_change(deadline: Deadline) -> bool {
    deadline.remaining() >= MUTATION_MARGIN + RESTORE_RESERVE
}

/// What a deployment hands back to resume from when it must stop before the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Phase")]
pub enum EcsState {
    /// The service was updated; ECS is rolling the new revision out.
    FollowingRollout {
        #[serde(rename = "TaskDefinitionArn")]
        task_definition_arn: String,
        #[serde(rename = "PreviousTaskDefinitionArn")]
        previous_task_definition_arn: String,
        /// When following started (seconds since the epoch): TimeoutMinutes counts from here.
        #[serde(rename = "StartedAt")]
        started_at: u64,
        /// The ECS deployment followed, once known (a forced new deployment replaces it).
        #[serde(rename = "DeploymentId", default, skip_serializing_if = "Option::is_none")]
        deployment_id: Option<String>,
        /// The service deployment followed, once known.
        #[serde(rename = "ServiceDeploymentArn", default, skip_serializing_if = "Option::is_none")]
        service_deployment_arn: Option<String>,
        /// The service already ran these images, in a revision this deployment did not register:
        /// it changed nothing, and it never stops or updates back what it follows.
        #[serde(rename = "NotOurs", default, skip_serializing_if = "std::ops::Not::not")]
        not_ours: bool,
    },
    /// crossdeploy failed the deployment (an alarm, TimeoutMinutes) and stopped its service
    /// deployment with rollback: ECS rolls it back, and the failure is reported at its end.
    RollingBack {
        #[serde(rename = "TaskDefinitionArn")]
        task_definition_arn: String,
        #[serde(rename = "PreviousTaskDefinitionArn")]
        previous_task_definition_arn: String,
        #[serde(rename = "ServiceDeploymentArn")]
        service_deployment_arn: String,
        /// When crossdeploy failed it (seconds since the epoch): [`ROLLBACK_LIMIT`] counts from here.
        #[serde(rename = "StoppedAt")]
        stopped_at: u64,
        /// Whether ECS took the stop; `false`: it is sent (again) first. A stop whose answer was
        /// lost is sent again: stopping a deployment that is rolling back changes nothing.
        #[serde(rename = "StopTaken", default = "taken")]
        stop_taken: bool,
        /// Why crossdeploy failed the deployment: the job's failure message.
        #[serde(rename = "Reason")]
        reason: String,
    },
}

fn taken() -> bool {
    true
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The two sides of a deployment, and the service deployment moving the service between them.
#[derive(Debug, Clone)]
struct Sides {
    new: String,
    previous: String,
    service_deployment_arn: Option<String>,
}

impl Sides {
    fn stands(&self, serving: Serving, detail: String) -> Stands {
        Stands {
            previous: self.previous.clone(),
            deployed: self.new.clone(),
            serving,
            detail,
            service_deployment_arn: self.service_deployment_arn.clone(),
        }
    }

    fn with_arn(&self, arn: &str) -> Sides {
        Sides { service_deployment_arn: Some(arn.to_owned()), ..self.clone() }
    }
}

/// Waits between two reads: 1 s, then doubling up to [`POLL`], never into the last `room`.
struct Pace(Duration);

impl Pace {
    fn new() -> Self {
        Pace(FIRST_POLL)
    }

    async fn wait(&mut self, room: Duration) {
        tokio::time::sleep(self.0.min(room)).await;
        self.0 = (self.0 * 2).min(POLL);
    }
}

/// Moves the service to its current task definition with `changes` applied (and its deployment
/// configuration to what is `asked`), then follows the deployment. Registers nothing when the
/// service already runs exactly these images.
pub async fn deploy_images(
    s: &ServiceRef<'_>,
    changes: &[ImageChange],
    asked: &Asked<'_>,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let service = describe_service(s, deadline).await?;
    check_controller(s, &service)?;
    // Before anything changes: can the service deploy the way asked, within TimeoutMinutes?
    strategy::check(s, &service, asked)?;
    let configuration = strategy::configuration(&service, asked)?;
    strategy::check_bakes(s, configuration.as_ref().or(service.deployment_configuration()), timeout)?;
    if let Some(firing) = firing_alarm(alarms.cloudwatch, alarms.names, s.account, deadline).await? {
        return Err(EcsError::Rollout(format!(
            "alarm {} in account {} is in ALARM already ({}); nothing was deployed to {}. Deploy once it is OK",
            firing.name,
            s.account,
            firing.reason,
            s.describe()
        )));
    }
    let current = service
        .task_definition()
        .ok_or_else(|| EcsError::Configuration(format!("{} has no task definition", s.describe())))?
        .to_owned();
    let (td, tags) = describe_task_definition(s, &current, deadline).await?;
    let containers = replace_images(td.container_definitions(), changes)
        .map_err(|e| EcsError::Configuration(format!("{e} ({}, task definition {current})", s.describe())))?;

    if runs_images(td.container_definitions(), changes) {
        // What stood before is what the revision's tag records only if this deployment
        // registered it (an earlier attempt whose answer was lost); otherwise this deployment
        // changed nothing, and what runs stood before it.
        let tag = |key: &str| tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value());
        let ours = tag(DEPLOYMENT_TAG) == Some(s.deployment);
        let previous = if ours { tag(PREVIOUS_TAG).unwrap_or(&current).to_owned() } else { current.clone() };
        tracing::info!(service = s.service, task_definition = %current, "the service already runs these images; nothing registered");
        let state = EcsState::FollowingRollout {
            task_definition_arn: current.clone(),
            previous_task_definition_arn: previous,
            started_at: now_secs(),
            deployment_id: None,
            service_deployment_arn: None,
            not_ours: !ours,
        };
        return Ok(match follow_from(s, state, Some(service), timeout, alarms, deadline).await? {
            Outcome::Succeeded { outputs, .. } => Outcome::Succeeded {
                summary: format!("{} already runs these images on {current}; nothing changed", s.describe()),
                outputs,
            },
            other => other,
        });
    }

    // Before the first change: may the role make every call this deployment makes?
    if let Some(session) = s.session {
        let needed = needed_calls(&service, &td, alarms.names);
        crossdeploy_credentials::preflight(session, &needed, deadline).await?;
    }
    if !time_to_change(deadline) {
        return Ok(Outcome::InProgress {
            summary: format!("about to register a new task definition for {}", s.describe()),
            percent_complete: 5,
            state: serde_json::Value::Null,
            stands: None,
        });
    }
    let new_arn = register(s, &td, &tags, containers, &current, deadline).await?;
    tracing::info!(service = s.service, task_definition = %new_arn, previous = %current, strategy = ?asked.strategy, "registered; updating the service");
    let sides = Sides { new: new_arn.clone(), previous: current.clone(), service_deployment_arn: None };
    let updated = match update_service(s, &new_arn, configuration.as_ref(), deadline).await {
        Ok(updated) => updated,
        // ECS refused the update: nothing of it stands (the revision registered is unused),
        // unless an earlier attempt of the same call was applied and its answer lost.
        Err(e @ EcsError::Configuration(_)) => match describe_service(s, deadline).await {
            Ok(now) if now.task_definition() == Some(new_arn.as_str()) => crate::Updated::default(),
            Ok(_) => return Err(e),
            Err(read) => {
                let detail = format!(
                    "{} may have been updated to {new_arn} ({e}), and could not be read: check it",
                    s.describe()
                );
                return Err(EcsError::left(read, sides.stands(Serving::Unknown, detail)));
            }
        },
        // Sent, perhaps applied, its answer lost: what the service runs now is unknown.
        Err(e) => {
            let detail = format!("{} may have been updated to {new_arn}: check it", s.describe());
            return Err(EcsError::left(e, sides.stands(Serving::Unknown, detail)));
        }
    };
    let state = EcsState::FollowingRollout {
        task_definition_arn: new_arn.clone(),
        previous_task_definition_arn: current.clone(),
        started_at: now_secs(),
        deployment_id: updated.deployment_id,
        service_deployment_arn: updated.service_deployment_arn,
        not_ours: false,
    };
    follow(s, state, timeout, alarms, deadline).await
}

/// Follows the deployment of `state` until it succeeds, fails or is rolled back (an error with
/// ECS's reasons and the service's latest events), outlives `timeout` or trips an alarm (stopped
/// with rollback, and that rollback followed), or the deadline comes near (InProgress, with the
/// state to resume from).
pub async fn follow(
    s: &ServiceRef<'_>,
    state: EcsState,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    follow_from(s, state, None, timeout, alarms, deadline).await
}

/// [`follow`], starting from a service just described (`None`: describe it when needed).
async fn follow_from(
    s: &ServiceRef<'_>,
    state: EcsState,
    described: Option<aws_sdk_ecs::types::Service>,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    match state {
        EcsState::RollingBack {
            task_definition_arn,
            previous_task_definition_arn,
            service_deployment_arn,
            stopped_at,
            stop_taken,
            reason,
        } => {
            let sides = Sides {
                new: task_definition_arn,
                previous: previous_task_definition_arn,
                service_deployment_arn: Some(service_deployment_arn.clone()),
            };
            let stopping = Stopping { arn: &service_deployment_arn, since: stopped_at, reason: &reason };
            if stop_taken {
                follow_rollback(s, &sides, &stopping, deadline).await
            } else {
                stop_and_follow(s, &sides, &stopping, deadline).await
            }
        }
        EcsState::FollowingRollout {
            task_definition_arn,
            previous_task_definition_arn,
            started_at,
            deployment_id,
            service_deployment_arn,
            not_ours,
        } => {
            let sides = Sides {
                new: task_definition_arn,
                previous: previous_task_definition_arn,
                service_deployment_arn: service_deployment_arn.clone(),
            };
            let arn = match service_deployment_arn {
                Some(arn) => Some(arn),
                // ECS did not name it (a retry that found the service updated already, or an
                // UpdateService answer without it): the newest deploying this revision. A
                // revision this deployment registered is its own (no one else deploys it) and
                // is at most a day old: CodePipeline ends an action within 24 hours.
                None => {
                    match sd::find(s, &sides.new, since(started_at, not_ours), deadline.less(RESTORE_RESERVE)).await {
                        Ok(Lookup::Found(found)) => found,
                        Ok(Lookup::Absent(code)) => {
                            sd::note_absent(s, &code);
                            None
                        }
                        Err(e) => {
                            let detail =
                                format!("the deployment of {} to {} could not be read", sides.new, s.describe());
                            return Err(EcsError::left(e, sides.stands(Serving::Unknown, detail)));
                        }
                    }
                }
            };
            let followed = Followed { sides, started_at, deployment_id, not_ours };
            match arn {
                Some(arn) => follow_service_deployment(s, followed, arn, timeout, alarms, deadline).await,
                None => follow_deployments_list(s, followed, described, timeout, alarms, deadline).await,
            }
        }
    }
}

/// A deployment being followed.
struct Followed {
    sides: Sides,
    started_at: u64,
    /// The id in the service's deployments list, once known.
    deployment_id: Option<String>,
    /// Not this deployment's revision: followed, never stopped or updated back.
    not_ours: bool,
}

/// Where to look for a deployment's service deployment from: a day before it started, for a
/// revision it registered; all of ECS's history (90 days) otherwise.
fn since(started_at: u64, not_ours: bool) -> Option<aws_smithy_types::DateTime> {
    (!not_ours).then(|| aws_smithy_types::DateTime::from_secs(started_at.saturating_sub(25 * 3600) as i64))
}

/// A stop crossdeploy decided: of which service deployment, since when, and why.
struct Stopping<'a> {
    arn: &'a str,
    since: u64,
    reason: &'a str,
}

/// What the service runs after a rollback ended: `Previous` only if it runs what stood before
/// this deployment (ECS rolls back to the last deployment that succeeded, which may be another).
async fn after_rollback(s: &ServiceRef<'_>, sides: &Sides, what: String, deadline: Deadline) -> (Stands, String) {
    match describe_service(s, deadline).await {
        Ok(service) => {
            let runs = service.task_definition().unwrap_or("no task definition").to_owned();
            let events = events_of(&service);
            if runs == sides.previous {
                (sides.stands(Serving::Previous, format!("{} runs {runs} again: {what}", s.describe())), events)
            } else {
                let detail = format!("{} runs {runs}, not {} that stood before: {what}", s.describe(), sides.previous);
                (sides.stands(Serving::Unknown, detail), events)
            }
        }
        Err(e) => {
            let detail = format!("{what}; {} could not be read ({e}): check it", s.describe());
            (sides.stands(Serving::Unknown, detail), "the service's events could not be read".to_owned())
        }
    }
}

/// The service's latest events, in a few words for a failure message.
async fn latest_events(s: &ServiceRef<'_>, deadline: Deadline) -> String {
    match describe_service(s, deadline).await {
        Ok(service) => events_of(&service),
        Err(e) => format!("the service's events could not be read: {e}"),
    }
}

fn events_of(service: &aws_sdk_ecs::types::Service) -> String {
    let events: Vec<&str> = service.events().iter().take(3).filter_map(|e| e.message()).collect();
    if events.is_empty() {
        "no service events".to_owned()
    } else {
        events.join(" | ")
    }
}

/// Follows the service deployment `arn`.
async fn follow_service_deployment(
    s: &ServiceRef<'_>,
    followed: Followed,
    arn: String,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let work = deadline.less(RESTORE_RESERVE);
    let mut arn = arn;
    let mut pace = Pace::new();
    loop {
        let sides = followed.sides.with_arn(&arn);
        let (new, previous) = (sides.new.as_str(), sides.previous.as_str());
        let d = match sd::describe(s, &arn, work).await {
            Ok(Lookup::Found(d)) => d,
            Ok(Lookup::Absent(code)) => {
                sd::note_absent(s, &code);
                return follow_deployments_list(s, followed, None, timeout, alarms, deadline).await;
            }
            Err(e) => {
                let detail = format!("the service deployment {arn} of {new} to {} could not be read", s.describe());
                return Err(EcsError::left(e, sides.stands(Serving::Unknown, detail)));
            }
        };
        let view = View::of(&d);
        match &view.status {
            ServiceDeploymentStatus::Successful => {
                return Ok(succeeded(s, &sides, &view, followed.deployment_id.clone(), work).await);
            }
            ServiceDeploymentStatus::RollbackSuccessful => {
                let what = format!("ECS rolled service deployment {} back", view.id());
                let (stands, events) = after_rollback(s, &sides, what, work).await;
                let error = EcsError::Rollout(format!(
                    "the deployment of {new} to {} was rolled back by ECS: {} (service events: {events})",
                    s.describe(),
                    view.failure(),
                ));
                return Err(EcsError::left(error, stands));
            }
            ServiceDeploymentStatus::RollbackFailed => {
                let error = EcsError::Rollout(format!(
                    "the deployment of {new} to {} failed and ECS could not roll it back: {} (service events: {})",
                    s.describe(),
                    view.failure(),
                    latest_events(s, work).await
                ));
                let detail =
                    format!("ECS's rollback of service deployment {} failed: check {}", view.id(), s.describe());
                return Err(EcsError::left(error, sides.stands(Serving::Unknown, detail)));
            }
            ServiceDeploymentStatus::Stopped => {
                let service = match describe_service(s, work).await {
                    Ok(service) => service,
                    Err(e) => {
                        let detail =
                            format!("service deployment {} was stopped; {} could not be read", view.id(), s.describe());
                        return Err(EcsError::left(e, sides.stands(Serving::Unknown, detail)));
                    }
                };
                // Replaced by a newer deployment of this very revision (a forced new deployment): follow that one.
                if let Some(current) = service.current_service_deployment().filter(|c| *c != arn) {
                    if service.task_definition() == Some(new) {
                        tracing::info!(service = s.service, stopped = %arn, current, "replaced by a newer deployment of the same revision; following it");
                        arn = current.to_owned();
                        continue;
                    }
                }
                let error = EcsError::Rollout(format!(
                    "the deployment of {new} to {} was stopped: {} (service events: {})",
                    s.describe(),
                    view.failure(),
                    events_of(&service)
                ));
                let runs = service.task_definition().unwrap_or("another task definition");
                let serving = if runs == previous { Serving::Previous } else { Serving::Unknown };
                let detail = format!("{} runs {runs}", s.describe());
                return Err(EcsError::left(error, sides.stands(serving, detail)));
            }
            status
                if is_ongoing(status)
                    && !matches!(status, ServiceDeploymentStatus::Pending | ServiceDeploymentStatus::InProgress) =>
            {
                // ECS is stopping or rolling it back by itself (its circuit breaker, its alarms,
                // or someone's stop): follow that to its end, for a bounded time.
                // From when ECS says it started; at most TimeoutMinutes and the limit in all.
                let since =
                    view.rollback_started.or(view.stopped_at).or(view.updated_at).map(|t| t.secs().max(0) as u64);
                let now = now_secs();
                let past = since.is_some_and(|t| now.saturating_sub(t) > ROLLBACK_LIMIT.as_secs())
                    || now.saturating_sub(followed.started_at) > timeout.as_secs() + ROLLBACK_LIMIT.as_secs();
                if past {
                    let error = EcsError::Rollout(format!(
                        "the deployment of {new} to {} is still {} after {} minutes: {}",
                        s.describe(),
                        status.as_str(),
                        ROLLBACK_LIMIT.as_secs() / 60,
                        view.failure()
                    ));
                    let detail = format!("ECS is still rolling {} back: check it", s.describe());
                    return Err(EcsError::left(error, sides.stands(Serving::Shifting, detail)));
                }
            }
            _ => {
                // Pending or in progress: crossdeploy's own checks. A failure stops the service
                // deployment with rollback, unless it is not this deployment's.
                let fail = |error: EcsError, sides: Sides| {
                    let arn = arn.clone();
                    let not_ours = followed.not_ours;
                    async move {
                        if not_ours {
                            let detail = format!(
                                "this deployment changed nothing: {} already ran {}; service deployment {} is not crossdeploy's and is left as it is",
                                s.describe(),
                                sides.new,
                                short_id(&arn)
                            );
                            return Err(EcsError::left(error, sides.stands(Serving::Previous, detail)));
                        }
                        let reason = error.to_string();
                        let stopping = Stopping { arn: &arn, since: now_secs(), reason: &reason };
                        stop_and_follow(s, &sides, &stopping, deadline).await
                    }
                };
                let firing = match firing_alarm(alarms.cloudwatch, alarms.names, s.account, work).await {
                    Ok(f) => f,
                    Err(e) => return fail(e.into(), sides.clone()).await,
                };
                if let Some(firing) = firing {
                    tracing::error!(service = s.service, alarm = %firing.name, service_deployment = %arn, "alarm in ALARM: stopping the deployment with rollback");
                    let error = EcsError::Rollout(format!(
                        "alarm {} in account {} is in ALARM ({}) during service deployment {} of {new} to {}",
                        firing.name,
                        s.account,
                        firing.reason,
                        view.id(),
                        s.describe()
                    ));
                    return fail(error, sides.clone()).await;
                }
                let waited = now_secs().saturating_sub(followed.started_at);
                if waited >= timeout.as_secs() {
                    let error = EcsError::Rollout(format!(
                        "service deployment {} of {new} to {} did not complete within {} minutes (TimeoutMinutes): {}",
                        view.id(),
                        s.describe(),
                        timeout.as_secs() / 60,
                        view.progress(new, previous)
                    ));
                    return fail(error, sides.clone()).await;
                }
            }
        }
        // Follow until the deadline leaves only the time to act (and put back).
        let room = deadline.remaining().saturating_sub(MUTATION_MARGIN + RESTORE_RESERVE);
        if room < Duration::from_secs(1) {
            let state = EcsState::FollowingRollout {
                task_definition_arn: new.to_owned(),
                previous_task_definition_arn: previous.to_owned(),
                started_at: followed.started_at,
                deployment_id: followed.deployment_id.clone(),
                service_deployment_arn: Some(arn.clone()),
                not_ours: followed.not_ours,
            };
            let detail = format!("{}: {}", s.describe(), view.progress(new, previous));
            return Ok(Outcome::InProgress {
                summary: detail.clone(),
                percent_complete: view.percent_complete(),
                state: serde_json::to_value(&state).unwrap_or_default(),
                stands: Some(sides.stands(Serving::Shifting, detail)),
            });
        }
        tracing::info!(service = s.service, service_deployment = %arn, status = view.status.as_str(), stage = ?view.stage, weight = ?view.weight, "deployment in progress");
        pace.wait(room).await;
    }
}

/// A successful deployment's outcome: its outputs, with the id ECS's deployment events use.
async fn succeeded(
    s: &ServiceRef<'_>,
    sides: &Sides,
    view: &View,
    deployment_id: Option<String>,
    deadline: Deadline,
) -> Outcome {
    let deployment_id = match deployment_id {
        Some(id) => Some(id),
        None => describe_service(s, deadline).await.ok().and_then(|service| {
            service
                .deployments()
                .iter()
                .find(|d| d.task_definition() == Some(sides.new.as_str()) && d.status() == Some("PRIMARY"))
                .and_then(|d| d.id().map(str::to_owned))
        }),
    };
    tracing::info!(service = s.service, service_deployment = %view.arn, "deployment succeeded");
    let mut outputs = BTreeMap::from([
        (outputs::TASK_DEFINITION_ARN.to_owned(), sides.new.clone()),
        (outputs::PREVIOUS_TASK_DEFINITION_ARN.to_owned(), sides.previous.clone()),
        (outputs::SERVICE_DEPLOYMENT_ARN.to_owned(), view.arn.clone()),
    ]);
    if let Some(id) = deployment_id {
        outputs.insert(outputs::DEPLOYMENT_ID.to_owned(), id);
    }
    let strategy = view.strategy.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
    let summary = format!(
        "{}: {} -> {}, service deployment {}{strategy} SUCCESSFUL",
        s.describe(),
        sides.previous,
        sides.new,
        view.id()
    );
    Outcome::Succeeded { summary, outputs }
}

/// crossdeploy fails the deployment: stop its service deployment with rollback and follow ECS's
/// rollback. The stop is a change: it is sent only with the time to act left, else the state to
/// send it from is handed back. A deployment that finished before the stop reached it (or that
/// ECS no longer knows) is put back with UpdateService instead.
async fn stop_and_follow(
    s: &ServiceRef<'_>,
    sides: &Sides,
    stopping: &Stopping<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    if !time_to_change(deadline) {
        return Ok(rolling_back(s, sides, stopping, false, "about to stop it with rollback".to_owned()));
    }
    let error = || EcsError::Rollout(stopping.reason.to_owned());
    match sd::stop_with_rollback(s, stopping.arn, deadline.less(RESTORE_RESERVE)).await {
        Ok(Stop::Stopping) => {
            tracing::warn!(service = s.service, service_deployment = %stopping.arn, reason = stopping.reason, "stopped the service deployment with rollback; following the rollback");
            follow_rollback(s, sides, stopping, deadline).await
        }
        Ok(stop @ (Stop::Finished | Stop::NotFound)) => {
            tracing::warn!(service = s.service, service_deployment = %stopping.arn, ?stop, "the service deployment could not be stopped; updating the service back");
            Err(put_back_now(s, error(), sides, deadline).await)
        }
        // No answer, or a transient one: perhaps taken. Sent again by the next invocation
        // (stopping a deployment that rolls back changes nothing).
        Err(EcsError::Aws { error: info, .. })
            if info.code.as_deref().is_none_or(crossdeploy_aws::is_transient_code) =>
        {
            Ok(rolling_back(s, sides, stopping, false, format!("the stop got no answer ({info}); sending it again")))
        }
        Err(e) => {
            let error = EcsError::Rollout(format!(
                "{}; stopping service deployment {} failed ({e})",
                stopping.reason,
                short_id(stopping.arn)
            ));
            Err(put_back_now(s, error, sides, deadline).await)
        }
    }
}

/// The state of a rollback crossdeploy asked for (or is about to), to go on from.
fn rolling_back(s: &ServiceRef<'_>, sides: &Sides, stopping: &Stopping<'_>, stop_taken: bool, how: String) -> Outcome {
    let state = EcsState::RollingBack {
        task_definition_arn: sides.new.clone(),
        previous_task_definition_arn: sides.previous.clone(),
        service_deployment_arn: stopping.arn.to_owned(),
        stopped_at: stopping.since,
        stop_taken,
        reason: stopping.reason.to_owned(),
    };
    let detail = format!(
        "{}: rolling service deployment {} back ({}): {how}",
        s.describe(),
        short_id(stopping.arn),
        stopping.reason
    );
    Outcome::InProgress {
        summary: detail.clone(),
        percent_complete: 95,
        state: serde_json::to_value(&state).unwrap_or_default(),
        stands: Some(sides.stands(Serving::Shifting, detail)),
    }
}

/// Follows the rollback ECS does of the service deployment crossdeploy stopped, to its end: the
/// job fails with the stop's reason either way, saying what the service runs. Bounded by
/// [`ROLLBACK_LIMIT`] from the stop.
async fn follow_rollback(
    s: &ServiceRef<'_>,
    sides: &Sides,
    stopping: &Stopping<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let work = deadline.less(RESTORE_RESERVE);
    let reason = || EcsError::Rollout(stopping.reason.to_owned());
    let id = short_id(stopping.arn);
    let mut pace = Pace::new();
    loop {
        let over = now_secs().saturating_sub(stopping.since) > ROLLBACK_LIMIT.as_secs();
        let view = match sd::describe(s, stopping.arn, work).await {
            Ok(Lookup::Found(d)) => Some(View::of(&d)),
            Ok(Lookup::Absent(code)) => {
                // The API took the stop, then went away: put the service back the old way.
                let e = EcsError::Rollout(format!(
                    "{}; the rollback of service deployment {id} could not be followed ({code})",
                    stopping.reason
                ));
                return Err(put_back_now(s, e, sides, deadline).await);
            }
            // Not read this time: ECS goes on rolling back; read again, within the limit.
            Err(e) if !over => {
                tracing::warn!(service = s.service, service_deployment = %stopping.arn, error = %e, "the rollback could not be read; reading again");
                None
            }
            Err(e) => {
                let detail =
                    format!("the rollback of service deployment {id} could not be read ({e}): check {}", s.describe());
                return Err(EcsError::left(reason(), sides.stands(Serving::Unknown, detail)));
            }
        };
        if let Some(view) = &view {
            match &view.status {
                ServiceDeploymentStatus::RollbackSuccessful => {
                    let what = format!("ECS rolled it back (service deployment {id} ROLLBACK_SUCCESSFUL)");
                    let (stands, _) = after_rollback(s, sides, what, work).await;
                    return Err(EcsError::left(reason(), stands));
                }
                // It finished before the stop took: put the service back the way ECS allows.
                ServiceDeploymentStatus::Successful => return Err(put_back_now(s, reason(), sides, deadline).await),
                status if !is_ongoing(status) => {
                    let what = format!(
                        "ECS's rollback of service deployment {id} ended {}: {}",
                        status.as_str(),
                        view.failure()
                    );
                    let (stands, _) = after_rollback(s, sides, what, work).await;
                    let stands = Stands { serving: Serving::Unknown, ..stands };
                    return Err(EcsError::left(reason(), stands));
                }
                _ => {}
            }
        }
        if over {
            let detail = format!(
                "ECS is still rolling {} back after {} minutes ({}): check it",
                s.describe(),
                ROLLBACK_LIMIT.as_secs() / 60,
                view.map(|v| v.failure()).unwrap_or_else(|| "not read".to_owned())
            );
            return Err(EcsError::left(reason(), sides.stands(Serving::Shifting, detail)));
        }
        let room = deadline.remaining().saturating_sub(MUTATION_MARGIN + RESTORE_RESERVE);
        if room < Duration::from_secs(1) {
            let how = view
                .map(|v| v.progress(&sides.new, &sides.previous))
                .unwrap_or_else(|| "not read this time".to_owned());
            return Ok(rolling_back(s, sides, stopping, true, how));
        }
        tracing::info!(service = s.service, service_deployment = %stopping.arn, status = ?view.as_ref().map(|v| v.status.as_str()), "rollback in progress");
        pace.wait(room).await;
    }
}

/// Reads the service and puts it back ([`put_back`]).
async fn put_back_now(s: &ServiceRef<'_>, error: EcsError, sides: &Sides, deadline: Deadline) -> EcsError {
    match describe_service(s, deadline).await {
        Ok(service) => put_back(s, error, service.task_definition(), sides, deadline).await,
        Err(e) => {
            let detail = format!("{} could not be read to put it back ({e})", s.describe());
            EcsError::left(error, sides.stands(Serving::Unknown, detail))
        }
    }
}

/// Where ECS keeps no service deployments: follows the rollout through DescribeServices'
/// deployments list until it completes, fails or is rolled back, outlives `timeout` or trips an
/// alarm (put back with UpdateService), or the deadline comes near. A rollout that failed or
/// outlived `TimeoutMinutes` is put back on the previous task definition, unless ECS's circuit
/// breaker did it already.
async fn follow_deployments_list(
    s: &ServiceRef<'_>,
    followed: Followed,
    mut described: Option<aws_sdk_ecs::types::Service>,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let sides = &followed.sides;
    let (new, previous) = (sides.new.clone(), sides.previous.clone());
    let work = deadline.less(RESTORE_RESERVE);
    let mut followed_id = followed.deployment_id.clone();
    let mut pace = Pace::new();
    loop {
        let service = match described.take() {
            Some(service) => service,
            None => match describe_service(s, work).await {
                Ok(service) => service,
                Err(e) => {
                    let detail = format!("the rollout of {new} to {} could not be read", s.describe());
                    return Err(EcsError::left(e, sides.stands(Serving::Unknown, detail)));
                }
            },
        };
        let runs = service.task_definition();
        match assess(&service, &new, followed_id.as_deref()) {
            Rollout::Completed { deployment_id } => {
                tracing::info!(service = s.service, %deployment_id, "rollout completed");
                let outputs = BTreeMap::from([
                    (outputs::TASK_DEFINITION_ARN.to_owned(), new.clone()),
                    (outputs::PREVIOUS_TASK_DEFINITION_ARN.to_owned(), previous.clone()),
                    (outputs::DEPLOYMENT_ID.to_owned(), deployment_id.clone()),
                ]);
                let summary = format!("{}: {previous} -> {new}, deployment {deployment_id} completed", s.describe());
                return Ok(Outcome::Succeeded { summary, outputs });
            }
            Rollout::Failed { reason, .. } => {
                let error = EcsError::Rollout(format!("the deployment of {new} to {} failed: {reason}", s.describe()));
                return Err(put_back(s, error, runs, sides, deadline).await);
            }
            Rollout::RolledBack { reason } => {
                let error = EcsError::Rollout(format!(
                    "the deployment of {new} to {} was rolled back (deployment circuit breaker): {reason}",
                    s.describe()
                ));
                let detail = format!(
                    "{} runs {} again",
                    s.describe(),
                    service.task_definition().unwrap_or("another task definition")
                );
                return Err(EcsError::left(error, sides.stands(Serving::Previous, detail)));
            }
            Rollout::InProgress { deployment_id } => {
                followed_id = Some(deployment_id.clone());
                let firing = match firing_alarm(alarms.cloudwatch, alarms.names, s.account, work).await {
                    Ok(f) => f,
                    Err(e) => return Err(put_back(s, e.into(), runs, sides, deadline).await),
                };
                if let Some(firing) = firing {
                    tracing::error!(service = s.service, alarm = %firing.name, "alarm in ALARM: restoring the service");
                    let error = EcsError::Rollout(format!(
                        "alarm {} in account {} is in ALARM ({}) during deployment {deployment_id} of {new}",
                        firing.name, s.account, firing.reason,
                    ));
                    return Err(put_back(s, error, runs, sides, deadline).await);
                }
                let waited = now_secs().saturating_sub(followed.started_at);
                if waited >= timeout.as_secs() {
                    let error = EcsError::Rollout(format!(
                        "deployment {deployment_id} of {new} to {} did not complete within {} minutes (TimeoutMinutes)",
                        s.describe(),
                        timeout.as_secs() / 60
                    ));
                    return Err(put_back(s, error, runs, sides, deadline).await);
                }
                // Follow until the deadline leaves only the time to act (and put back).
                let room = deadline.remaining().saturating_sub(MUTATION_MARGIN + RESTORE_RESERVE);
                if room < Duration::from_secs(1) {
                    let percent = (waited * 90 / timeout.as_secs().max(1)).min(90) as u8;
                    let state = EcsState::FollowingRollout {
                        task_definition_arn: new.clone(),
                        previous_task_definition_arn: previous.clone(),
                        started_at: followed.started_at,
                        deployment_id: followed_id.clone(),
                        service_deployment_arn: None,
                        not_ours: followed.not_ours,
                    };
                    let detail = format!("deployment {deployment_id} of {new} to {} in progress", s.describe());
                    return Ok(Outcome::InProgress {
                        summary: detail.clone(),
                        percent_complete: percent.max(10),
                        state: serde_json::to_value(&state).unwrap_or_default(),
                        stands: Some(sides.stands(Serving::Shifting, detail)),
                    });
                }
                tracing::info!(service = s.service, %deployment_id, waited, "rollout in progress");
                pace.wait(room).await;
            }
        }
    }
}

/// A rollout failed: put the service back on the previous task definition if it still runs the
/// new one (`runs`: what it runs; ECS rolls that back out), and say what it runs either way.
async fn put_back(
    s: &ServiceRef<'_>,
    error: EcsError,
    runs: Option<&str>,
    sides: &Sides,
    deadline: Deadline,
) -> EcsError {
    if runs == Some(sides.previous.as_str()) {
        let detail = format!("{} runs {} again", s.describe(), sides.previous);
        return EcsError::left(error, sides.stands(Serving::Previous, detail));
    }
    if runs != Some(sides.new.as_str()) {
        let detail = format!(
            "{} runs {}, neither {} that stood before nor {}: someone changed it; left as it is",
            s.describe(),
            runs.unwrap_or("no task definition"),
            sides.previous,
            sides.new
        );
        return EcsError::left(error, sides.stands(Serving::Unknown, detail));
    }
    match update_service(s, &sides.previous, None, deadline).await {
        Ok(updated) => {
            let detail = format!(
                "{} was updated back to {} (deployment {}); ECS rolls it out",
                s.describe(),
                sides.previous,
                updated.deployment_id.as_deref().unwrap_or("unknown")
            );
            let sides = Sides { service_deployment_arn: updated.service_deployment_arn, ..sides.clone() };
            EcsError::left(error, sides.stands(Serving::Previous, detail))
        }
        Err(e) => {
            let detail =
                format!("{} runs {}, and updating it back to {} failed ({e})", s.describe(), sides.new, sides.previous);
            EcsError::left(error, sides.stands(Serving::Shifting, detail))
        }
    }
}

pub(crate) async fn describe_task_definition(
    s: &ServiceRef<'_>,
    arn: &str,
    deadline: Deadline,
) -> Result<(TaskDefinition, Vec<Tag>), EcsError> {
    let out = retry("DescribeTaskDefinition", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        s.ecs.describe_task_definition().task_definition(arn).include(TaskDefinitionField::Tags).send()
    })
    .await
    .map_err(|e| EcsError::Aws {
        action: "describe task definition",
        resource: format!("{arn} in account {}", s.account),
        error: ErrorInfo::from_sdk(&e),
    })?;
    let td = out.task_definition.ok_or_else(|| EcsError::Aws {
        action: "describe task definition",
        resource: arn.to_owned(),
        error: ErrorInfo { code: None, message: "no task definition in the answer".into() },
    })?;
    Ok((td, out.tags.unwrap_or_default()))
}

/// `RegisterTaskDefinition` of the clone, tagged with the deployment; throttling (1 per second,
/// burst 20) and transient faults retried until the deadline. The SDK does not retry it: after
/// a fault that may have been applied (its answer lost), the family's newest revision is read
/// first, and one this deployment registered is taken instead of registering another.
async fn register(
    s: &ServiceRef<'_>,
    td: &TaskDefinition,
    tags: &[Tag],
    containers: Vec<aws_sdk_ecs::types::ContainerDefinition>,
    current: &str,
    deadline: Deadline,
) -> Result<String, EcsError> {
    let family = td.family().unwrap_or_default();
    let error = |e: ErrorInfo| EcsError::Aws {
        action: "register a new revision of",
        resource: format!("task definition family {family} in account {}", s.account),
        error: e,
    };
    // Set by a failed attempt that may have been applied (not a throttle): the next one checks.
    let maybe_applied = std::sync::atomic::AtomicBool::new(false);
    let result = retry(
        "RegisterTaskDefinition",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &RegisterAttempt| matches!(e, RegisterAttempt::Call(e) if is_transient(e.as_ref())),
        || {
            let containers = containers.clone();
            let maybe_applied = &maybe_applied;
            async move {
                if maybe_applied.load(std::sync::atomic::Ordering::SeqCst) {
                    match registered_by_this_deployment(s, family, deadline).await {
                        Ok(Some(arn)) => return Ok(arn),
                        Ok(None) => {}
                        Err(e) => return Err(RegisterAttempt::Failed(e)),
                    }
                }
                let out = clone_into(s.ecs.register_task_definition(), td, tags, containers, current, s.deployment)
                    .customize()
                    .config_override(
                        aws_sdk_ecs::config::Config::builder()
                            .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled()),
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        if !ErrorInfo::from_sdk(&e).is_throttling() {
                            maybe_applied.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        RegisterAttempt::Call(Box::new(e))
                    })?;
                out.task_definition.and_then(|t| t.task_definition_arn).ok_or_else(|| {
                    RegisterAttempt::Failed(ErrorInfo {
                        code: None,
                        message: "no task definition ARN in the answer".into(),
                    })
                })
            }
        },
    )
    .await;
    match result {
        Ok(arn) => Ok(arn),
        Err(RegisterAttempt::Call(e)) => Err(error(ErrorInfo::from_sdk(&e))),
        Err(RegisterAttempt::Failed(e)) => Err(error(e)),
    }
}

/// One attempt at registering.
enum RegisterAttempt {
    Call(
        Box<
            aws_sdk_ecs::error::SdkError<aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionError>,
        >,
    ),
    Failed(ErrorInfo),
}

impl crossdeploy_aws::DeadlineReached for RegisterAttempt {
    fn deadline_reached(what: &str) -> Self {
        RegisterAttempt::Call(Box::new(aws_sdk_ecs::error::SdkError::deadline_reached(what)))
    }
}

/// The family's newest revision, if this deployment registered it (its deployment tag says so).
async fn registered_by_this_deployment(
    s: &ServiceRef<'_>,
    family: &str,
    deadline: Deadline,
) -> Result<Option<String>, ErrorInfo> {
    let listed = retry("ListTaskDefinitions", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        s.ecs.list_task_definitions().family_prefix(family).sort(SortOrder::Desc).max_results(1).send()
    })
    .await
    .map_err(|e| ErrorInfo::from_sdk(&e))?;
    let Some(newest) = listed.task_definition_arns().first() else { return Ok(None) };
    let (_, tags) = describe_task_definition(s, newest, deadline)
        .await
        .map_err(|e| ErrorInfo { code: None, message: e.to_string() })?;
    let ours = tags.iter().any(|t| t.key() == Some(DEPLOYMENT_TAG) && t.value() == Some(s.deployment));
    Ok(ours.then(|| newest.clone()))
}

/// Every call deploying a new revision of `td` to `service` makes, on its resources, with the
/// condition keys the target role's policies use (`ecs:CreateAction`, `iam:PassedToService`).
pub fn needed_calls(
    service: &aws_sdk_ecs::types::Service,
    td: &aws_sdk_ecs::types::TaskDefinition,
    alarms: &[String],
) -> Vec<crossdeploy_credentials::Needed> {
    use crossdeploy_credentials::Needed;
    let service_arn = service.service_arn().unwrap_or_default();
    // arn:<partition>:ecs:<region>:<account>:service/<cluster>/<name>
    let parts: Vec<&str> = service_arn.splitn(6, ':').collect();
    let (partition, region, account) = match parts.as_slice() {
        [_, p, _, r, a, _] => (*p, *r, *a),
        _ => ("aws", "", ""),
    };
    let mut needed = vec![
        Needed::new("ecs:DescribeServices", service_arn),
        Needed::new("ecs:UpdateService", service_arn),
        Needed::new("ecs:DescribeTaskDefinition", "*"),
        Needed::new("ecs:RegisterTaskDefinition", "*"),
        Needed::new("ecs:ListTaskDefinitions", "*"),
        // Following the service deployment the update starts, and stopping it with rollback.
        Needed::new("ecs:ListServiceDeployments", service_arn),
    ];
    let cluster = service.cluster_arn().and_then(|c| c.rsplit('/').next()).unwrap_or("*");
    let name = service.service_name().unwrap_or("*");
    let deployments = format!("arn:{partition}:ecs:{region}:{account}:service-deployment/{cluster}/{name}/*");
    needed.push(Needed::new("ecs:DescribeServiceDeployments", deployments.clone()));
    needed.push(Needed::new("ecs:StopServiceDeployment", deployments));
    needed.push(Needed::new(
        "ecs:DescribeServiceRevisions",
        format!("arn:{partition}:ecs:{region}:{account}:service-revision/{cluster}/{name}/*"),
    ));
    if let Some(family) = td.family() {
        // The revision about to be registered is tagged as it is registered.
        let next = format!("arn:{partition}:ecs:{region}:{account}:task-definition/{family}:{}", td.revision() + 1);
        needed.push(Needed::new("ecs:TagResource", next).with("ecs:CreateAction", "RegisterTaskDefinition"));
    }
    for role in [td.task_role_arn(), td.execution_role_arn()].into_iter().flatten() {
        needed.push(Needed::new("iam:PassRole", role).with("iam:PassedToService", "ecs-tasks.amazonaws.com"));
    }
    if !alarms.is_empty() {
        needed.push(Needed::new("cloudwatch:DescribeAlarms", "*"));
    }
    needed
}
