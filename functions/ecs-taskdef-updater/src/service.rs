//! The service: what it runs, moving it to a new revision, and following the rollout.

use crate::EcsError;
use aws_sdk_ecs::types::{DeploymentConfiguration, DeploymentControllerType, DeploymentRolloutState, Service};
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};

/// The ECS service deployed to, with the client of its account, and the deployment acting on it
/// (tagged on the revisions it registers, so that a retry recognises its own).
#[derive(Debug, Clone, Copy)]
pub struct ServiceRef<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub account: &'a str,
    pub cluster: &'a str,
    pub service: &'a str,
    pub deployment: &'a str,
    /// The target role's session, to simulate its permissions before a change (the preflight);
    /// `None`: no preflight.
    pub session: Option<&'a crossdeploy_credentials::TargetSession>,
}

impl ServiceRef<'_> {
    pub fn describe(&self) -> String {
        format!("service {} in cluster {} of account {}", self.service, self.cluster, self.account)
    }
}

/// `DescribeServices` for the one service; a missing cluster or service, or one that is not
/// ACTIVE, is a configuration error naming both.
pub async fn describe_service(s: &ServiceRef<'_>, deadline: Deadline) -> Result<Service, EcsError> {
    let out = retry("DescribeServices", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        s.ecs.describe_services().cluster(s.cluster).services(s.service).send()
    })
    .await
    .map_err(|e| {
        if e.as_service_error().is_some_and(|x| x.is_cluster_not_found_exception()) {
            return EcsError::Configuration(format!(
                "cluster {} does not exist in account {}: check ClusterName and Region",
                s.cluster, s.account
            ));
        }
        EcsError::Aws { action: "describe", resource: s.describe(), error: ErrorInfo::from_sdk(&e) }
    })?;
    let service = out.services.unwrap_or_default().into_iter().find(|x| x.service_name() == Some(s.service));
    match service {
        Some(svc) if svc.status() == Some("ACTIVE") => Ok(svc),
        Some(svc) => Err(EcsError::Configuration(format!(
            "{} is {}, not ACTIVE: deploy to an active service",
            s.describe(),
            svc.status().unwrap_or("in an unknown state")
        ))),
        None => {
            let reason = out
                .failures
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.reason)
                .next()
                .unwrap_or_else(|| "MISSING".to_owned());
            Err(EcsError::Configuration(format!(
                "{} does not exist ({reason}): check ServiceName, ClusterName and Region",
                s.describe()
            )))
        }
    }
}

/// The service must use the rolling ECS deployment controller, whose rollouts crossdeploy follows.
pub fn check_controller(s: &ServiceRef<'_>, service: &Service) -> Result<(), EcsError> {
    match service.deployment_controller().map(|c| c.r#type()) {
        None | Some(DeploymentControllerType::Ecs) => Ok(()),
        Some(other) => Err(EcsError::Configuration(format!(
            "{} uses the {} deployment controller; crossdeploy deploys services with the rolling ECS controller",
            s.describe(),
            other.as_str()
        ))),
    }
}

/// What UpdateService's answer says of the deployment it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Updated {
    /// The id (`ecs-svc/...`) in the service's deployments list: ECS's deployment events name it.
    pub deployment_id: Option<String>,
    /// The service deployment (`currentServiceDeployment`); `None` where ECS does not say.
    pub service_deployment_arn: Option<String>,
}

/// `UpdateService` to `task_definition`, with `configuration` as the service's
/// deploymentConfiguration when given. Sending it again (a retry whose first answer was lost)
/// changes nothing more: the service runs that task definition already, and no new deployment
/// starts without `forceNewDeployment`. ECS refusing the update (InvalidParameterException) is a
/// ConfigurationError: nothing was changed.
pub async fn update_service(
    s: &ServiceRef<'_>,
    task_definition: &str,
    configuration: Option<&DeploymentConfiguration>,
    deadline: Deadline,
) -> Result<Updated, EcsError> {
    let out = retry("UpdateService", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        s.ecs
            .update_service()
            .cluster(s.cluster)
            .service(s.service)
            .task_definition(task_definition)
            .set_deployment_configuration(configuration.cloned())
            .send()
    })
    .await
    .map_err(|e| {
        if e.as_service_error().is_some_and(|x| x.is_invalid_parameter_exception()) {
            return EcsError::Configuration(format!(
                "ECS refused to update {} to {task_definition}: {}; nothing was changed",
                s.describe(),
                ErrorInfo::from_sdk(&e)
            ));
        }
        EcsError::Aws { action: "update", resource: s.describe(), error: ErrorInfo::from_sdk(&e) }
    })?;
    let service = out.service;
    Ok(Updated {
        deployment_id: service
            .as_ref()
            .and_then(|svc| svc.deployments().iter().find(|d| d.task_definition() == Some(task_definition)))
            .and_then(|d| d.id.clone()),
        service_deployment_arn: service.and_then(|svc| svc.current_service_deployment),
    })
}

/// Where a rollout to a task definition stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Completed {
        deployment_id: String,
    },
    InProgress {
        deployment_id: String,
    },
    /// ECS marked the deployment FAILED.
    Failed {
        deployment_id: String,
        reason: String,
    },
    /// The deployment is gone and the service is back on another revision: the circuit breaker
    /// (or someone) rolled it back.
    RolledBack {
        reason: String,
    },
}

