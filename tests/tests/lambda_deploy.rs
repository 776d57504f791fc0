//! Whole Lambda deployments across accounts against the local AWS: the shared services account
//! 111111111111 deploys into 222222222222 through AssumeRole; 333333333333 holds an identical
//! function that must never change.

use aws_config::SdkConfig;
use crossdeploy_local::accounts::{self, function_state, FunctionState, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{aws_event, build_artifact, code_sha256, event_time, lambda_package};
use crossdeploy_local::{Answer, LocalAws};
use crossdeploy_protocol::ArtifactLocation;
use pipeline_job_worker::{handle_invoke_event, WorkerError};
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";

/// The local AWS with `orders-api`, alias `live` -> version 1, in both target accounts.
async fn spawn_local() -> LocalAws {
    let local = LocalAws::start().await.expect("the local AWS starts");
    for account in [&local.target, &local.other] {
        accounts::create_function(account, FUNCTION, ALIAS, lambda_package("v1")).await.unwrap();
    }
    local
}

async fn state(account: &SdkConfig) -> FunctionState {
    function_state(account, FUNCTION, ALIAS).await.unwrap()
}

fn params(role_account: &str) -> String {
    serde_json::json!({
        "Kind": "Lambda",
        "TargetRoleArn": accounts::target_role(role_account),
        "FunctionName": FUNCTION,
        "Alias": ALIAS,
        "ArtifactPath": "lambda.zip",
    })
    .to_string()
}

#[tokio::test]
async fn a_pipeline_job_moves_the_alias_in_the_target_account_and_nowhere_else() {
    let local = spawn_local().await;
    let other_before = state(&local.other).await;
    let package = lambda_package("v2");
    let artifact = local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &package)).await.unwrap();
    let event = local.job("DeployLambda", &params(TARGET_ACCOUNT), artifact);

    handle_invoke_event(
        event.clone(),
        local.worker(),
        crossdeploy_aws::Deadline::after(Duration::from_secs(120)),
        "test-run",
    )
    .await
    .unwrap();

    let answers = local.answers_for(&event);
    assert_eq!(answers.len(), 1, "{answers:?}");
    let Answer::Success { output_variables, continuation_token, percent_complete, .. } = &answers[0] else {
        panic!("{answers:?}")
    };
    assert_eq!(continuation_token, &None);
    assert_eq!(percent_complete, &Some(100));
    assert_eq!(output_variables.len(), 4, "{output_variables:?}");
    assert_eq!(output_variables["FunctionVersion"], "2");
    assert_eq!(output_variables["PreviousVersion"], "1");
    assert_eq!(output_variables["CodeSha256"], code_sha256(&package));
    assert_eq!(
        output_variables["AliasArn"],
        format!("arn:aws:lambda:us-east-1:{TARGET_ACCOUNT}:function:{FUNCTION}:{ALIAS}")
    );

    let after = state(&local.target).await;
    assert_eq!(after.alias_version, "2");
    assert_eq!(after.alias_version_sha, code_sha256(&package));
    assert!(after.alias_routing.is_empty());
    assert_eq!(after.versions, vec!["1", "2"]);
    assert_eq!(state(&local.other).await, other_before, "account 333333333333 must be untouched");
}

#[tokio::test]
async fn deploying_the_same_artifact_twice_publishes_nothing_the_second_time() {
    let local = spawn_local().await;
    let package = lambda_package("v2");
    let artifact = local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &package)).await.unwrap();
    let worker = local.worker();
    let first = local.job("DeployLambda", &params(TARGET_ACCOUNT), artifact.clone());
    handle_invoke_event(
        first.clone(),
        worker.clone(),
        crossdeploy_aws::Deadline::after(Duration::from_secs(120)),
        "test-run",
    )
    .await
    .unwrap();
    let after_first = state(&local.target).await;

    let second = local.job("DeployLambda", &params(TARGET_ACCOUNT), artifact);
    handle_invoke_event(second.clone(), worker, crossdeploy_aws::Deadline::after(Duration::from_secs(120)), "test-run")
        .await
        .unwrap();

    let a1 = local.answers_for(&first);
    let a2 = local.answers_for(&second);
    let (Answer::Success { output_variables: o1, .. }, Answer::Success { output_variables: o2, summary, .. }) =
        (&a1[0], &a2[0])
    else {
        panic!("{a1:?} {a2:?}")
    };
    assert_eq!(o1["FunctionVersion"], o2["FunctionVersion"], "the second deploy answers with the same version");
    assert_eq!(o1["CodeSha256"], o2["CodeSha256"]);
    assert_eq!(
        o2["PreviousVersion"], o2["FunctionVersion"],
        "it changed nothing: what stood before it is what stands (a rollback of it restores nothing)"
    );
    assert!(summary.as_deref().unwrap_or_default().contains("nothing changed"), "{summary:?}");
    assert_eq!(state(&local.target).await, after_first, "nothing published, nothing moved");
    assert_eq!(after_first.versions, vec!["1", "2"]);
}

