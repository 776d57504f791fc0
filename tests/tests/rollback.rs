//! deploy-rollback against the local AWS: each trigger, with events shaped exactly like AWS's
//! (the fixtures in functions/deploy-rollback/tests/events), restores the target in 222222222222 —
//! once, and only while the target still runs what crossdeploy deployed.

use aws_sdk_lambda::primitives::Blob;
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{DeploymentRecord, RollbackStatus, TargetKey};
use crossdeploy_local::accounts::{self, REGION, TARGET_ACCOUNT};
use crossdeploy_local::ecs;
use crossdeploy_local::fixtures::{aws_event, build_artifact, event_time, lambda_package, zip_of};
use crossdeploy_local::{Answer, LocalAws};
use deploy_rollback::{handle, Handled, Report, RollbackError};
use pipeline_job_worker::handle_invoke_event;
use serde_json::json;
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";
const ALARM: &str = "orders-5xx";

fn lambda_target() -> TargetKey {
    TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS)
}

async fn spawn_lambda() -> LocalAws {
    let local = LocalAws::start().await.expect("the local AWS starts");
    accounts::create_function(&local.target, FUNCTION, ALIAS, lambda_package("v1")).await.unwrap();
    accounts::create_alarm(&local.target, ALARM).await.unwrap();
    local
}

/// Deploys `marker`'s package through the worker (all at once, gated by the alarm) and returns
/// the deployment's record.
async fn deploy_lambda(local: &LocalAws, marker: &str) -> DeploymentRecord {
    let params = json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": FUNCTION,
        "Alias": ALIAS, "ArtifactPath": "lambda.zip", "AlarmNames": ALARM,
    });
    let artifact = local
        .upload(&format!("orders/BuildOutput/{marker}.zip"), build_artifact("lambda.zip", &lambda_package(marker)))
        .await
        .unwrap();
    let event = local.job("DeployLambda", &params.to_string(), artifact);
    handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(60)), "test-run")
        .await
        .unwrap();
    let answers = local.answers_for(&event);
    assert!(matches!(&answers[..], [Answer::Success { continuation_token: None, .. }]), "{answers:?}");
    let records = local.ledger().deployments(&lambda_target()).await.unwrap();
    records.into_iter().next().expect("the deployment is recorded")
}

async fn alias_version(local: &LocalAws) -> (String, usize) {
    let s = accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    (s.alias_version, s.alias_routing.len())
}

fn action_failed(record: &DeploymentRecord, event_id: &str) -> serde_json::Value {
    aws_event(
        "codepipeline-action-failed.json",
        &[
            ("/id", json!(event_id)),
            ("/time", json!(event_time(0))),
            ("/detail/pipeline", json!(record.pipeline.pipeline_name.as_deref().unwrap())),
            ("/detail/execution-id", json!(record.pipeline.execution_id.as_deref().unwrap())),
            ("/detail/stage", json!(record.pipeline.stage.as_deref().unwrap())),
        ],
    )
    .unwrap()
}

fn alarm_event(event_id: &str, offset_secs: i64) -> serde_json::Value {
    aws_event(
        "cloudwatch-alarm-state-change.json",
        &[
            ("/id", json!(event_id)),
            ("/time", json!(event_time(offset_secs))),
            ("/account", json!(TARGET_ACCOUNT)),
            ("/region", json!(REGION)),
            ("/detail/alarmName", json!(ALARM)),
        ],
    )
    .unwrap()
}

async fn run(local: &LocalAws, event: serde_json::Value) -> Result<Report, RollbackError> {
    handle(event, &local.rollback(), Deadline::after(Duration::from_secs(60)), "rollback-run").await
}

async fn rollback_of(local: &LocalAws, deployment_id: &str) -> Option<crossdeploy_ledger::RollbackRecord> {
    let records = local.ledger().deployments(&lambda_target()).await.unwrap();
    records.into_iter().find(|r| r.deployment_id == deployment_id).and_then(|r| r.rollback)
}

