//! Whole Lambda deployments across accounts against the local AWS: the shared services account
//! 111111111111 deploys into 222222222222 through AssumeRole; 333333333333 holds an identical
//! function that must never change.

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use crossdeploy_credentials::{AllowList, TargetSessions};
use crossdeploy_local::accounts::{
    self, function_state, FunctionState, EXTERNAL_ID, OTHER_ACCOUNT, SHARED_ACCOUNT, TARGET_ACCOUNT,
};
use crossdeploy_local::fixtures::{build_artifact, code_sha256, lambda_package};
use crossdeploy_local::{Answer, Emulator, InProcessUpdater, LocalLambda, Moto, NewJob};
use crossdeploy_protocol::ArtifactLocation;
use pipeline_job_worker::{handle_invoke_event, Updaters, Worker, WorkerError};
use std::sync::Arc;
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";

struct Local {
    moto: Moto,
    emulator: Emulator,
    shared: SdkConfig,
    target: SdkConfig,
    other: SdkConfig,
    bucket: String,
}

/// moto and the emulator started; `orders-api` with alias `live` -> version 1 in both target accounts.
async fn spawn_local() -> Local {
    let moto = Moto::start().await.expect("moto starts");
    let emulator = Emulator::start().await.expect("the emulator starts");
    let shared = accounts::account_config(&moto.endpoint, SHARED_ACCOUNT)
        .await
        .unwrap();
    let target = accounts::account_config(&moto.endpoint, TARGET_ACCOUNT)
        .await
        .unwrap();
    let other = accounts::account_config(&moto.endpoint, OTHER_ACCOUNT)
        .await
        .unwrap();
    let bucket = accounts::artifact_bucket(&shared).await.unwrap();
    for account in [&target, &other] {
        accounts::create_function(account, FUNCTION, ALIAS, lambda_package("v1"))
            .await
            .unwrap();
    }
    Local {
        moto,
        emulator,
        shared,
        target,
        other,
        bucket,
    }
}

fn allowed() -> String {
    format!(
        "{},{}",
        accounts::target_role(TARGET_ACCOUNT),
        accounts::target_role(OTHER_ACCOUNT)
    )
}

impl Local {
    fn worker(&self) -> Arc<Worker<InProcessUpdater>> {
        let codepipeline = aws_sdk_codepipeline::Client::from_conf(
            aws_sdk_codepipeline::config::Builder::from(&self.shared)
                .endpoint_url(&self.emulator.endpoint)
                .build(),
        );
        let sessions = TargetSessions::new(
            aws_sdk_sts::Client::new(&self.shared),
            self.shared.clone(),
            AllowList::parse(&allowed()),
            Some(EXTERNAL_ID.to_owned()),
        );
        Arc::new(Worker {
            codepipeline,
            invoker: InProcessUpdater {
                lambda: lambda_alias_updater::Deps {
                    s3: aws_sdk_s3::Client::new(&self.shared),
                    sessions,
                },
                budget: Duration::from_secs(120),
            },
            updaters: Updaters {
                lambda: Some("lambda-alias-updater".into()),
                ecs: None,
            },
        })
    }

    async fn upload(&self, key: &str, bytes: Vec<u8>) -> ArtifactLocation {
        accounts::put_artifact(&self.shared, &self.bucket, key, bytes)
            .await
            .unwrap();
        ArtifactLocation {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        }
    }

    fn job(&self, user_parameters: &str, artifact: ArtifactLocation) -> serde_json::Value {
        self.emulator.start_invoke_job(NewJob {
            pipeline_name: "orders".into(),
            stage: "Deploy-dev".into(),
            action: "DeployLambda".into(),
            user_parameters: user_parameters.to_owned(),
            artifact,
        })
    }

