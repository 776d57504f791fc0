//! Canary and linear traffic shifting gated by alarms, against the local AWS.

use aws_sdk_cloudwatch::types::StateValue;
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{DeploymentStatus, TargetKey};
use crossdeploy_local::accounts::{self, EXTERNAL_ID, REGION, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{build_artifact, lambda_package};
use crossdeploy_local::{Answer, InProcessUpdater, LocalAws};
use pipeline_job_worker::{handle_invoke_event, Worker};
use std::sync::Arc;
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";
const ALARM: &str = "orders-errors";

/// The local AWS with `orders-api` (alias live -> 1) and an alarm in 222222222222, and a worker
/// whose updaters get 40 s per invocation (30 s of work), so that every bake goes on through
/// continuation.
async fn spawn_local() -> (LocalAws, Arc<Worker<InProcessUpdater>>) {
    let local = LocalAws::start().await.expect("the local AWS starts");
    accounts::create_function(&local.target, FUNCTION, ALIAS, lambda_package("v1")).await.unwrap();
    accounts::create_alarm(&local.target, ALARM).await.unwrap();
    let mut updaters =
        InProcessUpdater::with_allow_list(&local.shared, &LocalAws::allowed_roles(), EXTERNAL_ID, &local.ledger_table);
    updaters.budget = Duration::from_secs(40);
    let worker = Arc::new(local.worker_with(updaters));
    (local, worker)
}

fn params(strategy: &str) -> String {
    serde_json::json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": FUNCTION, "Alias": ALIAS,
        "ArtifactPath": "lambda.zip", "DeploymentStrategy": strategy, "AlarmNames": ALARM,
    })
    .to_string()
}

async fn run(worker: &Arc<Worker<InProcessUpdater>>, event: serde_json::Value) {
    handle_invoke_event(event, worker.clone(), Deadline::after(Duration::from_secs(60)), "test-run").await.unwrap();
}

#[tokio::test]
async fn a_canary_takes_ten_percent_and_an_alarm_puts_the_alias_back() {
    let (local, worker) = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let event = local.job("DeployLambda", &params("Canary10Percent5Minutes"), artifact);

    run(&worker, event.clone()).await;

    let first = local.answers_for(&event);
    assert!(matches!(&first[..], [Answer::Success { continuation_token: Some(_), .. }]), "{first:?}");
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    assert_eq!(state.alias_version, "1");
    assert_eq!(state.alias_routing, vec![("2".to_owned(), "0.1".to_owned())], "10% on the new version");

    accounts::set_alarm_state(&local.target, ALARM, StateValue::Alarm, "Threshold Crossed: errors above 5")
        .await
        .unwrap();
    let next = local.emulator.take_continuations();
    assert_eq!(next.len(), 1);
    run(&worker, next[0].clone()).await;

    let answers = local.answers_for(&next[0]);
    let [Answer::Failure { failure_type, message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "JobFailed");
    assert!(
        message.contains("alarm orders-errors in account 222222222222 is in ALARM (Threshold Crossed: errors above 5)"),
        "{message}"
    );
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    assert_eq!(
        (state.alias_version.as_str(), state.alias_routing.len()),
        ("1", 0),
        "the alias is back on version 1, no routing"
    );
    let records =
        local.ledger().deployments(&TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS)).await.unwrap();
    assert_eq!((records.len(), records[0].status), (1, DeploymentStatus::Failed));
}

#[tokio::test]
async fn an_alarm_already_in_alarm_stops_the_deployment_before_anything_changes() {
    let (local, worker) = spawn_local().await;
    accounts::set_alarm_state(&local.target, ALARM, StateValue::Alarm, "already bad").await.unwrap();
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let event = local.job("DeployLambda", &params("Canary10Percent5Minutes"), artifact);

    run(&worker, event.clone()).await;

    let answers = local.answers_for(&event);
    let [Answer::Failure { message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert!(message.contains("is in ALARM already (already bad); nothing was deployed"), "{message}");
    assert_eq!(accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().versions, vec!["1"]);

    // An alarm that does not exist is a configuration error, also before anything changes.
    let event = local.job(
        "DeployLambda",
        &params("Canary10Percent5Minutes").replace(ALARM, "orders-typo"),
        local.upload("k", build_artifact("lambda.zip", &lambda_package("v3"))).await.unwrap(),
    );
    run(&worker, event.clone()).await;
    let answers = local.answers_for(&event);
    let [Answer::Failure { failure_type, message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "ConfigurationError", "{message}");
    assert!(
        message.contains("alarm orders-typo named in AlarmNames does not exist in account 222222222222"),
        "{message}"
    );
}

#[tokio::test]
async fn a_linear_deployment_completes_with_no_routing_left() {
    let (local, worker) = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let event = local.job("DeployLambda", &params("Linear50PercentEvery1Minute"), artifact);

    run(&worker, event).await;
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    assert_eq!(state.alias_routing, vec![("2".to_owned(), "0.5".to_owned())]);

    // The step's minute passes (CodePipeline sends continuation jobs meanwhile; each watches the alarm).
    let mut last = None;
    for _ in 0..6 {
        let next = local.emulator.take_continuations();
        let Some(event) = next.into_iter().next() else { break };
        run(&worker, event.clone()).await;
        last = Some(event);
    }

    let answers = local.answers_for(&last.expect("continuation jobs"));
    let [Answer::Success { continuation_token: None, output_variables, .. }] = &answers[..] else {
        panic!("{answers:?}")
    };
    assert_eq!(
        (output_variables["FunctionVersion"].as_str(), output_variables["PreviousVersion"].as_str()),
        ("2", "1")
    );
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    assert_eq!(
        (state.alias_version.as_str(), state.alias_routing.len()),
        ("2", 0),
        "wholly on version 2, no routing left"
    );
}
