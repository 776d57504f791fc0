//! ECS deployments followed through ECS's service deployments, against the local AWS (whose ECS
//! launcher, tests/localaws/ecs_deployments.py, moves service deployments through their states):
//! rolling to SUCCESSFUL, a circuit-breaker rollback reported with ECS's reason, blue/green with
//! a bake followed through its lifecycle stages, an alarm that makes crossdeploy stop the
//! deployment with rollback, and configurations refused before anything changes.

use aws_sdk_cloudwatch::types::StateValue;
use aws_sdk_ecs::types::{DeploymentStrategy, ServiceDeploymentStatus};
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{DeploymentStatus, TargetKey};
use crossdeploy_local::accounts::{self, EXTERNAL_ID, REGION, TARGET_ACCOUNT};
use crossdeploy_local::ecs::{self, Fargate, LoadBalancing};
use crossdeploy_local::fixtures::zip_of;
use crossdeploy_local::{Answer, InProcessUpdater, LocalAws};
use crossdeploy_protocol::{ArtifactLocation, Serving};
use pipeline_job_worker::{handle_invoke_event, Worker};
use std::sync::Arc;
use std::time::Duration;

const NEW_IMAGE: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:abc123";
/// An image the launcher never starts (as ECS on CannotPullContainerError).
const BROKEN_IMAGE: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:broken";

/// The local AWS with ECS's steps 0.5 s long and its minutes 5 s long.
async fn start() -> LocalAws {
    LocalAws::start_with_moto_env(&[("MOTO_ECS_STEP_SECONDS", "0.5"), ("MOTO_ECS_SECONDS_PER_MINUTE", "5")])
        .await
        .expect("the local AWS starts")
}

/// The worker, with updaters that get `budget` per invocation (15 s of it kept back), so that a
/// long deployment goes on through continuation jobs.
fn worker(local: &LocalAws, budget: Duration) -> Arc<Worker<InProcessUpdater>> {
    let mut updaters =
        InProcessUpdater::with_allow_list(&local.shared, &LocalAws::allowed_roles(), EXTERNAL_ID, &local.ledger_table);
    updaters.budget = budget;
    Arc::new(local.worker_with(updaters))
}

fn params(extra: &[(&str, &str)]) -> String {
    let mut p = serde_json::json!({
        "Kind": "Ecs",
        "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT),
        "ClusterName": ecs::CLUSTER,
        "ServiceName": ecs::SERVICE,
    });
    for (k, v) in extra {
        p[*k] = (*v).into();
    }
    p.to_string()
}

