//! Rollback: put the service back on the task definition that stood before a deployment — only
//! while it still runs what that deployment registered.

use crate::deploy::describe_task_definition;
use crate::service::{describe_service, update_service};
use crate::service_deployment::{self as sd, short_id, Lookup, Stop};
use crate::taskdef::{DEPLOYMENT_TAG, PREVIOUS_TAG};
use crate::{EcsError, ServiceRef};
use aws_sdk_ecs::types::ServiceDeploymentStatus;
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::{outputs, EcsRollback, Outcome, RollbackResult};

/// What a rollback does to a service running `current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The service runs the deployed task definition: update it back.
    Restore,
    /// The service runs the task definition to restore already (a rollback before, or ECS's
    /// circuit breaker).
    AlreadyRestored,
    /// The service runs something else: someone deployed since.
    LeftAlone(String),
}

pub fn guard(current: &str, spec: &EcsRollback) -> Guard {
    if current == spec.restore_task_definition {
        Guard::AlreadyRestored
    } else if current == spec.deployed_task_definition {
        Guard::Restore
    } else {
        Guard::LeftAlone(format!(
            "it runs {current}, not {} that crossdeploy deployed: someone deployed since",
            spec.deployed_task_definition
        ))
    }
}

/// Updates the service back to `spec.restore_task_definition` if the guard allows. The rollout
/// this starts is ECS's to finish (its circuit breaker watches it); the outcome names it. A
/// spec with no deployed task definition is a rollback by mark of `deployment`: only a revision
/// whose `crossdeploy:deployment` tag names it is rolled back, to the revision its
/// `crossdeploy:previous-task-definition` tag names.
pub async fn rollback_service(
    s: &ServiceRef<'_>,
    spec: &EcsRollback,
    deployment: Option<&str>,
    request_id: &str,
    reason: &str,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let service = describe_service(s, deadline).await?;
    let current = service.task_definition().unwrap_or_default().to_owned();
    let name = s.describe();
    let marked;
    let spec = match (spec.deployed_task_definition.is_empty(), deployment) {
        (false, _) => spec,
        (true, Some(d)) => {
            let (_, tags) = describe_task_definition(s, &current, deadline).await?;
            let tag = |key: &str| tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_owned);
            match (tag(DEPLOYMENT_TAG), tag(PREVIOUS_TAG)) {
                (Some(by), Some(previous)) if by == d => {
                    marked = EcsRollback {
                        restore_task_definition: previous,
                        deployed_task_definition: current.clone(),
                        ..spec.clone()
                    };
                    &marked
                }
                _ => {
                    let summary = format!(
                        "{name} runs {current}, no revision deployment {d} registered: nothing of it stands ({reason})"
                    );
                    tracing::info!(%request_id, %summary, "rollback by mark: nothing of the deployment stands");
                    return Ok(RollbackResult::AlreadyRestored.outcome(summary, &current));
                }
            }
        }
        (true, None) => {
            return Err(EcsError::BadRequest(
                "a rollback with no deployed task definition must name its deployment".to_owned(),
            ))
        }
    };
    match guard(&current, spec) {
        Guard::AlreadyRestored => {
            let summary = format!("{name} runs {} already; nothing changed", spec.restore_task_definition);
            tracing::info!(%request_id, %summary, "rollback: already restored");
            Ok(RollbackResult::AlreadyRestored.outcome(summary, &current))
        }
        Guard::LeftAlone(why) => {
            let summary = format!("{name} left alone: {why} ({reason})");
            tracing::warn!(%request_id, %summary, "rollback: left alone");
            Ok(RollbackResult::LeftAlone.outcome(summary, &current))
        }
        Guard::Restore => restore(s, &service, spec, request_id, reason, deadline).await,
    }
}

/// Puts the service back on `spec.restore_task_definition`. While the service deployment that
/// brought the deployed task definition is still going on, it is stopped with rollback (ECS puts
/// the previous revision back); otherwise the service is updated back, which starts a service
/// deployment of its own. The outcome names the service deployment either way
/// (`ServiceDeploymentArn`), and deploy-rollback records it in the ledger.
async fn restore(
    s: &ServiceRef<'_>,
    service: &aws_sdk_ecs::types::Service,
    spec: &EcsRollback,
    request_id: &str,
    reason: &str,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let name = s.describe();
    if let Some(current) = service.current_service_deployment() {
        // Any trouble reading or stopping it: update the service back, which restores as well.
        match ongoing_to_restore(s, current, spec, deadline).await {
            Ok(Some(rolling_back)) => {
                let stop =
                    if rolling_back { Ok(Stop::Stopping) } else { sd::stop_with_rollback(s, current, deadline).await };
                if let Err(e) = &stop {
                    tracing::warn!(%request_id, error = %e, "rollback: the service deployment could not be stopped; updating the service back");
                }
                if matches!(stop, Ok(Stop::Stopping)) {
                    let how = if rolling_back { "was rolling back already" } else { "stopped with rollback" };
                    // ECS rolls it back: followed to its end while the request's time allows.
                    let ended = rolled_back(s, current, deadline).await?;
                    let summary = format!(
                        "{name}: service deployment {} of {} {how}; ECS puts {} back (service deployment {current}, {ended}): {reason}",
                        short_id(current),
                        spec.deployed_task_definition,
                        spec.restore_task_definition
                    );
                    tracing::info!(%request_id, %summary, "rollback: through the service deployment");
                    return Ok(with_service_deployment(
                        RollbackResult::Restored.outcome(summary, &spec.restore_task_definition),
                        current,
                    ));
                }
                // It finished in the meantime: update the service back, below.
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%request_id, error = %e, "rollback: the service deployment could not be read; updating the service back")
            }
        }
    }
    let updated = update_service(s, &spec.restore_task_definition, None, deadline).await?;
    let summary = format!(
        "{name} updated back to {} (was {}), deployment {}{}: {reason}",
        spec.restore_task_definition,
        spec.deployed_task_definition,
        updated.deployment_id.as_deref().unwrap_or("unknown"),
        updated.service_deployment_arn.as_deref().map(|a| format!(", service deployment {a}")).unwrap_or_default()
    );
    tracing::info!(%request_id, %summary, "rollback: restored");
    let outcome = RollbackResult::Restored.outcome(summary, &spec.restore_task_definition);
    Ok(match &updated.service_deployment_arn {
        Some(arn) => with_service_deployment(outcome, arn),
        None => outcome,
    })
}

