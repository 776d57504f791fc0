//! The `crossdeploy` binary against the local AWS: the history of what a pipeline job deployed,
//! a held lease in the status, and a rollback through deploy-rollback running under cargo-lambda.

use assert_cmd::Command;
use aws_credential_types::provider::ProvideCredentials;
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{LeaseHolder, TargetKey};
use crossdeploy_local::accounts::{self, REGION, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{build_artifact, lambda_package};
use crossdeploy_local::{Answer, LocalAws};
use pipeline_job_worker::handle_invoke_event;
use serde_json::Value;
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";

/// The local AWS with `orders-api` (alias live -> 1), and version 2 deployed by a pipeline job.
async fn deployed() -> LocalAws {
    let local = LocalAws::start().await.expect("the local AWS starts");
    accounts::create_function(&local.target, FUNCTION, ALIAS, lambda_package("v1")).await.unwrap();
    let params = serde_json::json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": FUNCTION,
        "Alias": ALIAS, "ArtifactPath": "lambda.zip",
    });
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let event = local.job("DeployLambda", &params.to_string(), artifact);
    handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(60)), "test-run")
        .await
        .unwrap();
    assert!(matches!(&local.answers_for(&event)[..], [Answer::Success { .. }]));
    local
}

/// `crossdeploy` as an operator in the shared services account runs it: AWS found through the
/// standard variables, the table through CROSSDEPLOY_LEDGER_TABLE.
async fn crossdeploy(local: &LocalAws) -> Command {
    let creds = local.shared.credentials_provider().unwrap().provide_credentials().await.unwrap();
    let mut cmd = Command::cargo_bin("crossdeploy").unwrap();
    cmd.env_clear()
        .env("AWS_ENDPOINT_URL", &local.moto.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env("AWS_SESSION_TOKEN", creds.session_token().unwrap_or_default())
        .env("CROSSDEPLOY_LEDGER_TABLE", &local.ledger_table);
    cmd
}

fn target() -> String {
    TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS).as_str().to_owned()
}