/// Each bad input ends in exactly one failure answer of the right type, naming the problem,
/// and changes nothing in either target account.
#[tokio::test]
async fn bad_input_fails_the_job_once_with_a_clear_message_and_changes_nothing() {
    let local = spawn_local().await;
    let package = lambda_package("v2");
    let good = local.upload("orders/BuildOutput/good.zip", build_artifact("lambda.zip", &package)).await.unwrap();
    let not_a_zip = local.upload("orders/BuildOutput/text", b"this is not a zip".to_vec()).await.unwrap();
    let missing = ArtifactLocation { bucket: local.bucket.clone(), key: "orders/BuildOutput/gone.zip".into() };
    let without = |key: &str| {
        let mut p: serde_json::Value = serde_json::from_str(&params(TARGET_ACCOUNT)).unwrap();
        p.as_object_mut().unwrap().remove(key);
        p.to_string()
    };
    let with = |key: &str, value: &str| {
        let mut p: serde_json::Value = serde_json::from_str(&params(TARGET_ACCOUNT)).unwrap();
        p[key] = value.into();
        p.to_string()
    };
    let cases: Vec<(&str, String, ArtifactLocation, &str, Vec<&str>)> = vec![
        (
            "UserParameters not JSON",
            "{\"Kind\": Lambda".into(),
            good.clone(),
            "ConfigurationError",
            vec!["UserParameters", "not JSON"],
        ),
        (
            "TargetRoleArn missing",
            without("TargetRoleArn"),
            good.clone(),
            "ConfigurationError",
            vec!["`TargetRoleArn`", "missing"],
        ),
        (
            "FunctionName missing",
            without("FunctionName"),
            good.clone(),
            "ConfigurationError",
            vec!["`FunctionName`", "missing"],
        ),
        ("Alias missing", without("Alias"), good.clone(), "ConfigurationError", vec!["`Alias`", "missing"]),
        ("Kind missing", without("Kind"), good.clone(), "ConfigurationError", vec!["`Kind`", "missing"]),
        ("unknown Kind", with("Kind", "Lambada"), good.clone(), "ConfigurationError", vec!["`Kind`", "Lambada"]),
        (
            "unknown strategy",
            with("DeploymentStrategy", "BlueGreen"),
            good.clone(),
            "ConfigurationError",
            vec!["`DeploymentStrategy`", "BlueGreen"],
        ),
        (
            "bad role ARN",
            with("TargetRoleArn", "crossdeploy-target"),
            good.clone(),
            "ConfigurationError",
            vec!["`TargetRoleArn`", "crossdeploy-target"],
        ),
        (
            "role off the allow-list",
            params("444444444444"),
            good.clone(),
            "PermissionError",
            vec!["arn:aws:iam::444444444444:role/crossdeploy-target", "allow-list"],
        ),
        (
            "artifact object missing",
            params(TARGET_ACCOUNT),
            missing,
            "JobFailed",
            vec!["gone.zip", "does not exist", "NoSuchKey"],
        ),
        (
            "ArtifactPath not in the zip",
            with("ArtifactPath", "dist/lambda.zip"),
            good.clone(),
            "ConfigurationError",
            vec!["`dist/lambda.zip`", "README.md, lambda.zip"],
        ),
        ("artifact not a zip", params(TARGET_ACCOUNT), not_a_zip, "ConfigurationError", vec!["not a zip"]),
        (
            "function missing in the target",
            with("FunctionName", "payments-api"),
            good.clone(),
            "ConfigurationError",
            vec!["payments-api", "222222222222", "ResourceNotFoundException"],
        ),
    ];
    let target_before = state(&local.target).await;
    let other_before = state(&local.other).await;
    let worker = local.worker();

    for (case, user_parameters, artifact, failure_type, needles) in cases {
        let event = local.job("DeployLambda", &user_parameters, artifact);
        handle_invoke_event(
            event.clone(),
            worker.clone(),
            crossdeploy_aws::Deadline::after(Duration::from_secs(120)),
            "test-run",
        )
        .await
        .unwrap();
        let answers = local.answers_for(&event);
        assert_eq!(answers.len(), 1, "{case}: {answers:?}");
        let Answer::Failure { failure_type: got, message, .. } = &answers[0] else { panic!("{case}: {answers:?}") };
        assert_eq!(got, failure_type, "{case}: {message}");
        for needle in needles {
            assert!(message.contains(needle), "{case}: `{needle}` not in: {message}");
        }
        assert_eq!(state(&local.target).await, target_before, "{case}: the target changed");
    }
    assert_eq!(state(&local.other).await, other_before);

    // An event that is not a CodePipeline job has no job to answer.
    let before = local.emulator.answers().len();
    let err = handle_invoke_event(
        serde_json::json!({"detail-type": "Scheduled Event"}),
        worker,
        crossdeploy_aws::Deadline::after(Duration::from_secs(10)),
        "test-run",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, WorkerError::NotAJob(_)));
    assert_eq!(local.emulator.answers().len(), before);
}

