//! ECS call sequences and the rollouts moto cannot produce, with aws-smithy-mocks.

use aws_sdk_ecs::operation::describe_service_deployments::DescribeServiceDeploymentsOutput;
use aws_sdk_ecs::operation::describe_service_revisions::DescribeServiceRevisionsOutput;
use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
use aws_sdk_ecs::operation::list_service_deployments::{ListServiceDeploymentsError, ListServiceDeploymentsOutput};
use aws_sdk_ecs::operation::register_task_definition::{RegisterTaskDefinitionError, RegisterTaskDefinitionOutput};
use aws_sdk_ecs::operation::stop_service_deployment::{StopServiceDeploymentError, StopServiceDeploymentOutput};
use aws_sdk_ecs::operation::update_service::UpdateServiceError;
use aws_sdk_ecs::operation::update_service::UpdateServiceOutput;
use aws_sdk_ecs::types::{
    ContainerDefinition, Deployment, DeploymentRolloutState, Service, ServiceDeployment, ServiceDeploymentBrief,
    ServiceDeploymentStatus, ServiceEvent, ServiceRevision, ServiceRevisionSummary, StopServiceDeploymentStopType, Tag,
    TaskDefinition,
};
use aws_sdk_ecs::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use crossdeploy_aws::{Deadline, UpdaterFailure};
use crossdeploy_protocol::{FailureType, Outcome, Serving};
use ecs_taskdef_updater::images::ImageChange;
use ecs_taskdef_updater::{deploy_images, follow, Alarms, Asked, EcsState, ServiceRef};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const OLD: &str = "arn:aws:ecs:us-east-1:333333333333:task-definition/web:7";
const NEW: &str = "arn:aws:ecs:us-east-1:333333333333:task-definition/web:8";
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn deployment(td: &str, status: &str, state: DeploymentRolloutState, reason: &str) -> Deployment {
    Deployment::builder()
        .id(if td == NEW { "ecs-svc/new" } else { "ecs-svc/old" })
        .status(status)
        .task_definition(td)
        .rollout_state(state)
        .rollout_state_reason(reason)
        .build()
}

fn service(td: &str, deployments: Vec<Deployment>, events: &[&str]) -> DescribeServicesOutput {
    let mut s =
        Service::builder().service_name("web").status("ACTIVE").task_definition(td).set_deployments(Some(deployments));
    for e in events {
        s = s.events(ServiceEvent::builder().message(*e).build());
    }
    DescribeServicesOutput::builder().services(s.build()).build()
}

fn settled_on_old() -> DescribeServicesOutput {
    service(OLD, vec![deployment(OLD, "PRIMARY", DeploymentRolloutState::Completed, "done")], &[])
}

fn new_in_progress() -> DescribeServicesOutput {
    service(
        NEW,
        vec![
            deployment(NEW, "PRIMARY", DeploymentRolloutState::InProgress, "in progress"),
            deployment(OLD, "ACTIVE", DeploymentRolloutState::Completed, "done"),
        ],
        &[],
    )
}

fn task_definition(web_image: &str) -> DescribeTaskDefinitionOutput {
    DescribeTaskDefinitionOutput::builder()
        .task_definition(
            TaskDefinition::builder()
                .task_definition_arn(OLD)
                .family("web")
                .revision(7)
                .cpu("256")
                .memory("512")
                .container_definitions(
                    ContainerDefinition::builder().name("web").image(web_image).essential(true).build(),
                )
                .container_definitions(ContainerDefinition::builder().name("sidecar").image("envoy:1.30").build())
                .build(),
        )
        .tags(Tag::builder().key("team").value("orders").build())
        .build()
}

fn describe_td(image: &'static str) -> Rule {
    mock!(Client::describe_task_definition).then_output(move || task_definition(image))
}

fn register_ok() -> Rule {
    mock!(Client::register_task_definition)
        .match_requests(|r| {
            let c = r.container_definitions();
            r.family() == Some("web")
                && r.cpu() == Some("256")
                && c[0].image() == Some("web:new")
                && c[1].image() == Some("envoy:1.30")
                && r.tags().iter().any(|t| t.key() == Some("team"))
                && r.tags()
                    .iter()
                    .any(|t| t.key() == Some("crossdeploy:previous-task-definition") && t.value() == Some(OLD))
        })
        .then_output(|| {
            RegisterTaskDefinitionOutput::builder()
                .task_definition(TaskDefinition::builder().task_definition_arn(NEW).build())
                .build()
        })
}

fn update_ok() -> Rule {
    mock!(Client::update_service)
        .match_requests(|r| {
            r.task_definition() == Some(NEW) && r.cluster() == Some("prod") && r.service() == Some("web")
        })
        .then_output(|| UpdateServiceOutput::builder().build())
}

/// UpdateService back to the previous task definition: crossdeploy putting the service back.
fn restore_ok() -> Rule {
    mock!(Client::update_service)
        .match_requests(|r| r.task_definition() == Some(OLD))
        .then_output(|| UpdateServiceOutput::builder().build())
}

fn web_new() -> Vec<ImageChange> {
    vec![ImageChange { container: "web".into(), image: "web:new".into() }]
}

fn target(ecs: &Client) -> ServiceRef<'_> {
    ServiceRef { ecs, account: "333333333333", cluster: "prod", service: "web", deployment: "job-1", session: None }
}

fn cw() -> aws_sdk_cloudwatch::Client {
    let rule = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_output(|| {
        aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder()
            .metric_alarms(
                aws_sdk_cloudwatch::types::MetricAlarm::builder()
                    .alarm_name("web-5xx")
                    .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
                    .state_reason("Threshold Crossed: 5xx above 1%")
                    .build(),
            )
            .build()
    });
    mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule])
}

/// No alarms named: CloudWatch is never called.
fn no_alarms(cw: &aws_sdk_cloudwatch::Client) -> Alarms<'_> {
    Alarms { names: &[], cloudwatch: cw }
}

/// The action leaves the service's deployment configuration as it is.
fn keep() -> Asked<'static> {
    Asked { strategy: None, bake_time_minutes: None, ecs_alarms: &[] }
}