#[tokio::test]
async fn a_failed_action_in_the_stage_restores_the_alias_once() {
    let local = spawn_lambda().await;
    let deployed = deploy_lambda(&local, "v2").await;
    assert_eq!((deployed.previous.as_deref(), deployed.deployed.as_deref()), (Some("1"), Some("2")));
    assert_eq!(alias_version(&local).await, ("2".to_owned(), 0));

    let report = run(&local, action_failed(&deployed, "event-1")).await.unwrap();
    assert_eq!(report.rollbacks.len(), 1, "{report:?}");
    assert_eq!(report.rollbacks[0].result, Handled::Restored, "{report:?}");
    assert!(report.trigger.contains("action IntegrationTests failed in stage Deploy-dev"), "{}", report.trigger);
    assert_eq!(alias_version(&local).await, ("1".to_owned(), 0), "the alias is back on version 1, no routing");
    let recorded = rollback_of(&local, &deployed.deployment_id).await.expect("the rollback is in the ledger");
    assert_eq!((recorded.status, recorded.restored.as_deref()), (RollbackStatus::Restored, Some("1")));
    assert_eq!(recorded.event_id, "event-1");

    // Someone moves the alias forward by hand; the same event again, and another event condemning
    // the same deployment (its alarm), restore nothing: the rollback happened once.
    lambda_back_to(&local, "2").await;
    for event in [action_failed(&deployed, "event-1"), alarm_event("event-2", 0)] {
        let report = run(&local, event).await.unwrap();
        assert_eq!(report.rollbacks.len(), 1, "{report:?}");
        assert_eq!(report.rollbacks[0].result, Handled::HandledBefore, "{report:?}");
    }
    assert_eq!(alias_version(&local).await.0, "2", "restored once, not twice");
    assert_eq!(rollback_of(&local, &deployed.deployment_id).await.unwrap().event_id, "event-1");

    // A failed action in another stage or execution condemns nothing.
    let mut elsewhere = action_failed(&deployed, "event-3");
    elsewhere["detail"]["stage"] = json!("Deploy-qa");
    assert!(run(&local, elsewhere).await.unwrap().rollbacks.is_empty());
}

#[tokio::test]
async fn an_alarm_within_the_bake_window_restores_the_alias_and_one_after_it_does_not() {
    let local = spawn_lambda().await;
    let deployed = deploy_lambda(&local, "v2").await;

    // Two hours after the deployment: past the default bake window of 60 minutes.
    let report = run(&local, alarm_event("late", 2 * 3600)).await.unwrap();
    assert!(report.rollbacks.is_empty(), "{report:?}");
    assert_eq!(alias_version(&local).await.0, "2");
    // An alarm back to OK condemns nothing.
    let mut ok = alarm_event("ok", 0);
    ok["detail"]["state"]["value"] = json!("OK");
    assert!(run(&local, ok).await.unwrap().rollbacks.is_empty());
    assert_eq!(alias_version(&local).await.0, "2");

    let report = run(&local, alarm_event("now", 0)).await.unwrap();
    assert_eq!(report.rollbacks[0].result, Handled::Restored, "{report:?}");
    assert!(report.trigger.contains("alarm orders-5xx went to ALARM in account 222222222222"), "{}", report.trigger);
    assert_eq!(alias_version(&local).await, ("1".to_owned(), 0));
    let recorded = rollback_of(&local, &deployed.deployment_id).await.unwrap();
    assert_eq!(recorded.status, RollbackStatus::Restored);
    assert!(recorded.trigger.contains("orders-5xx"), "{}", recorded.trigger);

    // The same alarm event delivered twice restores once.
    lambda_back_to(&local, "2").await;
    let report = run(&local, alarm_event("now", 0)).await.unwrap();
    assert_eq!(report.rollbacks[0].result, Handled::HandledBefore, "{report:?}");
    assert_eq!(alias_version(&local).await.0, "2");
}

