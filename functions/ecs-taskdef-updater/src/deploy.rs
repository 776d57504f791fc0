//! The ECS deployment: image file -> new revision -> UpdateService -> the rollout to its end.

use crate::images::ImageChange;
use crate::service::{assess, check_controller, describe_service, update_service, Rollout, ServiceRef};
use crate::taskdef::{clone_into, replace_images, runs_images, DEPLOYMENT_TAG, PREVIOUS_TAG};
use crate::EcsError;
use aws_sdk_ecs::types::{SortOrder, Tag, TaskDefinition, TaskDefinitionField};
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

/// Time between two reads of the rollout.
pub const POLL: Duration = Duration::from_secs(10);
/// Time kept before the deadline to put the service back when a rollout fails.
pub const RESTORE_RESERVE: Duration = Duration::from_secs(10);
/// A change of the service starts only with this long (besides [`RESTORE_RESERVE`]) before the deadline.
pub const MUTATION_MARGIN: Duration = Duration::from_secs(5);

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
    },
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Moves the service to its current task definition with `changes` applied, then follows the
/// rollout. Registers nothing when the service already runs exactly these images.
pub async fn deploy_images(
    s: &ServiceRef<'_>,
    changes: &[ImageChange],
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let service = describe_service(s, deadline).await?;
    check_controller(s, &service)?;
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
        let previous = match tag(DEPLOYMENT_TAG) {
            Some(d) if d == s.deployment => tag(PREVIOUS_TAG).unwrap_or(&current).to_owned(),
            _ => current.clone(),
        };
        tracing::info!(service = s.service, task_definition = %current, "the service already runs these images; nothing registered");
        let state = EcsState::FollowingRollout {
            task_definition_arn: current.clone(),
            previous_task_definition_arn: previous,
            started_at: now_secs(),
            deployment_id: None,
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
    tracing::info!(service = s.service, task_definition = %new_arn, previous = %current, "registered; updating the service");
    let stands =
        |serving, detail: String| Stands { previous: current.clone(), deployed: new_arn.clone(), serving, detail };
    let deployment_id = match update_service(s, &new_arn, deadline).await {
        Ok(id) => id,
        // Sent, perhaps applied, its answer lost: what the service runs now is unknown.
        Err(e) => {
            let detail = format!("{} may have been updated to {new_arn}: check it", s.describe());
            return Err(EcsError::left(e, stands(Serving::Unknown, detail)));
        }
    };
    let state = EcsState::FollowingRollout {
        task_definition_arn: new_arn.clone(),
        previous_task_definition_arn: current.clone(),
        started_at: now_secs(),
        deployment_id,
    };
    follow(s, state, timeout, alarms, deadline).await
}

/// Follows the rollout of `state` until it completes (success), fails or is rolled back (an
/// error with ECS's reason and the service's latest events), outlives `timeout` (an error), or
/// the deadline comes near (InProgress, with the state to resume from).
pub async fn follow(
    s: &ServiceRef<'_>,
    state: EcsState,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    follow_from(s, state, None, timeout, alarms, deadline).await
}

/// [`follow`], starting from a service just described (`None`: describe it first). A failure
/// once the service was updated says what it runs: a rollout that failed or outlived
/// `TimeoutMinutes` is put back on the previous task definition, unless ECS's circuit breaker
/// did it already.
async fn follow_from(
    s: &ServiceRef<'_>,
    state: EcsState,
    mut described: Option<aws_sdk_ecs::types::Service>,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let EcsState::FollowingRollout { task_definition_arn, previous_task_definition_arn, started_at, deployment_id } =
        &state;
    let (new, previous) = (task_definition_arn.clone(), previous_task_definition_arn.clone());
    let stands =
        |serving, detail: String| Stands { previous: previous.clone(), deployed: new.clone(), serving, detail };
    let work = deadline.less(RESTORE_RESERVE);
    let mut followed = deployment_id.clone();
    loop {
        let service = match described.take() {
            Some(service) => service,
            None => match describe_service(s, work).await {
                Ok(service) => service,
                Err(e) => {
                    let detail = format!("the rollout of {new} to {} could not be read", s.describe());
                    return Err(EcsError::left(e, stands(Serving::Unknown, detail)));
                }
            },
        };
        let runs_new = service.task_definition() == Some(new.as_str());
        match assess(&service, &new, followed.as_deref()) {
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
                return Err(put_back(s, error, runs_new, &stands, deadline).await);
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
                return Err(EcsError::left(error, stands(Serving::Previous, detail)));
            }
            Rollout::InProgress { deployment_id } => {
                followed = Some(deployment_id.clone());
                let firing = match firing_alarm(alarms.cloudwatch, alarms.names, s.account, work).await {
                    Ok(f) => f,
                    Err(e) => return Err(put_back(s, e.into(), runs_new, &stands, deadline).await),
                };
                if let Some(firing) = firing {
                    tracing::error!(service = s.service, alarm = %firing.name, "alarm in ALARM: restoring the service");
                    let error = EcsError::Rollout(format!(
                        "alarm {} in account {} is in ALARM ({}) during deployment {deployment_id} of {new}",
                        firing.name, s.account, firing.reason,
                    ));
                    return Err(put_back(s, error, runs_new, &stands, deadline).await);
                }
                let waited = now_secs().saturating_sub(*started_at);
                if waited >= timeout.as_secs() {
                    let error = EcsError::Rollout(format!(
                        "deployment {deployment_id} of {new} to {} did not complete within {} minutes (TimeoutMinutes)",
                        s.describe(),
                        timeout.as_secs() / 60
                    ));
                    return Err(put_back(s, error, runs_new, &stands, deadline).await);
                }
                // Follow until the deadline leaves only the time to act (and put back).
                let room = deadline.remaining().saturating_sub(MUTATION_MARGIN + RESTORE_RESERVE);
                if room < Duration::from_secs(1) {
                    let percent = (waited * 90 / timeout.as_secs().max(1)).min(90) as u8;
                    let state = EcsState::FollowingRollout {
                        task_definition_arn: new.clone(),
                        previous_task_definition_arn: previous.clone(),
                        started_at: *started_at,
                        deployment_id: followed.clone(),
                    };
                    let detail = format!("deployment {deployment_id} of {new} to {} in progress", s.describe());
                    return Ok(Outcome::InProgress {
                        summary: detail.clone(),
                        percent_complete: percent.max(10),
                        state: serde_json::to_value(&state).unwrap_or_default(),
                        stands: Some(stands(Serving::Shifting, detail)),
                    });
                }
                tracing::info!(service = s.service, %deployment_id, waited, "rollout in progress");
                tokio::time::sleep(POLL.min(room)).await;
            }
        }
    }
}

/// A rollout failed: put the service back on the previous task definition if it still runs the
/// new one (ECS rolls that back out), and say what it runs either way.
async fn put_back(
    s: &ServiceRef<'_>,
    error: EcsError,
    runs_new: bool,
    stands: &(dyn Fn(Serving, String) -> Stands + Sync),
    deadline: Deadline,
) -> EcsError {
    let probe = stands(Serving::Unknown, String::new());
    if !runs_new {
        let detail = format!("{} no longer runs {}", s.describe(), probe.deployed);
        return EcsError::left(error, stands(Serving::Previous, detail));
    }
    match update_service(s, &probe.previous, deadline).await {
        Ok(id) => {
            let detail = format!(
                "{} was updated back to {} (deployment {}); ECS rolls it out",
                s.describe(),
                probe.previous,
                id.as_deref().unwrap_or("unknown")
            );
            EcsError::left(error, stands(Serving::Previous, detail))
        }
        Err(e) => {
            let detail = format!(
                "{} runs {}, and updating it back to {} failed ({e})",
                s.describe(),
                probe.deployed,
                probe.previous
            );
            EcsError::left(error, stands(Serving::Shifting, detail))
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
    ];
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