/// An ECS without the service deployment API (a partition or region that lacks it): the rollout
/// is read from DescribeServices' deployments list, as before service deployments.
fn legacy_ecs(rules: &[&Rule]) -> Client {
    let absent: &'static Rule = Box::leak(Box::new(mock!(Client::list_service_deployments).then_error(|| {
        ListServiceDeploymentsError::generic(
            ErrorMetadata::builder().code("UnknownOperationException").message("unknown operation").build(),
        )
    })));
    let mut rules = rules.to_vec();
    rules.push(absent);
    mock_client!(aws_sdk_ecs, RuleMode::MatchAny, rules)
}

fn minute() -> Deadline {
    Deadline::after(Duration::from_secs(600))
}

#[tokio::test(start_paused = true)]
async fn a_rollout_in_progress_then_completed_succeeds_with_the_three_outputs() {
    let describe = mock!(Client::describe_services)
        .sequence()
        .output(settled_on_old)
        .output(new_in_progress)
        .times(2)
        .output(|| {
            service(
                NEW,
                vec![deployment(
                    NEW,
                    "PRIMARY",
                    DeploymentRolloutState::Completed,
                    "ECS deployment ecs-svc/new completed.",
                )],
                &[],
            )
        })
        .build();
    let (td, register, update) = (describe_td("web:old"), register_ok(), update_ok());
    let ecs = legacy_ecs(&[&describe, &td, &register, &update]);

    let outcome =
        deploy_images(&target(&ecs), &web_new(), &keep(), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["TaskDefinitionArn"], NEW);
    assert_eq!(outputs["PreviousTaskDefinitionArn"], OLD);
    assert_eq!(outputs["DeploymentId"], "ecs-svc/new");
    assert_eq!((register.num_calls(), update.num_calls(), describe.num_calls()), (1, 1, 4));
}