async fn lambda_back_to(local: &LocalAws, version: &str) {
    aws_sdk_lambda::Client::new(&local.target)
        .update_alias()
        .function_name(FUNCTION)
        .name(ALIAS)
        .function_version(version)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_target_someone_deployed_to_since_is_left_alone() {
    let local = spawn_lambda().await;
    let first = deploy_lambda(&local, "v2").await;

    // Outside crossdeploy: version 3 published and the alias moved to it.
    let lambda = aws_sdk_lambda::Client::new(&local.target);
    lambda
        .update_function_code()
        .function_name(FUNCTION)
        .zip_file(Blob::new(lambda_package("hand-made")))
        .send()
        .await
        .unwrap();
    let v3 = lambda.publish_version().function_name(FUNCTION).send().await.unwrap().version.unwrap();
    lambda_back_to(&local, &v3).await;

    let report = run(&local, action_failed(&first, "event-1")).await.unwrap();
    assert_eq!(report.rollbacks[0].result, Handled::LeftAlone, "{report:?}");
    assert!(
        report.rollbacks[0]
            .message
            .contains(&format!("points at version {v3}, not at version 2 that crossdeploy deployed"))
            && report.rollbacks[0].message.contains("someone deployed since"),
        "{}",
        report.rollbacks[0].message
    );
    assert_eq!(alias_version(&local).await.0, v3, "left alone");
    assert_eq!(rollback_of(&local, &first.deployment_id).await.unwrap().status, RollbackStatus::LeftAlone);

    // Through crossdeploy: a later deployment of the target shows in the ledger, and the earlier
    // one's condemnation leaves the target alone without asking the updater.
    let second = deploy_lambda(&local, "v4").await;
    let later = deploy_lambda(&local, "v5").await;
    let report = run(&local, action_failed(&second, "event-2")).await.unwrap();
    let mine: Vec<_> = report.rollbacks.iter().filter(|r| r.deployment_id == second.deployment_id).collect();
    assert_eq!(mine[0].result, Handled::LeftAlone, "{report:?}");
    assert!(mine[0].message.contains(&format!("by deployment {}", later.deployment_id)), "{}", mine[0].message);
    assert_eq!(alias_version(&local).await.0, later.deployed.clone().unwrap());
}

#[tokio::test]
async fn a_direct_request_restores_the_latest_deployment_or_a_named_version() {
    let local = spawn_lambda().await;
    deploy_lambda(&local, "v2").await;
    let latest = deploy_lambda(&local, "v3").await;
    assert_eq!(alias_version(&local).await.0, "3");

    let request = json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": FUNCTION,
        "Alias": ALIAS, "RestoreVersion": "1", "Reason": "release 3 corrupts orders",
    });
    let report = run(&local, request).await.unwrap();
    assert_eq!(report.rollbacks[0].deployment_id, latest.deployment_id);
    assert_eq!(report.rollbacks[0].result, Handled::Restored, "{report:?}");
    assert_eq!(alias_version(&local).await, ("1".to_owned(), 0), "the named version, not the recorded previous (2)");
    let recorded = rollback_of(&local, &latest.deployment_id).await.unwrap();
    assert!(recorded.trigger.contains("release 3 corrupts orders"), "{}", recorded.trigger);

    // A target crossdeploy never deployed: a clear error, nothing changed.
    let unknown = json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": "billing",
        "Alias": ALIAS,
    });
    let e = run(&local, unknown).await.unwrap_err().to_string();
    assert!(
        e.contains("holds no successful crossdeploy deployment of lambda/222222222222/us-east-1/billing/live"),
        "{e}"
    );
    // Bad input: a clear error, nothing changed.
    let e = run(&local, json!({"Kind": "Lambda", "FunctionName": FUNCTION})).await.unwrap_err().to_string();
    assert!(e.contains("not a valid direct request"), "{e}");
    assert_eq!(alias_version(&local).await.0, "1");
}