async fn artifact(local: &LocalAws, image: &str) -> ArtifactLocation {
    let file = format!(r#"[{{"name":"web","imageUri":"{image}"}}]"#);
    local
        .upload(
            &format!("web/BuildOutput/{}.zip", image.rsplit(':').next().unwrap_or("x")),
            zip_of(&[("imagedefinitions.json", file.as_bytes())]),
        )
        .await
        .unwrap()
}

/// Runs the job and every continuation job after it, each run given `run`; returns every
/// answer, in order.
async fn run_to_the_end(
    local: &LocalAws,
    worker: &Arc<Worker<InProcessUpdater>>,
    user_parameters: &str,
    artifact: ArtifactLocation,
    run: Duration,
) -> Vec<Answer> {
    let mut event = local.job("DeployEcs", user_parameters, artifact);
    let mut answers = Vec::new();
    for _ in 0..30 {
        handle_invoke_event(event.clone(), worker.clone(), Deadline::after(run), "test-run").await.unwrap();
        answers.extend(local.answers_for(&event));
        match local.emulator.take_continuations().into_iter().next() {
            Some(next) => event = next,
            None => return answers,
        }
    }
    panic!("still going on after 30 jobs: {answers:?}");
}

fn target() -> TargetKey {
    TargetKey::ecs(TARGET_ACCOUNT, REGION, ecs::CLUSTER, ecs::SERVICE)
}

#[tokio::test]
async fn a_rolling_deployment_is_followed_to_successful_through_the_service_deployment_api() {
    let local = start().await;
    let first = ecs::create_fargate_service(&local.moto.endpoint, &local.target).await.unwrap();

    let answers = run_to_the_end(
        &local,
        &local.worker(),
        &params(&[]),
        artifact(&local, NEW_IMAGE).await,
        Duration::from_secs(120),
    )
    .await;

    let [Answer::Success { output_variables: outputs, summary, continuation_token: None, .. }] = &answers[..] else {
        panic!("{answers:?}")
    };
    let deployments = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    let newest = &deployments[0];
    assert_eq!(outputs["ServiceDeploymentArn"], newest.service_deployment_arn().unwrap(), "{deployments:?}");
    assert_eq!(newest.status(), Some(&ServiceDeploymentStatus::Successful));
    assert_eq!(deployments.len(), 2, "the service's first deployment, and this one");
    assert!(summary.as_deref().unwrap_or_default().contains("(ROLLING) SUCCESSFUL"), "{summary:?}");
    assert_eq!(outputs["PreviousTaskDefinitionArn"], first);
    assert_eq!(ecs::service_state(&local.target).await.unwrap().task_definition, outputs["TaskDefinitionArn"]);
    // The ledger keeps the service deployment with the deployment's outputs.
    let records = local.ledger().deployments(&target()).await.unwrap();
    assert_eq!(records[0].outputs["ServiceDeploymentArn"], outputs["ServiceDeploymentArn"]);
}

#[tokio::test]
async fn a_deployment_ecs_rolls_back_is_reported_with_ecs_reason() {
    let local = start().await;
    let how = Fargate { circuit_breaker: true, ..Fargate::default() };
    let first = ecs::create_fargate_service_with(&local.moto.endpoint, &local.target, &how).await.unwrap();

    let answers = run_to_the_end(
        &local,
        &local.worker(),
        &params(&[]),
        artifact(&local, BROKEN_IMAGE).await,
        Duration::from_secs(120),
    )
    .await;

    let [Answer::Failure { failure_type, message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "JobFailed");
    for said in [
        "was rolled back by ECS: service deployment",
        "ROLLBACK_SUCCESSFUL; ECS deployment circuit breaker: tasks failed to start.",
        "circuit breaker: 3 tasks failed (threshold 3)",
        "CannotPullContainerError",
    ] {
        assert!(message.contains(said), "{said:?} in {message}");
    }
    assert_eq!(
        ecs::service_state(&local.target).await.unwrap().task_definition,
        first,
        "ECS put the first revision back"
    );
    let records = local.ledger().deployments(&target()).await.unwrap();
    assert_eq!((records[0].status, records[0].serving), (DeploymentStatus::Failed, Some(Serving::Previous)));
    let deployments = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    assert_eq!(records[0].outputs["ServiceDeploymentArn"], deployments[0].service_deployment_arn().unwrap());
}

#[tokio::test]
async fn a_blue_green_deployment_with_a_bake_is_followed_through_its_stages() {
    let local = start().await;
    let how = Fargate { load_balancer: Some(LoadBalancing::BlueGreenReady), ..Fargate::default() };
    let first = ecs::create_fargate_service_with(&local.moto.endpoint, &local.target, &how).await.unwrap();
    // 30 s per updater invocation, 15 s of it following, a 20 s bake: the stages show in
    // continuation jobs.
    let worker = worker(&local, Duration::from_secs(30));
    // ECS requires a bake time for blue/green: none given, none on the service, refused first.
    let refused = run_to_the_end(
        &local,
        &worker,
        &params(&[("DeploymentStrategy", "BlueGreen")]),
        artifact(&local, NEW_IMAGE).await,
        Duration::from_secs(40),
    )
    .await;
    let [Answer::Failure { failure_type, message, .. }] = &refused[..] else { panic!("{refused:?}") };
    assert_eq!(failure_type, "ConfigurationError");
    assert!(message.contains("BlueGreen with no bake time, which ECS requires: set BakeTimeMinutes"), "{message}");
    assert_eq!(ecs::service_state(&local.target).await.unwrap().revisions.len(), 1, "nothing registered");

    let answers = run_to_the_end(
        &local,
        &worker,
        &params(&[("DeploymentStrategy", "BlueGreen"), ("BakeTimeMinutes", "4"), ("TimeoutMinutes", "10")]),
        artifact(&local, NEW_IMAGE).await,
        Duration::from_secs(40),
    )
    .await;

    let (last, progress) = answers.split_last().unwrap();
    let Answer::Success { output_variables: outputs, summary, continuation_token: None, .. } = last else {
        panic!("{answers:?}")
    };
    assert!(summary.as_deref().unwrap_or_default().contains("(BLUE_GREEN) SUCCESSFUL"), "{summary:?}");
    let summaries: Vec<&str> = progress
        .iter()
        .filter_map(|a| match a {
            Answer::Success { summary: Some(s), continuation_token: Some(_), .. } => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert!(!summaries.is_empty(), "{answers:?}");
    assert!(summaries.iter().all(|s| s.contains("(BLUE_GREEN)")), "{summaries:?}");
    assert!(
        summaries.iter().any(|s| s.contains("stage BAKE_TIME, production traffic 100% on web:2 and 0% on web:1")),
        "the bake is reported with the traffic on the green revision: {summaries:?}"
    );
    let deployments = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    let ours = &deployments[0];
    assert_eq!(outputs["ServiceDeploymentArn"], ours.service_deployment_arn().unwrap());
    let config = ours.deployment_configuration().unwrap();
    assert_eq!((config.strategy(), config.bake_time_in_minutes()), (Some(&DeploymentStrategy::BlueGreen), Some(4)));
    assert_eq!(ours.target_service_revision().and_then(|t| t.requested_production_traffic_weight()), Some(100.0));
    assert_eq!(outputs["PreviousTaskDefinitionArn"], first);
}

#[tokio::test]
async fn an_alarm_makes_crossdeploy_stop_the_deployment_and_ecs_roll_it_back() {
    let local = start().await;
    // Two tasks wanted, one ever runs (MOTO_ECS_SERVICE_RUNNING): the rollout never completes.
    let how = Fargate { desired: 2, ..Fargate::default() };
    let first = ecs::create_fargate_service_with(&local.moto.endpoint, &local.target, &how).await.unwrap();
    accounts::create_alarm(&local.target, "web-5xx").await.unwrap();
    let worker = worker(&local, Duration::from_secs(30));
    let user_parameters = params(&[("AlarmNames", "web-5xx")]);
    let event = local.job("DeployEcs", &user_parameters, artifact(&local, NEW_IMAGE).await);
    handle_invoke_event(event.clone(), worker.clone(), Deadline::after(Duration::from_secs(40)), "test-run")
        .await
        .unwrap();
    let first_answers = local.answers_for(&event);
    assert!(matches!(&first_answers[..], [Answer::Success { continuation_token: Some(_), .. }]), "{first_answers:?}");
    let before = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    assert_eq!(before[0].status(), Some(&ServiceDeploymentStatus::InProgress));

    accounts::set_alarm_state(&local.target, "web-5xx", StateValue::Alarm, "Threshold Crossed: 5xx above 1%")
        .await
        .unwrap();
    let mut answers = Vec::new();
    let mut next = local.emulator.take_continuations();
    while let Some(event) = next.pop() {
        handle_invoke_event(event.clone(), worker.clone(), Deadline::after(Duration::from_secs(40)), "test-run")
            .await
            .unwrap();
        answers.extend(local.answers_for(&event));
        next = local.emulator.take_continuations();
    }

    let Some(Answer::Failure { failure_type, message, .. }) = answers.last() else { panic!("{answers:?}") };
    assert_eq!(failure_type, "JobFailed");
    assert!(
        message.contains("alarm web-5xx in account 222222222222 is in ALARM (Threshold Crossed: 5xx above 1%) during service deployment"),
        "{message}"
    );
    assert!(message.contains(&format!("runs {first} again: ECS rolled it back (service deployment")), "{message}");
    assert_eq!(ecs::service_state(&local.target).await.unwrap().task_definition, first);
    let after = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    assert_eq!(after.len(), before.len(), "stopped, not updated back: no new service deployment");
    assert_eq!(after[0].service_deployment_arn(), before[0].service_deployment_arn());
    assert_eq!(after[0].status(), Some(&ServiceDeploymentStatus::RollbackSuccessful));
    assert!(after[0].status_reason().unwrap_or_default().contains("StopServiceDeployment"), "{:?}", after[0]);
    let records = local.ledger().deployments(&target()).await.unwrap();
    assert_eq!((records[0].status, records[0].serving), (DeploymentStatus::Failed, Some(Serving::Previous)));
}

/// Each: one ConfigurationError naming the problem; no revision registered, no service
/// deployment started, the service's configuration untouched.
#[tokio::test]
async fn each_bad_strategy_configuration_is_refused_before_anything_changes() {
    let local = start().await;
    let how = Fargate { load_balancer: Some(LoadBalancing::TargetGroupOnly), ..Fargate::default() };
    ecs::create_fargate_service_with(&local.moto.endpoint, &local.target, &how).await.unwrap();
    let before = ecs::service_state(&local.target).await.unwrap();
    let deployments = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap().len();
    // (the action's extra keys, the failure type, what the message says)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("DeploymentStrategy", "BlueGreen")], "ConfigurationError", "has no advancedConfiguration.alternateTargetGroupArn, advancedConfiguration.productionListenerRule, advancedConfiguration.roleArn"),
        (vec![("DeploymentStrategy", "Canary10Percent5Minutes")], "ConfigurationError", "cannot deploy Canary10Percent5Minutes"),
        (vec![("DeploymentStrategy", "Linear2PercentEvery1Minute")], "ConfigurationError", "ECS shifts at least 3 percent in a linear step"),
        (vec![("DeploymentStrategy", "Rolling"), ("BakeTimeMinutes", "5")], "ConfigurationError", "given with the Rolling strategy"),
        (vec![("BakeTimeMinutes", "5")], "ConfigurationError", "deploys with the rolling strategy, which has no bake"),
        (vec![("EcsAlarms", "true")], "ConfigurationError", "AlarmNames names no alarm"),
        (vec![("DeploymentStrategy", "Linear25PercentEvery5Minutes"), ("TimeoutMinutes", "15")], "ConfigurationError", "the deployment bakes for 15 minutes"),
    ];
    for (extra, failure, said) in cases {
        let answers = run_to_the_end(
            &local,
            &local.worker(),
            &params(&extra),
            artifact(&local, NEW_IMAGE).await,
            Duration::from_secs(60),
        )
        .await;
        let [Answer::Failure { failure_type, message, .. }] = &answers[..] else { panic!("{extra:?}: {answers:?}") };
        assert_eq!(failure_type, failure, "{extra:?}: {message}");
        assert!(message.contains(said), "{extra:?}: {said:?} in {message}");
        assert_eq!(
            ecs::service_state(&local.target).await.unwrap(),
            before,
            "{extra:?}: nothing registered or updated"
        );
        let now = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
        assert_eq!(now.len(), deployments, "{extra:?}: no service deployment started");
    }
    // And a service without any load balancer or Service Connect.
    let plain = start().await;
    ecs::create_fargate_service(&plain.moto.endpoint, &plain.target).await.unwrap();
    let answers = run_to_the_end(
        &plain,
        &plain.worker(),
        &params(&[("DeploymentStrategy", "BlueGreen")]),
        artifact(&plain, NEW_IMAGE).await,
        Duration::from_secs(60),
    )
    .await;
    let [Answer::Failure { failure_type, message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "ConfigurationError");
    assert!(message.contains("cannot deploy BlueGreen: it has no load balancer and no Service Connect"), "{message}");
    assert_eq!(ecs::service_state(&plain.target).await.unwrap().revisions.len(), 1);
}

/// deploy-rollback's request to the ECS updater, for a deployment whose service deployment is
/// still going on: stopped with rollback (ECS puts the previous revision back), not updated back.
#[tokio::test]
async fn a_rollback_of_a_deployment_still_going_on_stops_its_service_deployment() {
    let local = start().await;
    let how = Fargate { desired: 2, ..Fargate::default() };
    let first = ecs::create_fargate_service_with(&local.moto.endpoint, &local.target, &how).await.unwrap();
    let worker = worker(&local, Duration::from_secs(30));
    let event = local.job("DeployEcs", &params(&[]), artifact(&local, NEW_IMAGE).await);
    handle_invoke_event(event.clone(), worker, Deadline::after(Duration::from_secs(40)), "test-run").await.unwrap();
    let deployed = ecs::service_state(&local.target).await.unwrap().task_definition;
    assert_ne!(deployed, first);
    let ongoing = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    assert_eq!(ongoing[0].status(), Some(&ServiceDeploymentStatus::InProgress));

    let client = aws_sdk_ecs::Client::new(&local.target);
    let s = ecs_taskdef_updater::ServiceRef {
        ecs: &client,
        account: TARGET_ACCOUNT,
        cluster: ecs::CLUSTER,
        service: ecs::SERVICE,
        deployment: "rollback-test",
        session: None,
    };
    let spec = crossdeploy_protocol::EcsRollback {
        cluster_name: ecs::CLUSTER.into(),
        service_name: ecs::SERVICE.into(),
        restore_task_definition: first.clone(),
        deployed_task_definition: deployed.clone(),
    };
    let outcome = ecs_taskdef_updater::rollback_service(
        &s,
        &spec,
        None,
        "rollback-1",
        "stage failed",
        Deadline::after(Duration::from_secs(30)),
    )
    .await
    .unwrap();

    let crossdeploy_protocol::Outcome::Succeeded { summary, outputs } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["RollbackResult"], "Restored");
    assert_eq!(outputs["ServiceDeploymentArn"], ongoing[0].service_deployment_arn().unwrap());
    assert!(summary.contains("stopped with rollback"), "{summary}");
    // ECS rolls it back; no other service deployment starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    assert_eq!(after.len(), ongoing.len());
    assert_eq!(after[0].status(), Some(&ServiceDeploymentStatus::RollbackSuccessful));
    assert_eq!(ecs::service_state(&local.target).await.unwrap().task_definition, first);
}

/// `EcsAlarms`: the alarms are the service's deployment alarms too, and ECS rolls back on them by
/// itself; crossdeploy follows that rollback and reports the alarm ECS names.
#[tokio::test]
async fn alarms_handed_to_ecs_make_ecs_roll_back_and_the_job_reports_them() {
    let local = start().await;
    let how = Fargate { desired: 2, ..Fargate::default() };
    let first = ecs::create_fargate_service_with(&local.moto.endpoint, &local.target, &how).await.unwrap();
    accounts::create_alarm(&local.target, "web-5xx").await.unwrap();
    let worker = worker(&local, Duration::from_secs(30));
    let user_parameters = params(&[("AlarmNames", "web-5xx"), ("EcsAlarms", "true")]);
    let event = local.job("DeployEcs", &user_parameters, artifact(&local, NEW_IMAGE).await);
    handle_invoke_event(event.clone(), worker.clone(), Deadline::after(Duration::from_secs(40)), "test-run")
        .await
        .unwrap();
    let sds = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    let alarms = sds[0].deployment_configuration().and_then(|c| c.alarms()).expect("deployment alarms set");
    assert_eq!((alarms.alarm_names(), alarms.enable(), alarms.rollback()), (&["web-5xx".to_owned()][..], true, true));

    // The alarm fires; ECS sees it at its next look, before crossdeploy's own check.
    accounts::set_alarm_state(&local.target, "web-5xx", StateValue::Alarm, "Threshold Crossed").await.unwrap();
    let mut answers = Vec::new();
    let mut next = local.emulator.take_continuations();
    while let Some(event) = next.pop() {
        handle_invoke_event(event.clone(), worker.clone(), Deadline::after(Duration::from_secs(40)), "test-run")
            .await
            .unwrap();
        answers.extend(local.answers_for(&event));
        next = local.emulator.take_continuations();
    }

    let Some(Answer::Failure { message, .. }) = answers.last() else { panic!("{answers:?}") };
    assert!(message.contains("was rolled back by ECS"), "{message}");
    assert!(message.contains("alarms in ALARM: web-5xx"), "{message}");
    assert_eq!(ecs::service_state(&local.target).await.unwrap().task_definition, first);
}