#[tokio::test(start_paused = true)]
async fn a_failed_rollout_puts_the_service_back_and_fails_the_job_with_the_reason_ecs_gave() {
    let describe = mock!(Client::describe_services)
        .sequence()
        .output(settled_on_old)
        .output(|| {
            service(
                NEW,
                vec![deployment(NEW, "PRIMARY", DeploymentRolloutState::Failed, "ECS deployment circuit breaker: tasks failed to start.")],
                &["(service web) was unable to place a task because no container instance met all of its requirements."],
            )
        })
        .build();
    let (td, register, update, restore) = (describe_td("web:old"), register_ok(), update_ok(), restore_ok());
    let ecs = legacy_ecs(&[&describe, &td, &register, &update, &restore]);

    let err =
        deploy_images(&target(&ecs), &web_new(), &keep(), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();

    assert_eq!(err.failure_type(), FailureType::JobFailed);
    let msg = err.to_string();
    assert!(msg.contains("failed: ECS deployment circuit breaker: tasks failed to start."), "{msg}");
    assert!(msg.contains("unable to place a task"), "{msg}");
    assert!(msg.contains("service web in cluster prod of account 333333333333"), "{msg}");
    // The service still ran the new revision: crossdeploy put it back, and says so.
    assert_eq!(restore.num_calls(), 1);
    assert!(msg.contains(&format!("was updated back to {OLD}")), "{msg}");
    let stands = err.stands().expect("a failure after the service changed says what it runs");
    assert_eq!((stands.serving, stands.previous.as_str(), stands.deployed.as_str()), (Serving::Previous, OLD, NEW));
}

#[tokio::test(start_paused = true)]
async fn a_circuit_breaker_rollback_fails_the_job() {
    let describe = mock!(Client::describe_services)
        .sequence()
        .output(settled_on_old)
        .output(new_in_progress)
        .output(|| {
            service(
                OLD,
                vec![deployment(OLD, "PRIMARY", DeploymentRolloutState::InProgress, "rolling back")],
                &["(service web) rolling back to deployment ecs-svc/old."],
            )
        })
        .build();
    let (td, register, update) = (describe_td("web:old"), register_ok(), update_ok());
    let ecs = legacy_ecs(&[&describe, &td, &register, &update]);

    let err =
        deploy_images(&target(&ecs), &web_new(), &keep(), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();

    let msg = err.to_string();
    assert!(
        msg.contains("rolled back") && msg.contains(OLD) && msg.contains("rolling back to deployment ecs-svc/old"),
        "{msg}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollout_that_outlives_timeout_minutes_puts_the_service_back_and_fails() {
    let describe = mock!(Client::describe_services).then_output(new_in_progress);
    let restore = restore_ok();
    let ecs = legacy_ecs(&[&describe, &restore]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let state = EcsState::FollowingRollout {
        task_definition_arn: NEW.into(),
        previous_task_definition_arn: OLD.into(),
        started_at: now - 31 * 60,
        deployment_id: None,
        service_deployment_arn: None,
        not_ours: false,
    };

    let err = follow(&target(&ecs), state, TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();

    assert!(err.to_string().contains("did not complete within 30 minutes"), "{err}");
    // TimeoutMinutes is crossdeploy's to keep: the service goes back to what stood before.
    assert_eq!(restore.num_calls(), 1);
    assert_eq!(err.stands().map(|s| s.serving), Some(Serving::Previous));
}

#[tokio::test(start_paused = true)]
async fn a_throttled_register_is_retried() {
    let describe = mock!(Client::describe_services)
        .sequence()
        .output(settled_on_old)
        .output(|| service(NEW, vec![deployment(NEW, "PRIMARY", DeploymentRolloutState::Completed, "done")], &[]))
        .build();
    let register = mock!(Client::register_task_definition)
        .sequence()
        .error(|| {
            RegisterTaskDefinitionError::generic(
                ErrorMetadata::builder().code("ThrottlingException").message("Rate exceeded").build(),
            )
        })
        .times(3)
        .output(|| {
            RegisterTaskDefinitionOutput::builder()
                .task_definition(TaskDefinition::builder().task_definition_arn(NEW).build())
                .build()
        })
        .build();
    let (td, update) = (describe_td("web:old"), update_ok());
    let ecs = legacy_ecs(&[&describe, &td, &register, &update]);

    let outcome =
        deploy_images(&target(&ecs), &web_new(), &keep(), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap();

    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(register.num_calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_wait_near_the_deadline_hands_back_its_state_and_the_next_call_resumes() {
    let describe = mock!(Client::describe_services)
        .sequence()
        .output(settled_on_old)
        .output(new_in_progress)
        // Reads 1, 2, 4 then 3 s apart (the last 15 s are kept back): five in the first call.
        .times(6)
        .output(|| service(NEW, vec![deployment(NEW, "PRIMARY", DeploymentRolloutState::Completed, "done")], &[]))
        .build();
    let (td, register, update) = (describe_td("web:old"), register_ok(), update_ok());
    let ecs = legacy_ecs(&[&describe, &td, &register, &update]);

    let first = deploy_images(
        &target(&ecs),
        &web_new(),
        &keep(),
        TIMEOUT,
        &no_alarms(&cw()),
        Deadline::after(Duration::from_secs(25)),
    )
    .await
    .unwrap();
    let Outcome::InProgress { state, .. } = first else { panic!("{first:?}") };
    assert!(state.to_string().len() < 2048);
    let state: EcsState = serde_json::from_value(state).unwrap();
    let second = follow(&target(&ecs), state, TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap();

    let Outcome::Succeeded { outputs, .. } = second else { panic!("{second:?}") };
    assert_eq!((outputs["TaskDefinitionArn"].as_str(), outputs["PreviousTaskDefinitionArn"].as_str()), (NEW, OLD));
    assert_eq!((register.num_calls(), update.num_calls()), (1, 1), "registered and updated once");
}

#[tokio::test(start_paused = true)]
async fn a_service_that_already_runs_the_images_registers_nothing() {
    let describe = mock!(Client::describe_services).then_output(settled_on_old);
    let (td, register, update) = (describe_td("web:new"), register_ok(), update_ok());
    let ecs = legacy_ecs(&[&describe, &td, &register, &update]);

    let outcome =
        deploy_images(&target(&ecs), &web_new(), &keep(), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap();

    let Outcome::Succeeded { outputs, summary } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["TaskDefinitionArn"], OLD);
    assert!(summary.contains("nothing changed"), "{summary}");
    assert_eq!(describe.num_calls(), 1, "the service is described once");
    assert_eq!((register.num_calls(), update.num_calls()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_container_is_a_configuration_error_listing_the_containers() {
    let describe = mock!(Client::describe_services).then_output(settled_on_old);
    let (td, register, update) = (describe_td("web:old"), register_ok(), update_ok());
    let ecs = legacy_ecs(&[&describe, &td, &register, &update]);

    let err = deploy_images(
        &target(&ecs),
        &[ImageChange { container: "api".into(), image: "api:1".into() }],
        &keep(),
        TIMEOUT,
        &no_alarms(&cw()),
        minute(),
    )
    .await
    .unwrap_err();

    assert_eq!(err.failure_type(), FailureType::ConfigurationError);
    assert!(err.to_string().contains("`api`") && err.to_string().contains("web, sidecar"), "{err}");
    assert_eq!((register.num_calls(), update.num_calls()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_alarm_during_the_rollout_puts_the_service_back_and_fails_naming_it() {
    let describe = mock!(Client::describe_services).then_output(new_in_progress);
    let restore = mock!(Client::update_service)
        .match_requests(|r| r.task_definition() == Some(OLD))
        .then_output(|| UpdateServiceOutput::builder().build());
    let ecs = legacy_ecs(&[&describe, &restore]);
    let cw = cw();
    let names = vec!["web-5xx".to_owned()];
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let state = EcsState::FollowingRollout {
        task_definition_arn: NEW.into(),
        previous_task_definition_arn: OLD.into(),
        started_at: now,
        deployment_id: None,
        service_deployment_arn: None,
        not_ours: false,
    };

    let err =
        follow(&target(&ecs), state, TIMEOUT, &Alarms { names: &names, cloudwatch: &cw }, minute()).await.unwrap_err();

    let msg = err.to_string();
    assert!(
        msg.contains("alarm web-5xx in account 333333333333 is in ALARM (Threshold Crossed: 5xx above 1%)"),
        "{msg}"
    );
    assert!(msg.contains(&format!("updated back to {OLD}")), "{msg}");
    assert_eq!(restore.num_calls(), 1, "the service is back on the previous task definition");
}

#[tokio::test(start_paused = true)]
async fn an_alarm_already_in_alarm_stops_the_deployment_before_anything_is_registered() {
    let describe = mock!(Client::describe_services).then_output(settled_on_old);
    let (td, register, update) = (describe_td("web:old"), register_ok(), update_ok());
    let ecs = legacy_ecs(&[&describe, &td, &register, &update]);
    let cw = cw();
    let names = vec!["web-5xx".to_owned()];

    let err = deploy_images(
        &target(&ecs),
        &web_new(),
        &keep(),
        TIMEOUT,
        &Alarms { names: &names, cloudwatch: &cw },
        minute(),
    )
    .await
    .unwrap_err();

    assert!(err.to_string().contains("alarm web-5xx in account 333333333333 is in ALARM already"), "{err}");
    assert_eq!((register.num_calls(), update.num_calls()), (0, 0));
}

fn rollback_spec() -> crossdeploy_protocol::EcsRollback {
    crossdeploy_protocol::EcsRollback {
        cluster_name: "prod".into(),
        service_name: "web".into(),
        restore_task_definition: OLD.into(),
        deployed_task_definition: NEW.into(),
    }
}

#[tokio::test]
async fn a_rollback_updates_the_service_back_to_the_recorded_task_definition() {
    let settled_on_new =
        || service(NEW, vec![deployment(NEW, "PRIMARY", DeploymentRolloutState::Completed, "done")], &[]);
    let describe = mock!(Client::describe_services).then_output(settled_on_new);
    let back = mock!(Client::update_service)
        .match_requests(|r| {
            r.task_definition() == Some(OLD) && r.cluster() == Some("prod") && r.service() == Some("web")
        })
        .then_output(|| {
            UpdateServiceOutput::builder()
                .service(
                    Service::builder()
                        .deployments(deployment(OLD, "PRIMARY", DeploymentRolloutState::InProgress, "rolling back"))
                        .build(),
                )
                .build()
        });
    let ecs = legacy_ecs(&[&describe, &back]);
    let outcome = ecs_taskdef_updater::rollback_service(
        &target(&ecs),
        &rollback_spec(),
        None,
        "rollback-1",
        "alarm web-5xx",
        minute(),
    )
    .await
    .unwrap();
    let Outcome::Succeeded { outputs, summary } = outcome else { panic!("expected success") };
    assert_eq!(outputs["RollbackResult"], "Restored");
    assert_eq!(outputs["Current"], OLD);
    assert!(summary.contains("ecs-svc/old") && summary.contains("alarm web-5xx"), "{summary}");
    assert_eq!(back.num_calls(), 1);
}

#[tokio::test]
async fn a_rollback_of_a_service_ecs_rolled_back_already_changes_nothing() {
    let describe = mock!(Client::describe_services).then_output(settled_on_old);
    let update = mock!(Client::update_service).then_output(|| UpdateServiceOutput::builder().build());
    let ecs = legacy_ecs(&[&describe, &update]);
    let outcome =
        ecs_taskdef_updater::rollback_service(&target(&ecs), &rollback_spec(), None, "rollback-1", "x", minute())
            .await
            .unwrap();
    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("expected success") };
    assert_eq!(outputs["RollbackResult"], "AlreadyRestored");
    assert_eq!(update.num_calls(), 0);
}

/// The revision the service runs, tagged by deployment `by` over `previous`.
fn tagged_new(by: &'static str, previous: &'static str) -> Rule {
    mock!(Client::describe_task_definition).match_requests(|r| r.task_definition() == Some(NEW)).then_output(
        move || {
            DescribeTaskDefinitionOutput::builder()
                .task_definition(TaskDefinition::builder().task_definition_arn(NEW).family("web").revision(8).build())
                .tags(Tag::builder().key("crossdeploy:deployment").value(by).build())
                .tags(Tag::builder().key("crossdeploy:previous-task-definition").value(previous).build())
                .build()
        },
    )
}

#[tokio::test]
async fn a_rollback_by_mark_restores_what_the_deployments_own_revision_names_and_nothing_else() {
    let by_mark = || crossdeploy_protocol::EcsRollback {
        restore_task_definition: String::new(),
        deployed_task_definition: String::new(),
        ..rollback_spec()
    };
    // The service runs the revision deployment job-1 registered (still rolling out): back to
    // the revision its tag names.
    let describe = mock!(Client::describe_services).then_output(new_in_progress);
    let back = mock!(Client::update_service).match_requests(|r| r.task_definition() == Some(OLD)).then_output(|| {
        UpdateServiceOutput::builder()
            .service(
                Service::builder()
                    .deployments(deployment(OLD, "PRIMARY", DeploymentRolloutState::InProgress, "rolling back"))
                    .build(),
            )
            .build()
    });
    let (ours, theirs) = (tagged_new("job-1", OLD), tagged_new("job-2", OLD));
    let ecs = legacy_ecs(&[&describe, &ours, &back]);
    let outcome = ecs_taskdef_updater::rollback_service(&target(&ecs), &by_mark(), Some("job-1"), "r-1", "x", minute())
        .await
        .unwrap();
    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("expected success") };
    assert_eq!((outputs["RollbackResult"].as_str(), outputs["Current"].as_str()), ("Restored", OLD));
    assert_eq!(back.num_calls(), 1);

    // Another deployment's revision: nothing of job-1 stands, nothing changes.
    let update = mock!(Client::update_service).then_output(|| UpdateServiceOutput::builder().build());
    let ecs = legacy_ecs(&[&describe, &theirs, &update]);
    let outcome = ecs_taskdef_updater::rollback_service(&target(&ecs), &by_mark(), Some("job-1"), "r-2", "x", minute())
        .await
        .unwrap();
    let Outcome::Succeeded { outputs, summary } = outcome else { panic!("expected success") };
    assert_eq!(outputs["RollbackResult"], "AlreadyRestored");
    assert!(summary.contains("nothing of it stands"), "{summary}");
    assert_eq!(update.num_calls(), 0);

    // A rollback with neither a deployed revision nor a deployment is refused.
    let e = ecs_taskdef_updater::rollback_service(&target(&ecs), &by_mark(), None, "r-3", "x", minute()).await;
    assert!(e.is_err());
    assert_eq!(update.num_calls(), 0);
}

/// What the permissions preflight asks for: the service's calls on its ARN, the tag of the
/// revision about to be registered (with `ecs:CreateAction`), and passing the task's roles to ECS.
#[test]
fn the_preflight_asks_for_every_call_of_the_deployment_on_its_resources() {
    let service = aws_sdk_ecs::types::Service::builder()
        .service_arn("arn:aws:ecs:eu-west-1:333333333333:service/prod/app-web")
        .service_name("app-web")
        .cluster_arn("arn:aws:ecs:eu-west-1:333333333333:cluster/prod")
        .build();
    let td = aws_sdk_ecs::types::TaskDefinition::builder()
        .family("app-web")
        .revision(7)
        .task_role_arn("arn:aws:iam::333333333333:role/app-web-task")
        .execution_role_arn("arn:aws:iam::333333333333:role/app-web-exec")
        .build();
    let needed = ecs_taskdef_updater::needed_calls(&service, &td, &[]);
    let find = |action: &str, resource: &str| needed.iter().find(|n| n.action == action && n.resource == resource);
    assert!(find("ecs:UpdateService", "arn:aws:ecs:eu-west-1:333333333333:service/prod/app-web").is_some());
    assert!(find("ecs:RegisterTaskDefinition", "*").is_some());
    let tag = find("ecs:TagResource", "arn:aws:ecs:eu-west-1:333333333333:task-definition/app-web:8").unwrap();
    assert_eq!(tag.context, vec![("ecs:CreateAction", "RegisterTaskDefinition".to_owned())]);
    for role in ["arn:aws:iam::333333333333:role/app-web-task", "arn:aws:iam::333333333333:role/app-web-exec"] {
        let pass = find("iam:PassRole", role).unwrap();
        assert_eq!(pass.context, vec![("iam:PassedToService", "ecs-tasks.amazonaws.com".to_owned())]);
    }
    assert!(!needed.iter().any(|n| n.action == "cloudwatch:DescribeAlarms"), "no alarms, no DescribeAlarms");
    // Following the service deployment, and stopping it with rollback.
    assert!(find("ecs:ListServiceDeployments", "arn:aws:ecs:eu-west-1:333333333333:service/prod/app-web").is_some());
    let deployments = "arn:aws:ecs:eu-west-1:333333333333:service-deployment/prod/app-web/*";
    assert!(find("ecs:DescribeServiceDeployments", deployments).is_some());
    assert!(find("ecs:StopServiceDeployment", deployments).is_some());
    assert!(find("ecs:DescribeServiceRevisions", "arn:aws:ecs:eu-west-1:333333333333:service-revision/prod/app-web/*")
        .is_some());
}

// ---- Service deployments: the paths the local AWS does not take ------------------------------

const SD: &str = "arn:aws:ecs:us-east-1:333333333333:service-deployment/prod/web/sd-new";
const SD_LATER: &str = "arn:aws:ecs:us-east-1:333333333333:service-deployment/prod/web/sd-later";

fn sd(arn: &str, status: ServiceDeploymentStatus, reason: Option<&str>) -> DescribeServiceDeploymentsOutput {
    DescribeServiceDeploymentsOutput::builder()
        .service_deployments(
            ServiceDeployment::builder()
                .service_deployment_arn(arn)
                .status(status)
                .set_status_reason(reason.map(str::to_owned))
                .target_service_revision(
                    ServiceRevisionSummary::builder()
                        .arn("rev-new")
                        .requested_task_count(1)
                        .running_task_count(0)
                        .build(),
                )
                .build(),
        )
        .build()
}

fn describe_sd(arn: &'static str, statuses: Vec<(ServiceDeploymentStatus, Option<&'static str>)>) -> Rule {
    let mut rule = mock!(Client::describe_service_deployments)
        .match_requests(move |r| r.service_deployment_arns() == [arn])
        .sequence();
    for (status, reason) in statuses {
        rule = rule.output(move || sd(arn, status.clone(), reason));
    }
    rule.build()
}

/// UpdateService to the new revision, answering with the service deployment it started.
fn update_with_sd() -> Rule {
    mock!(Client::update_service).match_requests(|r| r.task_definition() == Some(NEW)).then_output(|| {
        UpdateServiceOutput::builder()
            .service(
                Service::builder()
                    .task_definition(NEW)
                    .current_service_deployment(SD)
                    .deployments(deployment(NEW, "PRIMARY", DeploymentRolloutState::InProgress, "in progress"))
                    .build(),
            )
            .build()
    })
}

fn following(started_at: u64) -> EcsState {
    EcsState::FollowingRollout {
        task_definition_arn: NEW.into(),
        previous_task_definition_arn: OLD.into(),
        started_at,
        deployment_id: Some("ecs-svc/new".into()),
        service_deployment_arn: Some(SD.into()),
        not_ours: false,
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(start_paused = true)]
async fn the_service_deployment_the_update_started_is_followed_to_successful() {
    use ServiceDeploymentStatus as S;
    let describe = mock!(Client::describe_services).then_output(settled_on_old);
    let follow_sd = describe_sd(SD, vec![(S::Pending, None), (S::InProgress, None), (S::Successful, None)]);
    let (td, register, update) = (describe_td("web:old"), register_ok(), update_with_sd());
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &td, &register, &update, &follow_sd]);

    let outcome =
        deploy_images(&target(&ecs), &web_new(), &keep(), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap();

    let Outcome::Succeeded { outputs, summary } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["ServiceDeploymentArn"], SD);
    assert_eq!((outputs["TaskDefinitionArn"].as_str(), outputs["DeploymentId"].as_str()), (NEW, "ecs-svc/new"));
    assert!(summary.contains("service deployment sd-new SUCCESSFUL"), "{summary}");
    assert_eq!(follow_sd.num_calls(), 3);
    assert_eq!(describe.num_calls(), 1, "the deployments list is not read");
}

#[tokio::test(start_paused = true)]
async fn a_rollback_ecs_could_not_finish_leaves_the_service_unknown_with_ecs_reason() {
    use ServiceDeploymentStatus as S;
    let follow_sd = describe_sd(
        SD,
        vec![
            (S::RollbackInProgress, Some("ECS deployment circuit breaker: tasks failed to start.")),
            (S::RollbackFailed, Some("ECS deployment circuit breaker: tasks failed to start.")),
        ],
    );
    let describe = mock!(Client::describe_services).then_output(new_in_progress);
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&follow_sd, &describe]);

    let err = follow(&target(&ecs), following(now()), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();

    let msg = err.to_string();
    assert!(
        msg.contains(
            "ECS could not roll it back: service deployment sd-new ROLLBACK_FAILED; ECS deployment circuit breaker"
        ),
        "{msg}"
    );
    let stands = err.stands().unwrap();
    assert_eq!((stands.serving, stands.service_deployment_arn.as_deref()), (Serving::Unknown, Some(SD)));
}

#[tokio::test(start_paused = true)]
async fn a_deployment_replaced_by_one_of_the_same_revision_is_followed_through_it() {
    use ServiceDeploymentStatus as S;
    let stopped = describe_sd(SD, vec![(S::Stopped, Some("a newer service deployment started"))]);
    let later = describe_sd(SD_LATER, vec![(S::Successful, None)]);
    let describe = mock!(Client::describe_services).then_output(|| {
        DescribeServicesOutput::builder()
            .services(
                Service::builder()
                    .service_name("web")
                    .status("ACTIVE")
                    .task_definition(NEW)
                    .current_service_deployment(SD_LATER)
                    .build(),
            )
            .build()
    });
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&stopped, &later, &describe]);

    let outcome = follow(&target(&ecs), following(now()), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["ServiceDeploymentArn"], SD_LATER);
}

#[tokio::test(start_paused = true)]
async fn an_alarm_stops_the_deployment_with_rollback_and_no_second_update() {
    use ServiceDeploymentStatus as S;
    let follow_sd = describe_sd(
        SD,
        vec![
            (S::InProgress, None),
            (S::RollbackRequested, None),
            (S::RollbackInProgress, None),
            (S::RollbackSuccessful, None),
        ],
    );
    let stop = mock!(Client::stop_service_deployment)
        .match_requests(|r| {
            r.service_deployment_arn() == Some(SD) && r.stop_type() == Some(&StopServiceDeploymentStopType::Rollback)
        })
        .then_output(|| StopServiceDeploymentOutput::builder().service_deployment_arn(SD).build());
    let restore = restore_ok();
    let describe = mock!(Client::describe_services).then_output(|| service(OLD, vec![], &[]));
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&follow_sd, &stop, &restore, &describe]);
    let (cw, names) = (cw(), vec!["web-5xx".to_owned()]);

    let err = follow(&target(&ecs), following(now()), TIMEOUT, &Alarms { names: &names, cloudwatch: &cw }, minute())
        .await
        .unwrap_err();

    let msg = err.to_string();
    assert!(msg.contains("alarm web-5xx in account 333333333333 is in ALARM (Threshold Crossed: 5xx above 1%) during service deployment sd-new"), "{msg}");
    assert!(
        msg.contains(&format!("runs {OLD} again: ECS rolled it back (service deployment sd-new ROLLBACK_SUCCESSFUL)")),
        "{msg}"
    );
    assert_eq!((stop.num_calls(), restore.num_calls()), (1, 0), "stopped once, never updated back");
    assert_eq!(err.stands().map(|s| s.serving), Some(Serving::Previous));
}

#[tokio::test(start_paused = true)]
async fn a_stop_that_comes_after_the_deployment_finished_updates_the_service_back() {
    use ServiceDeploymentStatus as S;
    let follow_sd = describe_sd(SD, vec![(S::InProgress, None)]);
    let stop = mock!(Client::stop_service_deployment).then_error(|| {
        StopServiceDeploymentError::ConflictException(
            aws_sdk_ecs::types::error::ConflictException::builder()
                .message("The service deployment is SUCCESSFUL")
                .build(),
        )
    });
    let describe = mock!(Client::describe_services).then_output(|| service(NEW, vec![], &[]));
    let restore = restore_ok();
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&follow_sd, &stop, &describe, &restore]);

    let err =
        follow(&target(&ecs), following(now() - 31 * 60), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();

    assert!(err.to_string().contains("did not complete within 30 minutes (TimeoutMinutes)"), "{err}");
    assert_eq!((stop.num_calls(), restore.num_calls()), (1, 1));
    assert_eq!(err.stands().map(|s| s.serving), Some(Serving::Previous));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_outlives_the_invocation_hands_back_its_state_and_the_failure_comes_at_its_end() {
    use ServiceDeploymentStatus as S;
    let mut statuses = vec![(S::InProgress, None)];
    statuses.extend(std::iter::repeat_n((S::RollbackInProgress, None), 12));
    statuses.push((S::RollbackSuccessful, None));
    let follow_sd = describe_sd(SD, statuses);
    let stop = mock!(Client::stop_service_deployment)
        .then_output(|| StopServiceDeploymentOutput::builder().service_deployment_arn(SD).build());
    let describe = mock!(Client::describe_services).then_output(|| service(OLD, vec![], &[]));
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&follow_sd, &stop, &describe]);

    let first = follow(
        &target(&ecs),
        following(now() - 31 * 60),
        TIMEOUT,
        &no_alarms(&cw()),
        Deadline::after(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let Outcome::InProgress { state, stands, .. } = first else { panic!("{first:?}") };
    let state: EcsState = serde_json::from_value(state).unwrap();
    assert!(matches!(&state, EcsState::RollingBack { reason, .. } if reason.contains("TimeoutMinutes")), "{state:?}");
    assert_eq!(stands.map(|s| s.serving), Some(Serving::Shifting));

    let err = follow(&target(&ecs), state, TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();
    assert!(err.to_string().contains("did not complete within 30 minutes (TimeoutMinutes)"), "{err}");
    assert_eq!(stop.num_calls(), 1, "stopped once, its rollback followed across invocations");
    assert_eq!(err.stands().map(|s| s.serving), Some(Serving::Previous));
}

#[tokio::test(start_paused = true)]
async fn without_the_answer_naming_it_the_deployment_is_found_by_the_revision_it_deploys() {
    use ServiceDeploymentStatus as S;
    let list = mock!(Client::list_service_deployments)
        .match_requests(|r| r.cluster() == Some("prod") && r.service() == Some("web"))
        .then_output(|| {
            let brief = |arn: &str, rev: &str, secs: i64| {
                ServiceDeploymentBrief::builder()
                    .service_deployment_arn(arn)
                    .target_service_revision_arn(rev)
                    .created_at(aws_smithy_types::DateTime::from_secs(secs))
                    .build()
            };
            // Oldest first: crossdeploy does not rely on ECS's order.
            ListServiceDeploymentsOutput::builder()
                .service_deployments(brief("sd-old", "rev-old", 100))
                .service_deployments(brief(SD, "rev-new", 200))
                .service_deployments(brief("sd-other", "rev-other", 300))
                .build()
        });
    let revisions = mock!(Client::describe_service_revisions).then_output(|| {
        let rev =
            |arn: &str, td: &str| ServiceRevision::builder().service_revision_arn(arn).task_definition(td).build();
        DescribeServiceRevisionsOutput::builder()
            .service_revisions(rev("rev-old", OLD))
            .service_revisions(rev("rev-new", NEW))
            .service_revisions(rev("rev-other", "arn:aws:ecs:us-east-1:333333333333:task-definition/web:9"))
            .build()
    });
    let follow_sd = describe_sd(SD, vec![(S::Successful, None)]);
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&list, &revisions, &follow_sd]);
    let state = EcsState::FollowingRollout {
        task_definition_arn: NEW.into(),
        previous_task_definition_arn: OLD.into(),
        started_at: now(),
        deployment_id: Some("ecs-svc/new".into()),
        service_deployment_arn: None,
        not_ours: false,
    };

    let outcome = follow(&target(&ecs), state, TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["ServiceDeploymentArn"], SD);
}

#[tokio::test(start_paused = true)]
async fn ecs_refusing_the_strategy_is_a_configuration_error_and_nothing_stands() {
    let describe = mock!(Client::describe_services).then_output(settled_on_old);
    let refused = mock!(Client::update_service).then_error(|| {
        UpdateServiceError::InvalidParameterException(
            aws_sdk_ecs::types::error::InvalidParameterException::builder()
                .message("Canary deployments are not supported with a Network Load Balancer.")
                .build(),
        )
    });
    let (td, register) = (describe_td("web:old"), register_ok());
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &td, &register, &refused]);

    let err =
        deploy_images(&target(&ecs), &web_new(), &keep(), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();

    assert_eq!(err.failure_type(), FailureType::ConfigurationError, "{err}");
    assert!(
        err.to_string().contains("ECS refused to update service web in cluster prod of account 333333333333"),
        "{err}"
    );
    assert!(err.to_string().contains("not supported with a Network Load Balancer"), "{err}");
    assert!(err.stands().is_none(), "nothing of the deployment stands");
}

#[tokio::test(start_paused = true)]
async fn a_rollback_to_another_revision_than_what_stood_before_is_recorded_unknown() {
    use ServiceDeploymentStatus as S;
    let follow_sd =
        describe_sd(SD, vec![(S::RollbackSuccessful, Some("ECS deployment circuit breaker: tasks failed to start."))]);
    // ECS rolled back to the last deployment that succeeded: web:6, not web:7 read before.
    let six = "arn:aws:ecs:us-east-1:333333333333:task-definition/web:6";
    let describe = mock!(Client::describe_services).then_output(move || service(six, vec![], &[]));
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&follow_sd, &describe]);

    let err = follow(&target(&ecs), following(now()), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();

    let stands = err.stands().unwrap();
    assert_eq!(stands.serving, Serving::Unknown, "{stands:?}");
    assert!(stands.detail.contains(&format!("runs {six}, not {OLD} that stood before")), "{}", stands.detail);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_that_is_not_ours_is_never_stopped() {
    use ServiceDeploymentStatus as S;
    let follow_sd = describe_sd(SD, vec![(S::InProgress, None)]);
    let stop = mock!(Client::stop_service_deployment)
        .then_output(|| StopServiceDeploymentOutput::builder().service_deployment_arn(SD).build());
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&follow_sd, &stop]);
    let (cw, names) = (cw(), vec!["web-5xx".to_owned()]);
    // The service already ran these images, in someone else's revision still deploying.
    let state = EcsState::FollowingRollout {
        task_definition_arn: NEW.into(),
        previous_task_definition_arn: NEW.into(),
        started_at: now(),
        deployment_id: None,
        service_deployment_arn: Some(SD.into()),
        not_ours: true,
    };

    let err =
        follow(&target(&ecs), state, TIMEOUT, &Alarms { names: &names, cloudwatch: &cw }, minute()).await.unwrap_err();

    assert_eq!(stop.num_calls(), 0, "someone else's deployment is left alone");
    let stands = err.stands().unwrap();
    assert_eq!(stands.serving, Serving::Previous);
    assert!(stands.detail.contains("this deployment changed nothing"), "{}", stands.detail);
}

#[tokio::test(start_paused = true)]
async fn a_stop_is_not_sent_without_the_time_to_act_and_the_next_invocation_sends_it() {
    use ServiceDeploymentStatus as S;
    let follow_sd =
        describe_sd(SD, vec![(S::InProgress, None), (S::RollbackInProgress, None), (S::RollbackSuccessful, None)]);
    let stop = mock!(Client::stop_service_deployment)
        .then_output(|| StopServiceDeploymentOutput::builder().service_deployment_arn(SD).build());
    let describe = mock!(Client::describe_services).then_output(|| service(OLD, vec![], &[]));
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&follow_sd, &stop, &describe]);

    // 14 s left: less than the 15 s a change needs.
    let first = follow(
        &target(&ecs),
        following(now() - 31 * 60),
        TIMEOUT,
        &no_alarms(&cw()),
        Deadline::after(Duration::from_secs(14)),
    )
    .await
    .unwrap();
    assert_eq!(stop.num_calls(), 0);
    let Outcome::InProgress { state, .. } = first else { panic!("{first:?}") };
    let state: EcsState = serde_json::from_value(state).unwrap();
    assert!(matches!(state, EcsState::RollingBack { stop_taken: false, .. }), "{state:?}");

    let err = follow(&target(&ecs), state, TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap_err();
    assert_eq!(stop.num_calls(), 1);
    assert!(err.to_string().contains("TimeoutMinutes"), "{err}");
    assert_eq!(err.stands().map(|s| s.serving), Some(Serving::Previous));
}

#[tokio::test(start_paused = true)]
async fn a_stop_whose_answer_is_lost_is_sent_again_by_the_next_invocation() {
    use ServiceDeploymentStatus as S;
    let follow_sd = describe_sd(SD, vec![(S::InProgress, None), (S::RollbackSuccessful, None)]);
    let stop = mock!(Client::stop_service_deployment)
        .sequence()
        .error(|| {
            StopServiceDeploymentError::generic(
                ErrorMetadata::builder().code("ServiceUnavailable").message("try later").build(),
            )
        })
        .times(40)
        .output(|| StopServiceDeploymentOutput::builder().service_deployment_arn(SD).build())
        .build();
    let restore = restore_ok();
    let describe = mock!(Client::describe_services).then_output(|| service(OLD, vec![], &[]));
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&follow_sd, &stop, &restore, &describe]);

    let first = follow(
        &target(&ecs),
        following(now() - 31 * 60),
        TIMEOUT,
        &no_alarms(&cw()),
        Deadline::after(Duration::from_secs(40)),
    )
    .await
    .unwrap();
    let Outcome::InProgress { state, stands, .. } = first else { panic!("{first:?}") };
    let state: EcsState = serde_json::from_value(state).unwrap();
    assert!(matches!(state, EcsState::RollingBack { stop_taken: false, .. }), "{state:?}");
    assert_eq!(stands.map(|s| s.serving), Some(Serving::Shifting));
    assert_eq!(restore.num_calls(), 0, "no second mutation racing a stop that may have been taken");

    let err = follow(&target(&ecs), state, TIMEOUT, &no_alarms(&cw()), Deadline::after(Duration::from_secs(600)))
        .await
        .unwrap_err();
    assert_eq!(err.stands().map(|s| s.serving), Some(Serving::Previous));
    assert_eq!(restore.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_update_refused_after_an_earlier_attempt_took_effect_follows_the_deployment() {
    use ServiceDeploymentStatus as S;
    let describe = mock!(Client::describe_services)
        .sequence()
        .output(settled_on_old)
        // Re-read after the refusal: the lost first attempt had updated it.
        .output(|| {
            DescribeServicesOutput::builder()
                .services(
                    Service::builder()
                        .service_name("web")
                        .status("ACTIVE")
                        .task_definition(NEW)
                        .current_service_deployment(SD)
                        .build(),
                )
                .build()
        })
        .times(2)
        .build();
    let refused = mock!(Client::update_service).then_error(|| {
        UpdateServiceError::InvalidParameterException(
            aws_sdk_ecs::types::error::InvalidParameterException::builder().message("no change").build(),
        )
    });
    let list = mock!(Client::list_service_deployments).then_output(|| {
        ListServiceDeploymentsOutput::builder()
            .service_deployments(
                ServiceDeploymentBrief::builder()
                    .service_deployment_arn(SD)
                    .target_service_revision_arn("rev-new")
                    .created_at(aws_smithy_types::DateTime::from_secs(now() as i64))
                    .build(),
            )
            .build()
    });
    let revisions = mock!(Client::describe_service_revisions).then_output(|| {
        DescribeServiceRevisionsOutput::builder()
            .service_revisions(ServiceRevision::builder().service_revision_arn("rev-new").task_definition(NEW).build())
            .build()
    });
    let follow_sd = describe_sd(SD, vec![(S::Successful, None)]);
    let (td, register) = (describe_td("web:old"), register_ok());
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&describe, &td, &register, &refused, &list, &revisions, &follow_sd]
    );

    let outcome =
        deploy_images(&target(&ecs), &web_new(), &keep(), TIMEOUT, &no_alarms(&cw()), minute()).await.unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["ServiceDeploymentArn"], SD);
}