#[tokio::test]
async fn history_lists_what_a_pipeline_job_deployed_as_a_table_and_as_json() {
    let local = deployed().await;

    let out = crossdeploy(&local).await.args(["history"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("STARTED") && lines[0].contains("TARGET  ") && lines[0].ends_with("PIPELINE"),
        "{text}"
    );
    assert!(lines[1].contains(&target()) && lines[1].contains("Succeeded") && lines[1].contains("Deployed"), "{text}");

    let out = crossdeploy(&local).await.args(["history", "--output", "json", "--target", &target()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records.as_array().map(Vec::len), Some(1), "{records}");
    assert_eq!((records[0]["Previous"].as_str(), records[0]["Deployed"].as_str()), (Some("1"), Some("2")), "{records}");
    assert_eq!(records[0]["Status"], "Succeeded");

    // Another target's history is empty; a pipeline that deployed nothing too.
    let out = crossdeploy(&local).await.args(["history", "--output", "json", "--pipeline", "nobody"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), serde_json::json!([]));
}

#[tokio::test]
async fn status_shows_a_held_lease_and_by_whom() {
    let local = LocalAws::start().await.expect("the local AWS starts");
    let key = TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS);
    let holder = LeaseHolder {
        deployment_id: "job-7".into(),
        pipeline: Some("orders".into()),
        execution_id: Some("exec-1".into()),
        job_id: Some("job-7".into()),
        since: crossdeploy_ledger::now_secs(),
        ..LeaseHolder::default()
    };
    let until = crossdeploy_ledger::now_secs() + 600;
    local.ledger().acquire_lease(&key, &holder, until).await.unwrap();

    let out = crossdeploy(&local).await.args(["status"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Leases held: 1"), "{text}");
    let row = text.lines().find(|l| l.starts_with(key.as_str())).unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("job-7") && row.contains("pipeline orders execution exec-1"), "{text}");

    let out = crossdeploy(&local).await.args(["status", "--output", "json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["Leases"][0]["Target"], key.as_str());
    assert_eq!(status["Leases"][0]["Until"], until);
}

#[tokio::test]
async fn rollback_puts_the_alias_back_through_deploy_rollback_and_asks_first() {
    let local = deployed().await;
    let (lambda, logs) = local.run_functions().await.expect("the functions run under cargo-lambda");
    let rollback = |yes: bool| {
        let local = &local;
        let endpoint = lambda.endpoint.clone();
        async move {
            let mut cmd = crossdeploy(local).await;
            cmd.env("AWS_ENDPOINT_URL_LAMBDA", endpoint)
                .env("CROSSDEPLOY_ROLLBACK_FUNCTION", "deploy-rollback")
                .args(["rollback", "--target", &target(), "--reason", "bad release"]);
            if yes {
                cmd.arg("--yes");
            }
            cmd.output().unwrap()
        }
    };

    // No terminal to ask on, no --yes: refused, nothing changed.
    let refused = rollback(false).await;
    assert_eq!(refused.status.code(), Some(3), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --yes"));
    assert_eq!(accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().alias_version, "2");

    let done = rollback(true).await;
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(text.contains("Restored"), "{text}");
    assert_eq!(accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().alias_version, "1");

    // The history shows the rollback on the deployment.
    let out = crossdeploy(&local).await.args(["history", "--output", "json"]).output().unwrap();
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records[0]["Rollback"]["Status"], "Restored", "{records}");

    // deploy-rollback's metric of it, in the embedded metric format.
    let log = logs.iter().find(|l| l.to_string_lossy().contains("deploy-rollback")).unwrap();
    let metrics = crossdeploy_local::emf_lines(log).unwrap();
    let rollback = metrics.iter().find(|m| m["Rollbacks"] == 1.0).unwrap_or_else(|| panic!("{metrics:?}"));
    assert_eq!((rollback["Trigger"].as_str(), rollback["Result"].as_str()), (Some("Direct"), Some("Restored")));
    assert_eq!(
        rollback["_aws"]["CloudWatchMetrics"][0]["Dimensions"][2],
        serde_json::json!(["Result"]),
        "the rollup the alarm watches"
    );
}

#[tokio::test]
async fn bad_usage_and_configuration_have_their_exit_codes() {
    let local = LocalAws::start().await.expect("the local AWS starts");
    let out = crossdeploy(&local).await.env_remove("CROSSDEPLOY_LEDGER_TABLE").args(["history"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no ledger table: give --table or set CROSSDEPLOY_LEDGER_TABLE")
    );
    let out = crossdeploy(&local)
        .await
        .args(["rollback", "--target", "orders-api", "--yes", "--function", "deploy-rollback"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a target"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crossdeploy(&local).await.args(["history", "--execution", "e1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--execution needs --pipeline");
    // A table the caller may not read, or that does not exist: an AWS failure.
    let out = crossdeploy(&local).await.args(["history", "--table", "no-such-table"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ResourceNotFoundException"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `crossdeploy` with what the updaters need to act: the allow-list and the ExternalId, as the
/// functions have them.
async fn deployer(local: &LocalAws) -> Command {
    let mut cmd = crossdeploy(local).await;
    cmd.env("CROSSDEPLOY_ALLOWED_TARGET_ROLES", LocalAws::allowed_roles())
        .env("CROSSDEPLOY_EXTERNAL_ID", accounts::EXTERNAL_ID)
        .env("CROSSDEPLOY_ARTIFACT_BUCKET", &local.bucket);
    cmd
}

fn file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("crossdeploy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn deploy_lambda_from_the_command_line_gives_the_result_and_record_a_pipeline_job_gives() {
    let local = deployed().await;
    let package = file("v3.zip", &lambda_package("v3"));
    let role = accounts::target_role(TARGET_ACCOUNT);

    let out = deployer(&local)
        .await
        .args(["deploy", "lambda", "--role-arn", &role, "--function-name", FUNCTION, "--alias", ALIAS, "--artifact"])
        .arg(&package)
        .output()
        .unwrap();

    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Succeeded: ") && text.contains("FunctionVersion = 3"), "{text}");
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    assert_eq!(state.alias_version, "3");
    // The same record as the pipeline job's (version 2, before it), field for field.
    let records =
        local.ledger().deployments(&TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS)).await.unwrap();
    let (cli, job) = (&records[0], &records[1]);
    assert_eq!((cli.previous.as_deref(), cli.deployed.as_deref()), (Some("2"), Some("3")));
    assert_eq!((cli.status, cli.serving), (job.status, job.serving));
    assert_eq!(cli.role_arn, job.role_arn);
    assert_eq!(cli.outputs.keys().collect::<Vec<_>>(), job.outputs.keys().collect::<Vec<_>>());
    assert_eq!(cli.outputs["CodeSha256"], state.alias_version_sha);
    assert_eq!(cli.pipeline.pipeline_name.as_deref(), Some("crossdeploy-cli"));
    assert!(
        local
            .ledger()
            .lease_holder(&cli.target)
            .await
            .unwrap()
            .is_none_or(|h| h.until <= crossdeploy_ledger::now_secs()),
        "the lease is given back"
    );
}

#[tokio::test]
async fn deploy_exits_by_failure_type_and_deploys_an_ecs_image_file() {
    let local = deployed().await;
    let package = file("v4.zip", &lambda_package("v4"));
    let role = accounts::target_role(TARGET_ACCOUNT);
    let deploy = |role: String, alias: &'static str| {
        let local = &local;
        let package = package.clone();
        async move {
            deployer(local)
                .await
                .args([
                    "deploy",
                    "lambda",
                    "--role-arn",
                    &role,
                    "--function-name",
                    FUNCTION,
                    "--alias",
                    alias,
                    "--artifact",
                ])
                .arg(&package)
                .output()
                .unwrap()
        }
    };
    // A bad key: ConfigurationError, 3.
    let out = deploy(role.clone(), "not an alias!").await;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ConfigurationError: "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A role off the allow-list: PermissionError, 4.
    let out = deploy("arn:aws:iam::555555555555:role/crossdeploy-target".into(), ALIAS).await;
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().alias_version,
        "2",
        "nothing deployed"
    );

    // ECS, from an imagedefinitions.json file (zipped for the updater, as a pipeline's artifact).
    let first = crossdeploy_local::ecs::create_fargate_service(&local.moto.endpoint, &local.target).await.unwrap();
    let images = file(
        "imagedefinitions.json",
        br#"[{"name":"web","imageUri":"111111111111.dkr.ecr.us-east-1.amazonaws.com/web:cli"}]"#,
    );
    let out = deployer(&local)
        .await
        .args([
            "deploy",
            "ecs",
            "--role-arn",
            &role,
            "--cluster",
            "prod",
            "--service",
            "web",
            "--output",
            "json",
            "--artifact",
        ])
        .arg(&images)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs = &answer["Answer"]["Success"]["output_variables"];
    assert_eq!(outputs["PreviousTaskDefinitionArn"], first.as_str());
    assert!(
        outputs["ServiceDeploymentArn"].as_str().is_some_and(|a| a.contains(":service-deployment/prod/web/")),
        "{answer}"
    );
}

/// A canary from the command line: it goes on through continuation jobs (each run 30 s here),
/// reporting where it stands after each, and ends with all the traffic moved.
#[tokio::test]
async fn a_canary_from_the_command_line_goes_on_through_continuations_and_reports_its_progress() {
    let local = deployed().await;
    let package = file("v5.zip", &lambda_package("v5"));
    let role = accounts::target_role(TARGET_ACCOUNT);

    let out = deployer(&local)
        .await
        .env("CROSSDEPLOY_CLI_RUN_SECONDS", "30")
        .args(["deploy", "lambda", "--role-arn", &role, "--function-name", FUNCTION, "--alias", ALIAS])
        .args(["--strategy", "Canary10Percent1Minutes", "--artifact"])
        .arg(&package)
        .output()
        .unwrap();

    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("in progress (")).collect();
    assert!(!progress.is_empty(), "{stderr}");
    assert!(progress.iter().any(|l| l.contains("10%")), "the canary's share is reported: {stderr}");
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    assert_eq!((state.alias_version.as_str(), state.alias_routing.len()), ("3", 0), "all the traffic on version 3");
}

/// A target another deployment holds: the command line waits for it through continuation jobs,
/// a pause between them (not a tight loop), and deploys once the lease is free.
#[tokio::test]
async fn deploy_waits_for_a_busy_target_and_then_deploys() {
    let local = deployed().await;
    let key = TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS);
    let holder = LeaseHolder {
        deployment_id: "someone-else".into(),
        pipeline: Some("orders".into()),
        execution_id: Some("exec-9".into()),
        job_id: Some("someone-else".into()),
        since: crossdeploy_ledger::now_secs(),
        ..LeaseHolder::default()
    };
    local.ledger().acquire_lease(&key, &holder, crossdeploy_ledger::now_secs() + 20).await.unwrap();
    let package = file("v6.zip", &lambda_package("v6"));
    let started = std::time::Instant::now();

    let out = deployer(&local)
        .await
        .env("CROSSDEPLOY_CLI_RUN_SECONDS", "30")
        .args(["deploy", "lambda", "--role-arn", &accounts::target_role(TARGET_ACCOUNT), "--function-name", FUNCTION])
        .args(["--alias", ALIAS, "--artifact"])
        .arg(&package)
        .output()
        .unwrap();

    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let waits = stderr.lines().filter(|l| l.contains("waiting for") && l.contains("someone-else")).count();
    assert!((1..=3).contains(&waits), "waited with a pause between jobs, not in a tight loop: {stderr}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(15), "it waited for the lease");
    assert_eq!(accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().alias_version, "3");
}
