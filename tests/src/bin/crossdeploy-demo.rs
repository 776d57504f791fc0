//! The local demo: whole cross-account deployments, as a pipeline's Invoke actions run them,
//! against the local AWS (moto + crossdeploy's CodePipeline emulator). Run it with `./scripts/demo`.

use crossdeploy_aws::Deadline;
use crossdeploy_local::accounts::{self, OTHER_ACCOUNT, SHARED_ACCOUNT, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{aws_event, code_sha256, event_time, lambda_package, zip_of};
use crossdeploy_local::{ecs, Answer, InProcessUpdater, LocalAws};
use pipeline_job_worker::handle_invoke_event;
use std::time::{Duration, Instant};

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";

#[tokio::main]
async fn main() -> crossdeploy_local::Result<()> {
    println!("crossdeploy demo: CodePipeline Invoke actions deploy into another account\n");
    let local = LocalAws::start().await?;
    println!(
        "local AWS: moto at {}, CodePipeline job API emulator at {}",
        local.moto.endpoint, local.emulator.endpoint
    );
    for account in [&local.target, &local.other] {
        accounts::create_function(account, FUNCTION, ALIAS, lambda_package("v1")).await?;
    }
    let first_revision = ecs::create_fargate_service(&local.moto.endpoint, &local.target).await?;
    println!("target account {TARGET_ACCOUNT}: function {FUNCTION} (alias {ALIAS} -> version 1); Fargate service {} in cluster {} on {first_revision}", ecs::SERVICE, ecs::CLUSTER);
    println!("target account {OTHER_ACCOUNT}: the same function, which must stay untouched\n");

    let package = lambda_package("v2");
    let new_image = "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:4f1e5c1";
    let images = format!(r#"[{{"name":"web","imageUri":"{new_image}"}}]"#);
    let key = "orders/BuildOutput/4f1e5c1.zip";
    let artifact =
        local.upload(key, zip_of(&[("lambda.zip", &package), ("imagedefinitions.json", images.as_bytes())])).await?;
    println!(
        "build output {artifact} holds lambda.zip (CodeSha256 {}) and imagedefinitions.json ({new_image})",
        code_sha256(&package)
    );

    let role = accounts::target_role(TARGET_ACCOUNT);
    let lambda = serde_json::json!({"Kind": "Lambda", "TargetRoleArn": role, "FunctionName": FUNCTION, "Alias": ALIAS, "ArtifactPath": "lambda.zip"}).to_string();
    let ecs_params = serde_json::json!({"Kind": "Ecs", "TargetRoleArn": role, "ClusterName": ecs::CLUSTER, "ServiceName": ecs::SERVICE}).to_string();
    let off_list = lambda.replace(TARGET_ACCOUNT, "444444444444");
    let worker = local.worker();
    for (title, action, params) in [
        ("Lambda: deploy", "DeployLambda", lambda.clone()),
        ("Lambda: the same artifact again (idempotent)", "DeployLambda", lambda),
        ("Lambda: a role that is not on the allow-list", "DeployLambda", off_list),
        ("ECS: new image for the service", "DeployEcs", ecs_params),
    ] {
        let fn_before = accounts::function_state(&local.target, FUNCTION, ALIAS).await?;
        let svc_before = ecs::service_state(&local.target).await?;
        let event = local.job(action, &params, artifact.clone());
        let started = Instant::now();
        handle_invoke_event(event.clone(), worker.clone(), Deadline::after(Duration::from_secs(120)), "demo").await?;
        let took = started.elapsed();
        println!("\n== {title} ({} ms)", took.as_millis());
        let role_account = serde_json::from_str::<serde_json::Value>(&params)?["TargetRoleArn"]
            .as_str()
            .unwrap_or_default()
            .split(':')
            .nth(4)
            .unwrap_or_default()
            .to_owned();
        println!("   shared services {SHARED_ACCOUNT} -> role in account {role_account}");
        if action == "DeployLambda" {
            let after = accounts::function_state(&local.target, FUNCTION, ALIAS).await?;
            println!(
                "   {TARGET_ACCOUNT}: function {FUNCTION}, alias {ALIAS}: version {} -> {} (serves CodeSha256 {})",
                fn_before.alias_version, after.alias_version, after.alias_version_sha
            );
        } else {
            let after = ecs::service_state(&local.target).await?;
            let (td, _) = ecs::task_definition(&local.target, &after.task_definition).await?;
            let image = td
                .container_definitions()
                .iter()
                .find(|c| c.name() == Some("web"))
                .and_then(|c| c.image())
                .unwrap_or_default();
            println!(
                "   {TARGET_ACCOUNT}: service {}: {} -> {}",
                ecs::SERVICE,
                svc_before.task_definition,
                after.task_definition
            );
            println!("   container web now runs {image}");
            if let Some(d) = ecs::service_deployments(&local.target, ecs::CLUSTER, ecs::SERVICE).await?.first() {
                println!(
                    "   ECS service deployment {}: {}",
                    d.service_deployment_arn().unwrap_or_default(),
                    d.status().map(|s| s.as_str()).unwrap_or("?")
                );
            }
        }
        for answer in local.answers_for(&event) {
            match answer {
                Answer::Success { summary, output_variables, .. } => {
                    println!("   CodePipeline answer: PutJobSuccessResult: {}", summary.unwrap_or_default());
                    for (k, v) in output_variables {
                        println!("     {k} = {v}");
                    }
                }
                Answer::Failure { failure_type, message, .. } => {
                    println!("   CodePipeline answer: PutJobFailureResult {failure_type}: {message}")
                }
            }
        }
    }
    canary_scene(&local).await?;
    rollback_scene(&local).await?;

    let untouched = accounts::function_state(&local.other, FUNCTION, ALIAS).await?;
    println!("\naccount {OTHER_ACCOUNT}: alias {ALIAS} still -> version {} (untouched)", untouched.alias_version);
    Ok(())
}

/// A canary into the target account, an alarm set to ALARM, the alias put back.
async fn canary_scene(local: &LocalAws) -> crossdeploy_local::Result<()> {
    const ALARM: &str = "orders-errors";
    accounts::create_alarm(&local.target, ALARM).await?;
    let package = lambda_package("v3");
    let artifact = local.upload("orders/BuildOutput/v3.zip", zip_of(&[("lambda.zip", &package)])).await?;
    // Updaters with 20 s per invocation: the canary's bake goes on through continuation jobs.
    let mut updaters = InProcessUpdater::with_allow_list(
        &local.shared,
        &LocalAws::allowed_roles(),
        accounts::EXTERNAL_ID,
        &local.ledger_table,
    );
    updaters.budget = Duration::from_secs(20);
    let worker = std::sync::Arc::new(local.worker_with(updaters));
    let params = serde_json::json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": FUNCTION, "Alias": ALIAS,
        "ArtifactPath": "lambda.zip", "DeploymentStrategy": "Canary10Percent5Minutes", "AlarmNames": ALARM,
    })
    .to_string();
    println!("\n== Lambda: Canary10Percent5Minutes gated by alarm {ALARM} in {TARGET_ACCOUNT}");
    let event = local.job("DeployLambda", &params, artifact);
    handle_invoke_event(event.clone(), worker.clone(), Deadline::after(Duration::from_secs(60)), "demo").await?;
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await?;
    println!("   alias {ALIAS} -> version {}, extra routing {:?}", state.alias_version, state.alias_routing);
    for answer in local.answers_for(&event) {
        if let Answer::Success { summary, .. } = answer {
            println!(
                "   CodePipeline answer: PutJobSuccessResult with a continuation token: {}",
                summary.unwrap_or_default()
            );
        }
    }
    accounts::set_alarm_state(
        &local.target,
        ALARM,
        aws_sdk_cloudwatch::types::StateValue::Alarm,
        "Threshold Crossed: errors above 5",
    )
    .await?;
    println!("   set-alarm-state {ALARM} ALARM");
    for next in local.emulator.take_continuations() {
        handle_invoke_event(next.clone(), worker.clone(), Deadline::after(Duration::from_secs(60)), "demo").await?;
        for answer in local.answers_for(&next) {
            if let Answer::Failure { failure_type, message, .. } = answer {
                println!("   CodePipeline answer: PutJobFailureResult {failure_type}: {message}");
            }
        }
    }
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await?;
    println!("   alias {ALIAS} -> version {}, extra routing {:?} (restored)", state.alias_version, state.alias_routing);
    Ok(())
}

