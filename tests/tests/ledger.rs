//! The ledger against DynamoDB in the local AWS: conditional writes do what they promise.

use crossdeploy_ledger::{
    Claim, Continuation, DeploymentRecord, DeploymentStatus, Lease, LeaseHolder, Ledger, Phase, RollbackClaim,
    RollbackRecord, RollbackStatus, TargetKey,
};
use crossdeploy_local::accounts::{self, SHARED_ACCOUNT};
use crossdeploy_local::Moto;
use crossdeploy_protocol::{ArtifactLocation, DeployRequest, DeploySpec, LambdaSpec, PipelineContext, Target};
use std::time::Duration;

async fn ledger() -> (Moto, Ledger) {
    let moto = Moto::start().await.unwrap();
    let shared = accounts::account_config(&moto.endpoint, SHARED_ACCOUNT).await.unwrap();
    let table = accounts::create_ledger_table(&shared).await.unwrap();
    (moto, Ledger::new(aws_sdk_dynamodb::Client::new(&shared), table))
}

fn target() -> TargetKey {
    let request = DeployRequest {
        request_id: "job-1".into(),
        pipeline: PipelineContext { job_id: "job-1".into(), ..Default::default() },
        target: Target { role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".parse().unwrap(), region: None },
        artifact: ArtifactLocation { bucket: "b".into(), key: "k".into() },
        spec: DeploySpec::Lambda(LambdaSpec {
            function_name: "arn:aws:lambda:us-east-1:222222222222:function:orders-api".into(),
            alias: "live".into(),
            artifact_path: None,
            strategy: Default::default(),
        }),
        alarm_names: vec![],
        resume: None,
    };
    TargetKey::of(&request, "us-east-1")
}

fn holder(id: &str) -> LeaseHolder {
    LeaseHolder {
        deployment_id: id.into(),
        pipeline: Some(format!("pipeline-{id}")),
        execution_id: Some(format!("exec-{id}")),
        job_id: Some(id.into()),
        since: 1,
    }
}

#[tokio::test]
async fn a_job_is_claimed_once_until_its_claim_expires() {
    let (_moto, ledger) = ledger().await;
    assert_eq!(ledger.claim_job("job-1", "run-a", Duration::from_secs(600)).await.unwrap(), Claim::Claimed);
    assert_eq!(ledger.claim_job("job-1", "run-b", Duration::from_secs(600)).await.unwrap(), Claim::Taken);
    // A run that died: its claim (0 s) lapses, and another run may take the job.
    assert_eq!(ledger.claim_job("job-2", "run-a", Duration::ZERO).await.unwrap(), Claim::Claimed);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ledger.claim_job("job-2", "run-b", Duration::from_secs(600)).await.unwrap(), Claim::Claimed);
    // An answered job is never taken again.
    ledger.finish_job("job-2", "run-b", "Succeeded").await.unwrap();
    assert_eq!(ledger.claim_job("job-2", "run-c", Duration::ZERO).await.unwrap(), Claim::Taken);
}

#[tokio::test]
async fn one_deployment_holds_a_target_at_a_time() {
    let (_moto, ledger) = ledger().await;
    let t = target();
    assert_eq!(t.as_str(), "lambda/222222222222/us-east-1/orders-api/live");
    assert_eq!(ledger.acquire_lease(&t, &holder("a"), Duration::from_secs(600)).await.unwrap(), Lease::Acquired);
    assert_eq!(
        ledger.acquire_lease(&t, &holder("b"), Duration::from_secs(600)).await.unwrap(),
        Lease::HeldBy(holder("a"))
    );
    assert_eq!(
        ledger.acquire_lease(&t, &holder("a"), Duration::from_secs(600)).await.unwrap(),
        Lease::Acquired,
        "the holder renews"
    );
    ledger.release_lease(&t, "b").await.unwrap();
    assert!(
        matches!(ledger.acquire_lease(&t, &holder("b"), Duration::from_secs(600)).await.unwrap(), Lease::HeldBy(_)),
        "only the holder releases"
    );
    ledger.release_lease(&t, "a").await.unwrap();
    assert_eq!(ledger.acquire_lease(&t, &holder("b"), Duration::ZERO).await.unwrap(), Lease::Acquired);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        ledger.acquire_lease(&t, &holder("c"), Duration::from_secs(600)).await.unwrap(),
        Lease::Acquired,
        "an expired lease is free"
    );
}