/// deploy-rollback's request while the deployment's service deployment is in progress: stopped
/// with rollback only when ECS would roll back to the revision to restore; else updated back.
#[tokio::test(start_paused = true)]
async fn a_rollback_stops_the_service_deployment_only_when_ecs_would_restore_what_is_asked() {
    let in_progress_from = |source: &'static str| {
        mock!(Client::describe_service_deployments).then_output(move || {
            DescribeServiceDeploymentsOutput::builder()
                .service_deployments(
                    ServiceDeployment::builder()
                        .service_deployment_arn(SD)
                        .status(ServiceDeploymentStatus::InProgress)
                        .source_service_revisions(ServiceRevisionSummary::builder().arn(source).build())
                        .target_service_revision(ServiceRevisionSummary::builder().arn("rev-new").build())
                        .build(),
                )
                .build()
        })
    };
    let revisions = mock!(Client::describe_service_revisions).then_output(|| {
        let rev =
            |arn: &str, td: &str| ServiceRevision::builder().service_revision_arn(arn).task_definition(td).build();
        DescribeServiceRevisionsOutput::builder()
            .service_revisions(rev("rev-old", OLD))
            .service_revisions(rev("rev-new", NEW))
            .service_revisions(rev("rev-six", "arn:aws:ecs:us-east-1:333333333333:task-definition/web:6"))
            .build()
    });
    let deploying = || {
        DescribeServicesOutput::builder()
            .services(
                Service::builder()
                    .service_name("web")
                    .status("ACTIVE")
                    .task_definition(NEW)
                    .current_service_deployment(SD)
                    .build(),
            )
            .build()
    };
    let stop = || {
        mock!(Client::stop_service_deployment)
            .then_output(|| StopServiceDeploymentOutput::builder().service_deployment_arn(SD).build())
    };
    let back = || {
        mock!(Client::update_service)
            .match_requests(|r| r.task_definition() == Some(OLD))
            .then_output(|| UpdateServiceOutput::builder().build())
    };

    // From web:7, the revision to restore: stopped with rollback, not updated back.
    let (describe, from_old, stop1, back1) =
        (mock!(Client::describe_services).then_output(deploying), in_progress_from("rev-old"), stop(), back());
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &from_old, &revisions, &stop1, &back1]);
    let outcome = ecs_taskdef_updater::rollback_service(&target(&ecs), &rollback_spec(), None, "r-1", "x", minute())
        .await
        .unwrap();
    let Outcome::Succeeded { outputs, summary } = outcome else { panic!("expected success") };
    assert!(summary.contains("stopped with rollback"), "{summary}");
    assert_eq!((outputs["RollbackResult"].as_str(), outputs["ServiceDeploymentArn"].as_str()), ("Restored", SD));
    assert_eq!((stop1.num_calls(), back1.num_calls()), (1, 0));

    // From web:6: a stop would put web:6 back, not web:7; the service is updated back to web:7.
    let (describe, from_six, stop2, back2) =
        (mock!(Client::describe_services).then_output(deploying), in_progress_from("rev-six"), stop(), back());
    let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &from_six, &revisions, &stop2, &back2]);
    let outcome = ecs_taskdef_updater::rollback_service(&target(&ecs), &rollback_spec(), None, "r-2", "x", minute())
        .await
        .unwrap();
    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("expected success") };
    assert_eq!(outputs["RollbackResult"], "Restored");
    assert_eq!((stop2.num_calls(), back2.num_calls()), (0, 1));
}