/// After the stage: a deployment gated by an alarm succeeds, the alarm fires within the bake
/// window, its state change reaches deploy-rollback (as EventBridge forwards it), and the alias
/// goes back to the version the ledger recorded.
async fn rollback_scene(local: &LocalAws) -> crossdeploy_local::Result<()> {
    const ALARM: &str = "orders-errors";
    use aws_sdk_cloudwatch::types::StateValue;
    accounts::set_alarm_state(&local.target, ALARM, StateValue::Ok, "back to normal").await?;
    let package = lambda_package("v4");
    let artifact = local.upload("orders/BuildOutput/v4.zip", zip_of(&[("lambda.zip", &package)])).await?;
    let params = serde_json::json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": FUNCTION, "Alias": ALIAS,
        "ArtifactPath": "lambda.zip", "AlarmNames": ALARM,
    })
    .to_string();
    let before = accounts::function_state(&local.target, FUNCTION, ALIAS).await?;
    println!("\n== Rollback: alarm {ALARM} fires within the bake window after the stage");
    let event = local.job("DeployLambda", &params, artifact);
    handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(60)), "demo").await?;
    let after = accounts::function_state(&local.target, FUNCTION, ALIAS).await?;
    println!("   deployed: alias {ALIAS} version {} -> {}", before.alias_version, after.alias_version);
    let reason = "Threshold Crossed: 1 out of the last 1 datapoints [12.0] was greater than the threshold (5.0)";
    accounts::set_alarm_state(&local.target, ALARM, StateValue::Alarm, reason).await?;
    println!("   set-alarm-state {ALARM} ALARM; the target account's rule forwards the state change");
    let alarm_event = aws_event(
        "cloudwatch-alarm-state-change.json",
        &[
            ("/time", serde_json::json!(event_time(0))),
            ("/account", serde_json::json!(TARGET_ACCOUNT)),
            ("/region", serde_json::json!(accounts::REGION)),
            ("/detail/alarmName", serde_json::json!(ALARM)),
            ("/detail/state/reason", serde_json::json!(reason)),
        ],
    )?;
    let rollback = local.rollback();
    for delivery in ["first delivery", "the same event again"] {
        let report =
            deploy_rollback::handle(alarm_event.clone(), &rollback, Deadline::after(Duration::from_secs(60)), "demo")
                .await?;
        println!("   deploy-rollback, {delivery}: {}", report.trigger);
        for r in &report.rollbacks {
            println!("     {:?}: {}", r.result, r.message);
        }
    }
    let state = accounts::function_state(&local.target, FUNCTION, ALIAS).await?;
    println!("   alias {ALIAS} -> version {}, extra routing {:?}", state.alias_version, state.alias_routing);
    let target = crossdeploy_ledger::TargetKey::lambda(TARGET_ACCOUNT, accounts::REGION, FUNCTION, ALIAS);
    if let Some(r) = local.ledger().deployments(&target).await?.into_iter().next() {
        if let Some(rb) = r.rollback {
            println!("   ledger: deployment {} rollback {} ({})", r.deployment_id, rb.status.as_str(), rb.trigger);
        }
    }

    // What an operator sees of it all: the ledger's history, through the command line.
    println!("\n$ crossdeploy history --table {}", local.ledger_table);
    let cli = crossdeploy_cli::Cli::from_args(["crossdeploy", "history", "--table", &local.ledger_table])
        .map_err(|e| e.to_string())?;
    let code = crossdeploy_cli::run_with(cli, &local.shared, &mut std::io::stdout(), &mut std::io::stderr()).await;
    if code != crossdeploy_cli::exit::OK {
        return Err(format!("crossdeploy history exited with {code}").into());
    }
    Ok(())
}
