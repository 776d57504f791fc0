//! The local demo: a whole cross-account Lambda deployment, as a pipeline's Invoke action runs it,
//! against the local AWS (moto + crossdeploy's CodePipeline emulator). Run it with `./scripts/demo`.

use crossdeploy_aws::Deadline;
use crossdeploy_credentials::{AllowList, TargetSessions};
use crossdeploy_local::accounts::{
    self, EXTERNAL_ID, OTHER_ACCOUNT, SHARED_ACCOUNT, TARGET_ACCOUNT,
};
use crossdeploy_local::fixtures::{build_artifact, code_sha256, lambda_package};
use crossdeploy_local::{Answer, Emulator, InProcessUpdater, Moto, NewJob};
use crossdeploy_protocol::ArtifactLocation;
use pipeline_job_worker::{handle_invoke_event, Updaters, Worker};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";

#[tokio::main]
async fn main() -> crossdeploy_local::Result<()> {
    println!("crossdeploy demo: a CodePipeline Invoke action deploys a Lambda package into another account\n");
    let moto = Moto::start().await?;
    let emulator = Emulator::start().await?;
    println!(
        "local AWS: moto at {}, CodePipeline job API emulator at {}",
        moto.endpoint, emulator.endpoint
    );

    let shared = accounts::account_config(&moto.endpoint, SHARED_ACCOUNT).await?;
    let target = accounts::account_config(&moto.endpoint, TARGET_ACCOUNT).await?;
    let other = accounts::account_config(&moto.endpoint, OTHER_ACCOUNT).await?;
    let bucket = accounts::artifact_bucket(&shared).await?;
    for account in [&target, &other] {
        accounts::create_function(account, FUNCTION, ALIAS, lambda_package("v1")).await?;
    }
    println!("target accounts {TARGET_ACCOUNT} and {OTHER_ACCOUNT}: function {FUNCTION}, alias {ALIAS} -> version 1\n");

    let package = lambda_package("v2");
    let key = "orders/BuildOutput/4f1e5c1.zip";
    accounts::put_artifact(
        &shared,
        &bucket,
        key,
        build_artifact("lambda.zip", &package),
    )
    .await?;
    let artifact = ArtifactLocation {
        bucket: bucket.clone(),
        key: key.to_owned(),
    };
    println!(
        "build output s3://{bucket}/{key} holds lambda.zip (CodeSha256 {})",
        code_sha256(&package)
    );

    let allowed = accounts::target_role(TARGET_ACCOUNT);
    let worker = Arc::new(Worker {
        codepipeline: aws_sdk_codepipeline::Client::from_conf(
            aws_sdk_codepipeline::config::Builder::from(&shared)
                .endpoint_url(&emulator.endpoint)
                .build(),
        ),
        invoker: InProcessUpdater {
            lambda: lambda_alias_updater::Deps {
                s3: aws_sdk_s3::Client::new(&shared),
                sessions: TargetSessions::new(
                    aws_sdk_sts::Client::new(&shared),
                    shared.clone(),
                    AllowList::parse(&allowed),
                    Some(EXTERNAL_ID.into()),
                ),
            },
            budget: Duration::from_secs(120),
        },
        updaters: Updaters {
            lambda: Some("lambda-alias-updater".into()),
            ecs: None,
        },
    });

    let user_parameters = serde_json::json!({
        "Kind": "Lambda", "TargetRoleArn": allowed, "FunctionName": FUNCTION, "Alias": ALIAS, "ArtifactPath": "lambda.zip"
    })
    .to_string();
    for (title, params) in [
        ("deploy", user_parameters.clone()),
        (
            "the same artifact again (idempotent)",
            user_parameters.clone(),
        ),
        (
            "a role that is not on the allow-list",
            user_parameters.replace(TARGET_ACCOUNT, "444444444444"),
        ),
    ] {
        let before = accounts::function_state(&target, FUNCTION, ALIAS).await?;
        let event = emulator.start_invoke_job(NewJob {
            pipeline_name: "orders".into(),
            stage: "Deploy-dev".into(),
            action: "DeployLambda".into(),
            user_parameters: params,
            artifact: artifact.clone(),
        });
        let job_id = event["CodePipeline.job"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let started = Instant::now();
        handle_invoke_event(
            event,
            worker.clone(),
            Deadline::after(Duration::from_secs(120)),
        )
        .await?;
        let took = started.elapsed();
        let after = accounts::function_state(&target, FUNCTION, ALIAS).await?;
        println!("\n== {title}: job {job_id} ({} ms)", took.as_millis());
        println!("   shared services {SHARED_ACCOUNT} -> target {TARGET_ACCOUNT}: function {FUNCTION}, alias {ALIAS}: version {} -> {}", before.alias_version, after.alias_version);
        println!(
            "   alias {ALIAS} serves CodeSha256 {}",
            after.alias_version_sha
        );
        for answer in emulator.answers().iter().filter(|a| a.job_id() == job_id) {
            match answer {
                Answer::Success {
                    summary,
                    output_variables,
                    ..
                } => {
                    println!(
                        "   CodePipeline answer: PutJobSuccessResult: {}",
                        summary.as_deref().unwrap_or_default()
                    );
                    for (k, v) in output_variables {
                        println!("     {k} = {v}");
                    }
                }
                Answer::Failure {
                    failure_type,
                    message,
                    ..
                } => {
                    println!(
                        "   CodePipeline answer: PutJobFailureResult {failure_type}: {message}"
                    );
                }
            }
        }
    }
    let untouched = accounts::function_state(&other, FUNCTION, ALIAS).await?;
    println!(
        "\naccount {OTHER_ACCOUNT}: alias {ALIAS} still -> version {} (untouched)",
        untouched.alias_version
    );
    Ok(())
}