#[tokio::test]
async fn continuations_and_deployments_are_kept() {
    let (_moto, ledger) = ledger().await;
    let c = Continuation {
        deployment_id: "a".into(),
        started_at: 5,
        phase: Phase::Updating { state: serde_json::json!({"Phase": "WaitingForUpdate"}) },
    };
    ledger.save_continuation("cd1-job-1", &c).await.unwrap();
    assert!(ledger.save_continuation("cd1-job-1", &c).await.is_err(), "a token is written once");
    assert_eq!(ledger.load_continuation("cd1-job-1").await.unwrap(), Some(c));
    assert_eq!(ledger.load_continuation("cd1-unknown").await.unwrap(), None);

    let t = target();
    let mut first = DeploymentRecord {
        deployment_id: "a".into(),
        target: t.clone(),
        role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".into(),
        pipeline: PipelineContext {
            job_id: "a".into(),
            pipeline_name: Some("orders".into()),
            execution_id: Some("e1".into()),
            stage: Some("Deploy-dev".into()),
            ..Default::default()
        },
        started_at: 100,
        finished_at: None,
        status: DeploymentStatus::InProgress,
        previous: None,
        deployed: None,
        outputs: Default::default(),
        message: None,
        alarm_names: vec!["orders-5xx".into()],
        rollback: None,
    };
    ledger.start_deployment(&first).await.unwrap();
    first.status = DeploymentStatus::Succeeded;
    first.previous = Some("1".into());
    first.deployed = Some("2".into());
    ledger.finish_deployment(&first).await.unwrap();
    let mut late = first.clone();
    late.status = DeploymentStatus::Failed;
    ledger.finish_deployment(&late).await.unwrap();
    let second = DeploymentRecord {
        deployment_id: "b".into(),
        started_at: 200,
        status: DeploymentStatus::InProgress,
        ..first.clone()
    };
    ledger.start_deployment(&second).await.unwrap();

    let all = ledger.deployments(&t).await.unwrap();
    assert_eq!(all.iter().map(|d| d.deployment_id.as_str()).collect::<Vec<_>>(), vec!["b", "a"], "newest first");
    assert_eq!(all[1].status, DeploymentStatus::Succeeded, "a finished record is not overwritten");
    assert_eq!((all[1].previous.as_deref(), all[1].deployed.as_deref()), (Some("1"), Some("2")));

    // The indexes rollback reads: by pipeline execution and stage, and by account since a time.
    let in_stage = ledger.deployments_in_stage("orders", "e1", "Deploy-dev").await.unwrap();
    assert_eq!(in_stage.iter().map(|d| d.deployment_id.as_str()).collect::<Vec<_>>(), vec!["b", "a"]);
    assert!(ledger.deployments_in_stage("orders", "e1", "Deploy-qa").await.unwrap().is_empty());
    assert!(ledger.deployments_in_stage("orders", "e2", "Deploy-dev").await.unwrap().is_empty());
    let since_150 = ledger.deployments_in_account("222222222222", "us-east-1", 150).await.unwrap();
    assert_eq!(since_150.iter().map(|d| d.deployment_id.as_str()).collect::<Vec<_>>(), vec!["b"]);
    let all_in_account = ledger.deployments_in_account("222222222222", "us-east-1", 0).await.unwrap();
    assert_eq!(all_in_account.len(), 2);
    assert_eq!(all_in_account[1].alarm_names, vec!["orders-5xx".to_owned()]);
    assert!(ledger.deployments_in_account("333333333333", "us-east-1", 0).await.unwrap().is_empty());

    // A rollback is claimed once; a failed one may be claimed again; a finished one is reported.
    let a = all[1].clone();
    let claim = |by: &str| RollbackRecord {
        status: RollbackStatus::InProgress,
        trigger: "test".into(),
        event_id: format!("event-{by}"),
        by: by.into(),
        at: 1,
        restored: None,
        message: None,
    };
    let hold = Duration::from_secs(60);
    assert_eq!(ledger.claim_rollback(&a, &claim("r1"), hold).await.unwrap(), RollbackClaim::Claimed);
    assert!(
        matches!(ledger.claim_rollback(&a, &claim("r2"), hold).await.unwrap(), RollbackClaim::Taken(Some(r)) if r.by == "r1")
    );
    ledger.finish_rollback(&a, &RollbackRecord { status: RollbackStatus::Failed, ..claim("r1") }).await.unwrap();
    assert_eq!(ledger.claim_rollback(&a, &claim("r3"), hold).await.unwrap(), RollbackClaim::Claimed);
    // A run that lost its claim records nothing.
    ledger.finish_rollback(&a, &RollbackRecord { status: RollbackStatus::Restored, ..claim("r1") }).await.unwrap();
    let done = RollbackRecord { status: RollbackStatus::Restored, restored: Some("1".into()), ..claim("r3") };
    ledger.finish_rollback(&a, &done).await.unwrap();
    let RollbackClaim::Taken(Some(r)) = ledger.claim_rollback(&a, &claim("r4"), hold).await.unwrap() else {
        panic!("a restored deployment must not be claimed again")
    };
    assert_eq!(r, done);
    let read = ledger.deployments(&t).await.unwrap();
    assert_eq!(read[1].rollback.as_ref(), Some(&done));
    assert_eq!(read[1].status, DeploymentStatus::Succeeded, "the rollback leaves the deployment's record as it was");
    // No claim on a deployment the ledger does not hold.
    let ghost = DeploymentRecord { deployment_id: "ghost".into(), ..a.clone() };
    assert!(matches!(ledger.claim_rollback(&ghost, &claim("r5"), hold).await.unwrap(), RollbackClaim::Taken(None)));
}