/// A direct request as deploy-rollback's function URL hands it over, signed by `caller`.
fn through_url(request: &serde_json::Value, caller: &str) -> serde_json::Value {
    let path =
        format!("{}/../functions/deploy-rollback/tests/events/function-url-direct.json", env!("CARGO_MANIFEST_DIR"));
    let mut event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["body"] = json!(request.to_string());
    event["requestContext"]["authorizer"]["iam"]["userArn"] = json!(caller);
    event
}

#[tokio::test]
async fn only_the_principals_the_policy_names_roll_back_by_direct_request_and_only_through_the_url() {
    use deploy_rollback::{handle_invocation, DirectRequests};
    let local = spawn_lambda().await;
    deploy_lambda(&local, "v2").await;
    let latest = deploy_lambda(&local, "v3").await;
    let policy = crossdeploy_protocol::policy::DeployPolicy::parse(&format!(
        r#"{{"Rules": [{{"Pipelines": ["*"], "Targets": ["{TARGET_ACCOUNT}"]}}],
            "RollbackPrincipals": ["arn:aws:iam::111111111111:role/OnCall"]}}"#
    ))
    .unwrap();
    let mut rb = local.rollback();
    rb.settings.direct = DirectRequests::Policy(std::sync::Arc::new(policy));
    let request = json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": FUNCTION,
        "Alias": ALIAS, "Reason": "release 3 corrupts orders",
    });
    let invoke = |event: serde_json::Value| {
        let rb = &rb;
        async move { handle_invocation(event, rb, Deadline::after(Duration::from_secs(60)), "rollback-run").await }
    };
    // A plain Invoke does not say who sent it: refused, nothing read or changed.
    let e = invoke(request.clone()).await.unwrap_err();
    assert!(matches!(e, RollbackError::NotAllowed(_)), "{e}");
    assert!(e.to_string().contains("function URL"), "{e}");
    // Through the URL, signed by someone the policy does not name: 403.
    let answer = invoke(through_url(&request, "arn:aws:sts::111111111111:assumed-role/Developer/eve")).await.unwrap();
    assert_eq!(answer["statusCode"], 403, "{answer}");
    let body: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["Error"], "crossdeploy.NotAllowed");
    assert!(body["Message"].as_str().unwrap().contains("assumed-role/Developer/eve"), "{body}");
    assert_eq!(alias_version(&local).await.0, "3", "nothing changed");
    assert!(rollback_of(&local, &latest.deployment_id).await.is_none(), "nothing recorded");
    // Signed by the on-call role: rolled back, the report as the body of a 200.
    let answer = invoke(through_url(&request, "arn:aws:sts::111111111111:assumed-role/OnCall/bob")).await.unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let report: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(report["Rollbacks"][0]["Result"], "Restored", "{report}");
    assert_eq!(alias_version(&local).await.0, "2");
    // Events are not direct requests: the policy's principals do not gate them.
    assert!(invoke(action_failed(&latest, "evt-after")).await.is_ok());
}

const NEW_IMAGE: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:abc123";

/// Deploys a new image to the Fargate service through the worker; returns the record.
async fn deploy_ecs(local: &LocalAws) -> DeploymentRecord {
    let params = json!({
        "Kind": "Ecs", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT),
        "ClusterName": ecs::CLUSTER, "ServiceName": ecs::SERVICE,
    });
    let file = format!(r#"[{{"name":"web","imageUri":"{NEW_IMAGE}"}}]"#);
    let artifact =
        local.upload("web/BuildOutput/abc.zip", zip_of(&[("imagedefinitions.json", file.as_bytes())])).await.unwrap();
    let event = local.job("DeployEcs", &params.to_string(), artifact);
    handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(120)), "test-run")
        .await
        .unwrap();
    let answers = local.answers_for(&event);
    assert!(matches!(&answers[..], [Answer::Success { continuation_token: None, .. }]), "{answers:?}");
    let target = TargetKey::ecs(TARGET_ACCOUNT, REGION, ecs::CLUSTER, ecs::SERVICE);
    local.ledger().deployments(&target).await.unwrap().into_iter().next().expect("recorded")
}