/// Reads the rollout to `task_definition` from a described service. `followed`: the deployment
/// followed so far, once known. A deployment replaced by another of the same task definition
/// (a forced new deployment) is followed through its replacement; only a service back on
/// another revision was rolled back. Without `rolloutState` (a service behind a Classic Load
/// Balancer), a deployment is complete once it is the only one, PRIMARY, with every desired
/// task running and none pending.
pub fn assess(service: &Service, task_definition: &str, followed: Option<&str>) -> Rollout {
    let events: Vec<&str> = service.events().iter().take(3).filter_map(|e| e.message()).collect();
    let events = if events.is_empty() { "no service events".to_owned() } else { events.join(" | ") };
    let deployments = service.deployments();
    let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
    let ours = followed
        .and_then(|id| deployments.iter().find(|d| d.id() == Some(id)))
        .or_else(|| {
            deployments.iter().find(|d| d.task_definition() == Some(task_definition) && d.status() == Some("PRIMARY"))
        })
        .or_else(|| deployments.iter().find(|d| d.task_definition() == Some(task_definition)));
    // Ours was replaced: by a deployment of the same revision (followed on), or of another.
    let ours = match (ours, primary) {
        (Some(d), Some(p)) if d.status() != Some("PRIMARY") && p.task_definition() == Some(task_definition) => Some(p),
        (None, Some(p)) if p.task_definition() == Some(task_definition) => Some(p),
        (Some(d), Some(p)) if d.status() != Some("PRIMARY") => {
            return Rollout::RolledBack {
                reason: format!(
                    "deployment {} of {} replaced it (service events: {events})",
                    p.id().unwrap_or("?"),
                    p.task_definition().unwrap_or("another revision")
                ),
            }
        }
        (ours, _) => ours,
    };
    let Some(d) = ours else {
        return Rollout::RolledBack {
            reason: format!(
                "the service runs {} again (service events: {events})",
                service.task_definition().unwrap_or("another revision")
            ),
        };
    };
    let id = d.id().unwrap_or_default().to_owned();
    match d.rollout_state() {
        Some(DeploymentRolloutState::Completed) => Rollout::Completed { deployment_id: id },
        Some(DeploymentRolloutState::Failed) => Rollout::Failed {
            deployment_id: id,
            reason: format!("{} (service events: {events})", d.rollout_state_reason().unwrap_or("ECS gave no reason")),
        },
        Some(_) => Rollout::InProgress { deployment_id: id },
        None => {
            let steady = deployments.len() == 1
                && d.status() == Some("PRIMARY")
                && d.running_count() == d.desired_count()
                && d.pending_count() == 0;
            if steady {
                Rollout::Completed { deployment_id: id }
            } else {
                Rollout::InProgress { deployment_id: id }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::Deployment;

    const NEW: &str = "arn:aws:ecs:us-east-1:222222222222:task-definition/web:2";
    const OLD: &str = "arn:aws:ecs:us-east-1:222222222222:task-definition/web:1";

    fn d(id: &str, status: &str, td: &str, state: Option<DeploymentRolloutState>, running: i32) -> Deployment {
        Deployment::builder()
            .id(id)
            .status(status)
            .task_definition(td)
            .set_rollout_state(state)
            .desired_count(2)
            .running_count(running)
            .pending_count(2 - running)
            .build()
    }

    fn service(deployments: Vec<Deployment>, td: &str) -> Service {
        Service::builder().set_deployments(Some(deployments)).task_definition(td).build()
    }

    #[test]
    fn a_forced_new_deployment_of_the_same_revision_is_followed_not_called_a_rollback() {
        use DeploymentRolloutState::*;
        let s = service(
            vec![
                d("ecs-svc/2", "PRIMARY", NEW, Some(InProgress), 0),
                d("ecs-svc/1", "ACTIVE", NEW, Some(InProgress), 2),
            ],
            NEW,
        );
        assert_eq!(assess(&s, NEW, Some("ecs-svc/1")), Rollout::InProgress { deployment_id: "ecs-svc/2".into() });
        let s = service(vec![d("ecs-svc/2", "PRIMARY", NEW, Some(Completed), 2)], NEW);
        assert_eq!(assess(&s, NEW, Some("ecs-svc/1")), Rollout::Completed { deployment_id: "ecs-svc/2".into() });
        // Replaced by a deployment of another revision: rolled back.
        let s = service(
            vec![
                d("ecs-svc/3", "PRIMARY", OLD, Some(InProgress), 0),
                d("ecs-svc/1", "ACTIVE", NEW, Some(InProgress), 2),
            ],
            OLD,
        );
        assert!(matches!(assess(&s, NEW, Some("ecs-svc/1")), Rollout::RolledBack { .. }));
        let s = service(vec![d("ecs-svc/3", "PRIMARY", OLD, Some(Completed), 2)], OLD);
        assert!(matches!(assess(&s, NEW, Some("ecs-svc/1")), Rollout::RolledBack { .. }));
    }

    #[test]
    fn without_rollout_state_a_classic_load_balancer_service_is_judged_by_its_counts() {
        let s = service(vec![d("ecs-svc/2", "PRIMARY", NEW, None, 1), d("ecs-svc/1", "ACTIVE", OLD, None, 1)], NEW);
        assert_eq!(assess(&s, NEW, None), Rollout::InProgress { deployment_id: "ecs-svc/2".into() });
        let s = service(vec![d("ecs-svc/2", "PRIMARY", NEW, None, 1)], NEW);
        assert_eq!(
            assess(&s, NEW, None),
            Rollout::InProgress { deployment_id: "ecs-svc/2".into() },
            "one task still pending"
        );
        let s = service(vec![d("ecs-svc/2", "PRIMARY", NEW, None, 2)], NEW);
        assert_eq!(assess(&s, NEW, None), Rollout::Completed { deployment_id: "ecs-svc/2".into() });
    }
}