    async fn state(&self, account: &SdkConfig) -> FunctionState {
        function_state(account, FUNCTION, ALIAS).await.unwrap()
    }
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

fn job_id(event: &serde_json::Value) -> String {
    event["CodePipeline.job"]["id"].as_str().unwrap().to_owned()
}

fn answers_for(emulator: &Emulator, job: &str) -> Vec<Answer> {
    emulator
        .answers()
        .into_iter()
        .filter(|a| a.job_id() == job)
        .collect()
}

#[tokio::test]
async fn a_pipeline_job_moves_the_alias_in_the_target_account_and_nowhere_else() {
    let local = spawn_local().await;
    let other_before = local.state(&local.other).await;
    let package = lambda_package("v2");
    let artifact = local
        .upload(
            "orders/BuildOutput/v2.zip",
            build_artifact("lambda.zip", &package),
        )
        .await;
    let event = local.job(&params(TARGET_ACCOUNT), artifact);

    handle_invoke_event(
        event.clone(),
        local.worker(),
        crossdeploy_aws::Deadline::after(Duration::from_secs(120)),
    )
    .await
    .unwrap();

    let answers = answers_for(&local.emulator, &job_id(&event));
    assert_eq!(answers.len(), 1, "{answers:?}");
    let Answer::Success {
        output_variables,
        continuation_token,
        percent_complete,
        ..
    } = &answers[0]
    else {
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

    let after = local.state(&local.target).await;
    assert_eq!(after.alias_version, "2");
    assert_eq!(after.alias_version_sha, code_sha256(&package));
    assert!(after.alias_routing.is_empty());
    assert_eq!(after.versions, vec!["1", "2"]);
    assert_eq!(
        local.state(&local.other).await,
        other_before,
        "account 333333333333 must be untouched"
    );
}

#[tokio::test]
async fn deploying_the_same_artifact_twice_publishes_nothing_the_second_time() {
    let local = spawn_local().await;
    let package = lambda_package("v2");
    let artifact = local
        .upload(
            "orders/BuildOutput/v2.zip",
            build_artifact("lambda.zip", &package),
        )
        .await;
    let worker = local.worker();
    let first = local.job(&params(TARGET_ACCOUNT), artifact.clone());
    handle_invoke_event(
        first.clone(),
        worker.clone(),
        crossdeploy_aws::Deadline::after(Duration::from_secs(120)),
    )
    .await
    .unwrap();
    let after_first = local.state(&local.target).await;

    let second = local.job(&params(TARGET_ACCOUNT), artifact);
    handle_invoke_event(
        second.clone(),
        worker,
        crossdeploy_aws::Deadline::after(Duration::from_secs(120)),
    )
    .await
    .unwrap();

    let a1 = answers_for(&local.emulator, &job_id(&first));
    let a2 = answers_for(&local.emulator, &job_id(&second));
    let (
        Answer::Success {
            output_variables: o1,
            ..
        },
        Answer::Success {
            output_variables: o2,
            summary,
            ..
        },
    ) = (&a1[0], &a2[0])
    else {
        panic!("{a1:?} {a2:?}")
    };
    assert_eq!(o1, o2, "the second deploy answers with the same outputs");
    assert!(
        summary
            .as_deref()
            .unwrap_or_default()
            .contains("nothing changed"),
        "{summary:?}"
    );
    assert_eq!(
        local.state(&local.target).await,
        after_first,
        "nothing published, nothing moved"
    );
    assert_eq!(after_first.versions, vec!["1", "2"]);
}

/// Each bad input ends in exactly one failure answer of the right type, naming the problem,
/// and changes nothing in either target account.
#[tokio::test]
async fn bad_input_fails_the_job_once_with_a_clear_message_and_changes_nothing() {
    let local = spawn_local().await;
    let package = lambda_package("v2");
    let good = local
        .upload(
            "orders/BuildOutput/good.zip",
            build_artifact("lambda.zip", &package),
        )
        .await;
    let not_a_zip = local
        .upload("orders/BuildOutput/text", b"this is not a zip".to_vec())
        .await;
    let missing = ArtifactLocation {
        bucket: local.bucket.clone(),
        key: "orders/BuildOutput/gone.zip".into(),
    };
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
        (
            "Alias missing",
            without("Alias"),
            good.clone(),
            "ConfigurationError",
            vec!["`Alias`", "missing"],
        ),
        (
            "Kind missing",
            without("Kind"),
            good.clone(),
            "ConfigurationError",
            vec!["`Kind`", "missing"],
        ),
        (
            "unknown Kind",
            with("Kind", "Lambada"),
            good.clone(),
            "ConfigurationError",
            vec!["`Kind`", "Lambada"],
        ),
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
            vec![
                "arn:aws:iam::444444444444:role/crossdeploy-target",
                "allow-list",
            ],
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
        (
            "artifact not a zip",
            params(TARGET_ACCOUNT),
            not_a_zip,
            "ConfigurationError",
            vec!["not a zip"],
        ),
        (
            "function missing in the target",
            with("FunctionName", "payments-api"),
            good.clone(),
            "ConfigurationError",
            vec!["payments-api", "222222222222", "ResourceNotFoundException"],
        ),
    ];
    let target_before = local.state(&local.target).await;
    let other_before = local.state(&local.other).await;
    let worker = local.worker();

    for (case, user_parameters, artifact, failure_type, needles) in cases {
        let event = local.job(&user_parameters, artifact);
        handle_invoke_event(
            event.clone(),
            worker.clone(),
            crossdeploy_aws::Deadline::after(Duration::from_secs(120)),
        )
        .await
        .unwrap();
        let answers = answers_for(&local.emulator, &job_id(&event));
        assert_eq!(answers.len(), 1, "{case}: {answers:?}");
        let Answer::Failure {
            failure_type: got,
            message,
            ..
        } = &answers[0]
        else {
            panic!("{case}: {answers:?}")
        };
        assert_eq!(got, failure_type, "{case}: {message}");
        for needle in needles {
            assert!(
                message.contains(needle),
                "{case}: `{needle}` not in: {message}"
            );
        }
        assert_eq!(
            local.state(&local.target).await,
            target_before,
            "{case}: the target changed"
        );
    }
    assert_eq!(local.state(&local.other).await, other_before);

    // An event that is not a CodePipeline job has no job to answer.
    let before = local.emulator.answers().len();
    let err = handle_invoke_event(
        serde_json::json!({"detail-type": "Scheduled Event"}),
        worker,
        crossdeploy_aws::Deadline::after(Duration::from_secs(10)),
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
    let other_before = local.state(&local.other).await;
    let package = lambda_package("v2-binaries");
    let artifact = local
        .upload(
            "orders/BuildOutput/bin.zip",
            build_artifact("lambda.zip", &package),
        )
        .await;
    let event = local.job(&params(TARGET_ACCOUNT), artifact);
    let mut lambda = LocalLambda::start()
        .await
        .expect("cargo lambda watch starts");
    let creds = local
        .shared
        .credentials_provider()
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    let common = vec![
        ("AWS_REGION".to_owned(), accounts::REGION.to_owned()),
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            creds.access_key_id().to_owned(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            creds.secret_access_key().to_owned(),
        ),
        (
            "AWS_SESSION_TOKEN".to_owned(),
            creds.session_token().unwrap_or_default().to_owned(),
        ),
        ("AWS_ENDPOINT_URL".to_owned(), local.moto.endpoint.clone()),
        ("RUST_LOG".to_owned(), "debug".to_owned()),
    ];
    let mut updater_env = common.clone();
    updater_env.push(("CROSSDEPLOY_ALLOWED_TARGET_ROLES".into(), allowed()));
    updater_env.push(("CROSSDEPLOY_EXTERNAL_ID".into(), EXTERNAL_ID.into()));
    let mut worker_env = common;
    worker_env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), lambda.endpoint.clone()));
    worker_env.push((
        "AWS_ENDPOINT_URL_CODEPIPELINE".into(),
        local.emulator.endpoint.clone(),
    ));
    worker_env.push((
        "CROSSDEPLOY_LAMBDA_UPDATER".into(),
        "lambda-alias-updater".into(),
    ));
    let updater_log = lambda
        .run_function("lambda-alias-updater", &updater_env)
        .unwrap();
    let worker_log = lambda
        .run_function("pipeline-job-worker", &worker_env)
        .unwrap();

    let (function_error, body) = lambda
        .invoke(
            &local.shared,
            "pipeline-job-worker",
            event.to_string().as_bytes(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(function_error.is_none(), "{body}");

    let answers = answers_for(&local.emulator, &job_id(&event));
    assert_eq!(answers.len(), 1, "{answers:?}; worker said {body}");
    let Answer::Success {
        output_variables, ..
    } = &answers[0]
    else {
        panic!("{answers:?}")
    };
    assert_eq!(output_variables["FunctionVersion"], "2");
    assert_eq!(output_variables["PreviousVersion"], "1");
    assert_eq!(output_variables["CodeSha256"], code_sha256(&package));
    assert!(output_variables["AliasArn"].contains(TARGET_ACCOUNT));
    let after = local.state(&local.target).await;
    assert_eq!(
        (
            after.alias_version.as_str(),
            after.alias_version_sha.as_str()
        ),
        ("2", code_sha256(&package).as_str())
    );
    assert_eq!(local.state(&local.other).await, other_before);

    // No secret in any log, even at debug level.
    drop(lambda);
    for log in [updater_log, worker_log] {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("job") || text.contains("request_id"),
            "{} is empty?\n{text}",
            log.display()
        );
        for secret in [
            "ARTIFACT-SECRET-never-logged",
            "ARTIFACT-SESSION-TOKEN-never-logged",
            creds.secret_access_key(),
        ] {
            assert!(!text.contains(secret), "{} shows a secret", log.display());
        }
    }
}