/// The same deployment with the functions' real binaries under cargo-lambda's local runtime:
/// the worker reaches the updater through Lambda Invoke, CodePipeline through the emulator.
#[tokio::test]
async fn the_real_binaries_deploy_across_accounts_under_cargo_lambda() {
    let local = spawn_local().await;
    let other_before = state(&local.other).await;
    let package = lambda_package("v2-binaries");
    let artifact = local.upload("orders/BuildOutput/bin.zip", build_artifact("lambda.zip", &package)).await.unwrap();
    let event = local.job("DeployLambda", &params(TARGET_ACCOUNT), artifact);
    let (mut lambda, logs) = local.run_functions().await.expect("the functions run under cargo-lambda");
    let shared_secret =
        local.function_env().await.unwrap().into_iter().find(|(k, _)| k == "AWS_SECRET_ACCESS_KEY").unwrap().1;
    let (function_error, body) = lambda
        .invoke(&local.shared, "pipeline-job-worker", event.to_string().as_bytes(), Duration::from_secs(120))
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(function_error.is_none(), "{body}");

    let answers = local.answers_for(&event);
    assert_eq!(answers.len(), 1, "{answers:?}; worker said {body}");
    let Answer::Success { output_variables, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(output_variables["FunctionVersion"], "2");
    assert_eq!(output_variables["PreviousVersion"], "1");
    assert_eq!(output_variables["CodeSha256"], code_sha256(&package));
    assert!(output_variables["AliasArn"].contains(TARGET_ACCOUNT));
    let after = state(&local.target).await;
    assert_eq!((after.alias_version.as_str(), after.alias_version_sha.as_str()), ("2", code_sha256(&package).as_str()));
    assert_eq!(state(&local.other).await, other_before);

    // A test action fails in the stage: deploy-rollback (Invoke of the updater) puts version 1 back.
    let record = local
        .ledger()
        .deployments(&crossdeploy_ledger::TargetKey::lambda(TARGET_ACCOUNT, accounts::REGION, FUNCTION, ALIAS))
        .await
        .unwrap()
        .remove(0);
    let failed = aws_event(
        "codepipeline-action-failed.json",
        &[
            ("/time", serde_json::json!(event_time(0))),
            ("/detail/pipeline", serde_json::json!(record.pipeline.pipeline_name)),
            ("/detail/execution-id", serde_json::json!(record.pipeline.execution_id)),
            ("/detail/stage", serde_json::json!(record.pipeline.stage)),
        ],
    )
    .unwrap();
    let (function_error, body) = lambda
        .invoke(&local.shared, "deploy-rollback", failed.to_string().as_bytes(), Duration::from_secs(60))
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(function_error.is_none(), "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["Rollbacks"][0]["Result"], "Restored", "{body}");
    assert_eq!(state(&local.target).await.alias_version, "1");
    // Bad input fails the invocation with a clear error (cargo-lambda answers a function error
    // with HTTP 500, where Lambda sets X-Amz-Function-Error: either way the invocation failed).
    let text = match lambda.invoke(&local.shared, "deploy-rollback", b"{\"hello\": 1}", Duration::from_secs(60)).await {
        Ok((function_error, body)) => {
            assert!(function_error.is_some());
            String::from_utf8_lossy(&body).into_owned()
        }
        Err(e) => format!("{e:?}"),
    };
    assert!(text.contains("crossdeploy.BadEvent") && text.contains("neither an EventBridge event"), "{text}");

    // No secret in any log, even at debug level.
    drop(lambda);
    let mut all = String::new();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        for secret in ["ARTIFACT-SECRET-never-logged", "ARTIFACT-SESSION-TOKEN-never-logged", shared_secret.as_str()] {
            assert!(!text.contains(secret), "{} shows a secret", log.display());
        }
        all.push_str(&text);
    }
    assert!(all.contains("job answered") && all.contains("alias moved"), "the logs say what happened:\n{all}");
    assert!(
        all.contains("rollback: restored") && all.contains("refused an event"),
        "the logs say what happened:\n{all}"
    );
}
