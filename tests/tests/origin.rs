//! The updaters act only on requests the worker or deploy-rollback sent: a request is honoured
//! only while the target's live lease in the ledger holds its fingerprint. Against the local AWS:
//! a made-up request is refused before any AssumeRole (moto's access log) and changes nothing; a
//! request for a target another deployment holds, with another artifact, is refused; the
//! holder's own request goes through, resumed or not.

use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{LeaseHolder, Ledger, TargetKey};
use crossdeploy_local::accounts::{self, function_state, EXTERNAL_ID, REGION, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{build_artifact, lambda_package};
use crossdeploy_local::{assume_role_calls, InProcessUpdater, LocalAws, LAMBDA_UPDATER};
use crossdeploy_protocol::{
    DeployRequest, DeploySpec, DeploymentStrategy, FailureType, LambdaRollback, LambdaSpec, Outcome, PipelineContext,
    RollbackRequest, RollbackSpec, Target, UpdaterRequest,
};
use pipeline_job_worker::Invoke;
use std::path::PathBuf;
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";

async fn spawn() -> (LocalAws, PathBuf, InProcessUpdater) {
    let (local, log) = LocalAws::start_with_access_log("origin").await.expect("the local AWS starts");
    accounts::create_function(&local.target, FUNCTION, ALIAS, lambda_package("v1")).await.unwrap();
    let updaters =
        InProcessUpdater::with_allow_list(&local.shared, &LocalAws::allowed_roles(), EXTERNAL_ID, &local.ledger_table);
    (local, log, updaters)
}

async fn deploy_request(local: &LocalAws, job: &str, marker: &str) -> DeployRequest {
    let artifact = local
        .upload(&format!("orders/{marker}.zip"), build_artifact("lambda.zip", &lambda_package(marker)))
        .await
        .unwrap();
    DeployRequest {
        request_id: job.into(),
        pipeline: PipelineContext {
            job_id: job.into(),
            pipeline_name: Some("orders".into()),
            execution_id: Some(format!("exec-{job}")),
            stage: Some("Deploy-prod".into()),
            action: Some("DeployLambda".into()),
        },
        target: Target { role_arn: accounts::target_role(TARGET_ACCOUNT).parse().unwrap(), region: None },
        artifact,
        spec: DeploySpec::Lambda(LambdaSpec {
            function_name: FUNCTION.into(),
            alias: ALIAS.into(),
            artifact_path: Some("lambda.zip".into()),
            image_file: None,
            strategy: DeploymentStrategy::AllAtOnce,
        }),
        alarm_names: Vec::new(),
        resume: None,
        deployment_id: None,
        deadline_ms: None,
    }
}

/// Takes the target's lease for `holder_id` vouching for `request`, as the worker does.
async fn lease_for(ledger: &Ledger, request: &UpdaterRequest, holder_id: &str, until: u64) {
    let holder = LeaseHolder {
        deployment_id: holder_id.into(),
        job_id: Some(holder_id.into()),
        request: request.fingerprint(),
        ..LeaseHolder::default()
    };
    let target = TargetKey::of_request(request, REGION);
    assert_eq!(ledger.acquire_lease(&target, &holder, until).await.unwrap(), crossdeploy_ledger::Lease::Acquired);
}

fn refusal(outcome: &Outcome) -> &str {
    let Outcome::Failed { failure_type, message, stands } = outcome else { panic!("{outcome:?}") };
    assert_eq!(*failure_type, FailureType::PermissionError, "{message}");
    assert!(stands.is_none(), "nothing changed: {outcome:?}");
    assert!(message.contains("lambda-alias-updater refused request"), "{message}");
    message
}

#[tokio::test]
async fn a_made_up_deploy_request_is_refused_before_any_assume_role_and_changes_nothing() {
    let (local, log, updaters) = spawn().await;
    let before = function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    let assumed_before = assume_role_calls(&log);
    let forged = UpdaterRequest::Deploy(Box::new(deploy_request(&local, "job-forged", "forged").await));
    let outcome = updaters.invoke(LAMBDA_UPDATER, &forged).await.unwrap();
    let message = refusal(&outcome);
    assert!(message.contains("no deployment or rollback holds the target's lease"), "{message}");
    assert!(message.contains(&format!("lambda/{TARGET_ACCOUNT}/{REGION}/{FUNCTION}/{ALIAS}")), "{message}");
    assert_eq!(assume_role_calls(&log), assumed_before, "no AssumeRole for a refused request");
    assert_eq!(function_state(&local.target, FUNCTION, ALIAS).await.unwrap(), before, "nothing changed");

    // A lease that has run out vouches for nothing either.
    let ledger = local.ledger();
    lease_for(&ledger, &forged, "job-forged", crossdeploy_ledger::now_secs() - 5).await;
    let message = refusal(&updaters.invoke(LAMBDA_UPDATER, &forged).await.unwrap()).to_owned();
    assert!(message.contains("expired"), "{message}");
    assert_eq!(function_state(&local.target, FUNCTION, ALIAS).await.unwrap(), before);
}

#[tokio::test]
async fn only_the_request_the_lease_vouches_for_is_deployed_resumed_or_not() {
    let (local, log, updaters) = spawn().await;
    let before = function_state(&local.target, FUNCTION, ALIAS).await.unwrap();
    let ledger = local.ledger();
    let real = deploy_request(&local, "job-real", "v2").await;
    lease_for(
        &ledger,
        &UpdaterRequest::Deploy(Box::new(real.clone())),
        "job-real",
        crossdeploy_ledger::now_secs() + 300,
    )
    .await;
    // The same deployment, another artifact, a forged state to resume from (a version to move
    // the alias to, past every gate), or a later deadline: not the request its worker vouched for.
    let mut swapped = real.clone();
    swapped.artifact = deploy_request(&local, "job-real", "swapped").await.artifact;
    let mut forged_state = real.clone();
    forged_state.resume =
        Some(serde_json::json!({"Phase": "Shifting", "NewVersion": "1", "Step": 1, "StepStartedAt": 0}));
    let mut later = real.clone();
    later.deadline_ms = Some(Deadline::after(Duration::from_secs(600)).epoch_millis());
    let assumed_before = assume_role_calls(&log);
    for forged in [swapped, forged_state, later] {
        let outcome = updaters.invoke(LAMBDA_UPDATER, &UpdaterRequest::Deploy(Box::new(forged))).await.unwrap();
        let message = refusal(&outcome);
        assert!(message.contains("vouches for another request"), "{message}");
        assert!(
            !message.contains("exec-job-real") && !message.contains("pipeline orders"),
            "the holder is not named: {message}"
        );
    }
    assert_eq!(assume_role_calls(&log), assumed_before);
    assert_eq!(function_state(&local.target, FUNCTION, ALIAS).await.unwrap(), before);

    // The request itself, as the worker sent it, deploys.
    let outcome = updaters.invoke(LAMBDA_UPDATER, &UpdaterRequest::Deploy(Box::new(real))).await.unwrap();
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    assert_ne!(function_state(&local.target, FUNCTION, ALIAS).await.unwrap().alias_version, before.alias_version);
}

#[tokio::test]
async fn a_rollback_request_needs_the_lease_too_and_then_meets_the_allow_list() {
    let (local, _log, updaters) = spawn().await;
    let rollback = |role: String| {
        UpdaterRequest::Rollback(Box::new(RollbackRequest {
            request_id: "rollback-x".into(),
            target: Target { role_arn: role.parse().unwrap(), region: None },
            spec: RollbackSpec::Lambda(LambdaRollback {
                function_name: FUNCTION.into(),
                alias: ALIAS.into(),
                restore_version: "1".into(),
                deployed_version: "2".into(),
            }),
            reason: "test".into(),
            deadline_ms: None,
            deployment_id: Some("job-x".into()),
        }))
    };
    let request = rollback(accounts::target_role(TARGET_ACCOUNT));
    let message = refusal(&updaters.invoke(LAMBDA_UPDATER, &request).await.unwrap()).to_owned();
    assert!(message.contains("no deployment or rollback holds"), "{message}");
    // Vouched for (as deploy-rollback does), a role off the allow-list is still refused.
    let off_list = rollback(accounts::target_role("444444444444"));
    lease_for(&local.ledger(), &off_list, "rollback-x", crossdeploy_ledger::now_secs() + 300).await;
    let outcome = updaters.invoke(LAMBDA_UPDATER, &off_list).await.unwrap();
    let Outcome::Failed { failure_type, message, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(failure_type, FailureType::PermissionError);
    assert!(message.contains("is not on crossdeploy's allow-list"), "{message}");
    // And the ECS updater refuses a Lambda rollback.
    let outcome = updaters.invoke(crossdeploy_local::ECS_UPDATER, &off_list).await.unwrap();
    assert!(matches!(outcome, Outcome::Failed { failure_type: FailureType::ConfigurationError, .. }), "{outcome:?}");
}

#[tokio::test]
async fn an_updater_with_no_ledger_table_refuses_every_request() {
    let (local, _log, _) = spawn().await;
    let deps = lambda_alias_updater::Deps {
        s3: aws_sdk_s3::Client::new(&local.shared),
        sessions: crossdeploy_credentials::TargetSessions::new(
            aws_sdk_sts::Client::new(&local.shared),
            local.shared.clone(),
            crossdeploy_credentials::AllowList::parse(&LocalAws::allowed_roles()),
            Some(EXTERNAL_ID.to_owned()),
        ),
        origin: crossdeploy_ledger::Origin::new(None, REGION),
    };
    let request = UpdaterRequest::Deploy(Box::new(deploy_request(&local, "job-1", "v2").await));
    let outcome = lambda_alias_updater::handle(
        serde_json::to_value(&request).unwrap(),
        &deps,
        Deadline::after(Duration::from_secs(60)),
    )
    .await;
    let Outcome::Failed { failure_type, message, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(failure_type, FailureType::ConfigurationError);
    assert!(message.contains("set CROSSDEPLOY_LEDGER_TABLE"), "{message}");
}
