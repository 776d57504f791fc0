//! The deploy policy against the local AWS: a job the policy does not allow is refused with a
//! PermissionError naming pipeline, stage and target, before any AssumeRole (moto's access log
//! shows none); an allowed one deploys; a job whose pipeline CodePipeline does not establish (an
//! Invoke job whose details it does not serve: AWS documents GetJobDetails for custom actions
//! only) is refused where the policy restricts the target, and deployed where it does not.

use crossdeploy_local::accounts::{self, function_state, EXTERNAL_ID, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{build_artifact, code_sha256, lambda_package};
use crossdeploy_local::{assume_role_calls, Answer, EmulatorSettings, InProcessUpdater, LocalAws, NewJob};
use crossdeploy_pipeline_job::policy::DeployPolicy;
use pipeline_job_worker::{handle_invoke_event, Policy, Worker};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";

async fn spawn_local(invoke_job_details: bool) -> (LocalAws, PathBuf) {
    let (mut local, log) = LocalAws::start_with_access_log("policy").await.expect("the local AWS starts");
    local.emulator =
        crossdeploy_local::Emulator::start_with(EmulatorSettings { invoke_job_details, ..EmulatorSettings::default() })
            .await
            .unwrap();
    accounts::create_function(&local.target, FUNCTION, ALIAS, lambda_package("v1")).await.unwrap();
    (local, log)
}

/// Only pipeline `orders`, from its stage `Deploy-prod`, may deploy to the target role.
fn prod_only_from_orders() -> DeployPolicy {
    DeployPolicy::parse(&format!(
        r#"{{"Rules": [{{"Pipelines": ["orders"], "Stages": ["Deploy-prod"], "Targets": ["{}"]}}]}}"#,
        accounts::target_role(TARGET_ACCOUNT)
    ))
    .unwrap()
}

fn worker(local: &LocalAws, policy: DeployPolicy) -> Arc<Worker<InProcessUpdater>> {
    let mut w = local.worker_with(InProcessUpdater::with_allow_list(
        &local.shared,
        &LocalAws::allowed_roles(),
        EXTERNAL_ID,
        &local.ledger_table,
    ));
    w.settings.policy = Policy::Enforced(Arc::new(policy));
    Arc::new(w)
}

async fn run(local: &LocalAws, worker: Arc<Worker<InProcessUpdater>>, pipeline: &str, stage: &str) -> Vec<Answer> {
    let package = lambda_package(&format!("{pipeline}-{stage}"));
    let artifact =
        local.upload(&format!("{pipeline}/{stage}.zip"), build_artifact("lambda.zip", &package)).await.unwrap();
    let params = serde_json::json!({"Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT),
        "FunctionName": FUNCTION, "Alias": ALIAS, "ArtifactPath": "lambda.zip"});
    let event = local.emulator.start_invoke_job(NewJob {
        pipeline_name: pipeline.into(),
        stage: stage.into(),
        action: "DeployLambda".into(),
        user_parameters: params.to_string(),
        artifact,
        execution_id: None,
    });
    handle_invoke_event(event.clone(), worker, crossdeploy_aws::Deadline::after(Duration::from_secs(120)), "test-run")
        .await
        .unwrap();
    local.answers_for(&event)
}

fn refused(answers: &[Answer]) -> &str {
    assert_eq!(answers.len(), 1, "{answers:?}");
    let Answer::Failure { failure_type, message, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "PermissionError", "{message}");
    message
}

#[tokio::test]
async fn a_pipeline_the_policy_does_not_allow_is_refused_before_any_assume_role_and_an_allowed_one_deploys() {
    let (local, log) = spawn_local(true).await;
    let before = function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    let worker = worker(&local, prod_only_from_orders());
    // The harness itself assumed roles to set the accounts up: count from here.
    let assumed_before = assume_role_calls(&log);

    for (pipeline, stage) in [("payments", "Deploy-prod"), ("orders", "Deploy-dev")] {
        let answers = run(&local, worker.clone(), pipeline, stage).await;
        let message = refused(&answers);
        assert!(
            message.contains(&format!("pipeline {pipeline}, stage {stage},"))
                && message.contains(&accounts::target_role(TARGET_ACCOUNT)),
            "{message}"
        );
    }
    assert_eq!(assume_role_calls(&log), assumed_before, "no AssumeRole for a refused job");
    assert_eq!(function_state(&local.target, FUNCTION, ALIAS).await.unwrap(), before);

    let answers = run(&local, worker, "orders", "Deploy-prod").await;
    let Answer::Success { output_variables, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(output_variables["FunctionVersion"], "2");
    assert_eq!(output_variables["CodeSha256"], code_sha256(&lambda_package("orders-Deploy-prod")));
    assert_eq!(assume_role_calls(&log), assumed_before + 1);
}

#[tokio::test]
async fn a_job_whose_pipeline_codepipeline_does_not_establish_is_refused_where_the_policy_restricts_the_target() {
    let (local, log) = spawn_local(false).await;
    let before = function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    let assumed_before = assume_role_calls(&log);
    // Even from the right pipeline and stage: CodePipeline did not vouch for it.
    let answers = run(&local, worker(&local, prod_only_from_orders()), "orders", "Deploy-prod").await;
    let message = refused(&answers);
    assert!(message.contains("did not establish") && message.contains("custom action"), "{message}");
    assert_eq!(assume_role_calls(&log), assumed_before);
    assert_eq!(function_state(&local.target, FUNCTION, ALIAS).await.unwrap(), before);

    // A target open to every pipeline and stage takes it.
    let open =
        DeployPolicy::parse(&format!(r#"{{"Rules": [{{"Pipelines": ["*"], "Targets": ["{TARGET_ACCOUNT}"]}}]}}"#))
            .unwrap();
    let answers = run(&local, worker(&local, open), "orders", "Deploy-prod").await;
    assert!(matches!(&answers[0], Answer::Success { .. }), "{answers:?}");
}

#[tokio::test]
async fn an_unreadable_policy_refuses_every_job_saying_why() {
    let (local, log) = spawn_local(true).await;
    let assumed_before = assume_role_calls(&log);
    let mut w = local.worker_with(InProcessUpdater::with_allow_list(
        &local.shared,
        &LocalAws::allowed_roles(),
        EXTERNAL_ID,
        &local.ledger_table,
    ));
    w.settings.policy = Policy::Broken(DeployPolicy::parse("{\"Rules\": 3}").unwrap_err());
    let answers = run(&local, Arc::new(w), "orders", "Deploy-prod").await;
    let message = refused(&answers);
    assert!(message.contains("CROSSDEPLOY_DEPLOY_POLICY") && message.contains("cannot be read"), "{message}");
    assert_eq!(assume_role_calls(&log), assumed_before);
}