#[tokio::test]
async fn a_failed_action_restores_the_ecs_service_and_an_ecs_failure_is_recorded_once() {
    let local = LocalAws::start().await.expect("the local AWS starts");
    let first = ecs::create_fargate_service(&local.moto.endpoint, &local.target).await.unwrap();
    let deployed = deploy_ecs(&local).await;
    assert_eq!(deployed.previous.as_deref(), Some(first.as_str()));
    let second = deployed.deployed.clone().unwrap();
    assert_eq!(ecs::service_state(&local.target).await.unwrap().task_definition, second);

    let report = run(&local, action_failed(&deployed, "event-1")).await.unwrap();
    assert_eq!(report.rollbacks[0].result, Handled::Restored, "{report:?}");
    let state = ecs::service_state(&local.target).await.unwrap();
    assert_eq!(state.task_definition, first, "the service runs the recorded previous revision");
    // The deployment's service deployment, and the rollback's, are in the ledger.
    let sds = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await.unwrap();
    assert_eq!(deployed.outputs["ServiceDeploymentArn"], sds[1].service_deployment_arn().unwrap());
    let restoring = sds[0].service_deployment_arn().unwrap();
    assert!(report.rollbacks[0].message.contains(&format!("service deployment {restoring}")), "{report:?}");
    let target = TargetKey::ecs(TARGET_ACCOUNT, REGION, ecs::CLUSTER, ecs::SERVICE);
    let recorded = local.ledger().deployments(&target).await.unwrap()[0].rollback.clone().unwrap();
    assert!(
        recorded.message.unwrap_or_default().contains(restoring),
        "the ledger names the rollback's service deployment"
    );
    assert_eq!(state.revisions.len(), 2, "no revision registered or deregistered");
    // Delivered again: nothing more.
    let report = run(&local, action_failed(&deployed, "event-1")).await.unwrap();
    assert_eq!(report.rollbacks[0].result, Handled::HandledBefore, "{report:?}");

    // A second deployment, then ECS's circuit breaker fails it: recorded once, and reported.
    let again = deploy_ecs(&local).await;
    let failed = aws_event(
        "ecs-deployment-failed.json",
        &[
            ("/time", json!(event_time(0))),
            ("/account", json!(TARGET_ACCOUNT)),
            ("/region", json!(REGION)),
            (
                "/resources/0",
                json!(format!("arn:aws:ecs:{REGION}:{TARGET_ACCOUNT}:service/{}/{}", ecs::CLUSTER, ecs::SERVICE)),
            ),
            ("/detail/deploymentId", json!(again.outputs["DeploymentId"])),
        ],
    )
    .unwrap();
    let report = run(&local, failed.clone()).await.unwrap();
    assert_eq!(report.rollbacks[0].deployment_id, again.deployment_id);
    assert_eq!(report.rollbacks[0].result, Handled::RolledBackByEcs, "{report:?}");
    assert!(report.rollbacks[0].message.contains("task failed to start"), "{}", report.rollbacks[0].message);
    let mut not_ours = failed.clone();
    not_ours["detail"]["deploymentId"] = json!("ecs-svc/someone-else");
    let report = run(&local, failed).await.unwrap();
    assert_eq!(report.rollbacks[0].result, Handled::HandledBefore, "{report:?}");
    // A failed deployment crossdeploy did not make is not recorded on one it made.
    assert!(run(&local, not_ours).await.unwrap().rollbacks.is_empty());
    let target = TargetKey::ecs(TARGET_ACCOUNT, REGION, ecs::CLUSTER, ecs::SERVICE);
    let records = local.ledger().deployments(&target).await.unwrap();
    let recorded = records.iter().find(|r| r.deployment_id == again.deployment_id).unwrap().rollback.clone().unwrap();
    assert_eq!(recorded.status, RollbackStatus::RolledBackByEcs);
}