/// Whether the service deployment `arn` rolls (or may be stopped to roll) the service back to
/// what the rollback restores: `Some(true)` when ECS is rolling it back to that already,
/// `Some(false)` when it is pending or in progress from that revision (a stop with rollback puts
/// it back), `None` otherwise (finished, stopping, or from another revision: a stop would not
/// restore what is asked, so the service is updated back). The API absent: `None`.
async fn ongoing_to_restore(
    s: &ServiceRef<'_>,
    arn: &str,
    spec: &EcsRollback,
    deadline: Deadline,
) -> Result<Option<bool>, EcsError> {
    let d = match sd::describe(s, arn, deadline).await? {
        Lookup::Found(d) => d,
        Lookup::Absent(code) => {
            sd::note_absent(s, &code);
            return Ok(None);
        }
    };
    let rolling_back = match d.status() {
        Some(ServiceDeploymentStatus::Pending | ServiceDeploymentStatus::InProgress) => false,
        Some(ServiceDeploymentStatus::RollbackRequested | ServiceDeploymentStatus::RollbackInProgress) => true,
        _ => return Ok(None),
    };
    // ECS rolls back to the revision the service ran before: it must be the one to restore, and
    // the deployment must bring the one deployed.
    let target = d.target_service_revision().and_then(|t| t.arn()).map(str::to_owned);
    let sources: Vec<String> = d.source_service_revisions().iter().filter_map(|r| r.arn().map(str::to_owned)).collect();
    let asked: Vec<String> = target.iter().cloned().chain(sources.iter().cloned()).collect();
    let runs = sd::revision_task_definitions(s, &asked, deadline).await?;
    let brings = target.and_then(|t| runs.get(&t)).map(String::as_str);
    let from_restore = !sources.is_empty()
        && sources.iter().all(|r| runs.get(r).map(String::as_str) == Some(spec.restore_task_definition.as_str()));
    Ok((brings == Some(spec.deployed_task_definition.as_str()) && from_restore).then_some(rolling_back))
}

/// Follows ECS's rollback of service deployment `arn` until it ends, or until 10 s before
/// `deadline`: the status it ended with, or that it is still rolling back. A rollback ECS could
/// not finish is an error: the service's state is for people to check.
async fn rolled_back(s: &ServiceRef<'_>, arn: &str, deadline: Deadline) -> Result<String, EcsError> {
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        let status = match sd::describe(s, arn, deadline).await {
            Ok(Lookup::Found(d)) => d.status().cloned(),
            Ok(Lookup::Absent(_)) | Err(_) => return Ok("its end not read".to_owned()),
        };
        match status {
            Some(ServiceDeploymentStatus::RollbackSuccessful) => return Ok("ROLLBACK_SUCCESSFUL".to_owned()),
            Some(
                ref st @ (ServiceDeploymentStatus::RollbackFailed
                | ServiceDeploymentStatus::Stopped
                | ServiceDeploymentStatus::Successful),
            ) => {
                return Err(EcsError::Rollout(format!(
                    "ECS's rollback of service deployment {arn} of {} ended {}: check the service",
                    s.describe(),
                    st.as_str()
                )))
            }
            _ => {}
        }
        if deadline.remaining() < std::time::Duration::from_secs(10) + wait {
            return Ok(format!("still {}", status.map(|x| x.as_str().to_owned()).unwrap_or_default()));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(5));
    }
}

fn with_service_deployment(outcome: Outcome, arn: &str) -> Outcome {
    match outcome {
        Outcome::Succeeded { summary, mut outputs } => {
            outputs.insert(outputs::SERVICE_DEPLOYMENT_ARN.to_owned(), arn.to_owned());
            Outcome::Succeeded { summary, outputs }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_restored_only_while_it_runs_the_deployed_task_definition() {
        let spec = EcsRollback {
            cluster_name: "c".into(),
            service_name: "s".into(),
            restore_task_definition: "arn:aws:ecs:us-east-1:222222222222:task-definition/web:1".into(),
            deployed_task_definition: "arn:aws:ecs:us-east-1:222222222222:task-definition/web:2".into(),
        };
        assert_eq!(guard(&spec.deployed_task_definition, &spec), Guard::Restore);
        assert_eq!(guard(&spec.restore_task_definition, &spec), Guard::AlreadyRestored);
        let Guard::LeftAlone(why) = guard("arn:aws:ecs:us-east-1:222222222222:task-definition/web:3", &spec) else {
            panic!("expected LeftAlone")
        };
        assert!(why.contains("web:3") && why.contains("someone deployed since"), "{why}");
    }
}
