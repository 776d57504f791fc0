//! The ledger against DynamoDB in the local AWS: conditional writes do what they promise.

use crossdeploy_ledger::{
    now_secs, Claim, Continuation, Decided, DeploymentRecord, DeploymentStatus, Lease, LeaseHolder, Ledger, Phase,
    RollbackClaim, RollbackRecord, RollbackStatus, TargetKey,
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
            image_file: None,
            strategy: Default::default(),
        }),
        alarm_names: vec![],
        resume: None,
        deployment_id: None,
        deadline_ms: None,
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
        until: 0,
        request: None,
    }
}

/// A lease's end, `secs` from now.
fn until(secs: u64) -> u64 {
    now_secs() + secs
}

fn claimed(c: Claim) -> bool {
    matches!(c, Claim::Claimed { .. })
}

#[tokio::test]
async fn a_job_is_claimed_once_until_its_claim_expires() {
    let (_moto, ledger) = ledger().await;
    let Claim::Claimed { since_ms, retried: false } =
        ledger.claim_job("job-1", "run-a", Duration::from_secs(600)).await.unwrap()
    else {
        panic!("a new job is claimed")
    };
    assert_eq!(ledger.claim_job("job-1", "run-b", Duration::from_secs(600)).await.unwrap(), Claim::Taken);
    // The same run claiming again (the SDK's retry of a write whose answer was lost, or Lambda's
    // retry of the invocation with the same request id) gets its claim back, first time and all.
    assert_eq!(
        ledger.claim_job("job-1", "run-a", Duration::from_secs(600)).await.unwrap(),
        Claim::Claimed { since_ms, retried: true },
        "the holder finds its own claim"
    );
    // A run that died: its claim (0 s) lapses, and another run may take the job.
    assert!(claimed(ledger.claim_job("job-2", "run-a", Duration::ZERO).await.unwrap()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(claimed(ledger.claim_job("job-2", "run-b", Duration::from_secs(600)).await.unwrap()));
    // An answered job is never taken again: whoever finds it gets the recorded answer to send.
    assert_eq!(ledger.record_answer("job-2", "run-b", "Succeeded", "{\"a\":1}").await.unwrap(), Decided::Ours);
    let Claim::Answered(recorded) = ledger.claim_job("job-2", "run-c", Duration::ZERO).await.unwrap() else {
        panic!("an answered job is not claimed again")
    };
    assert_eq!((recorded.label.as_str(), recorded.data.as_str()), ("Succeeded", "{\"a\":1}"));
    let Claim::Answered(again) = ledger.claim_job("job-2", "run-b", Duration::ZERO).await.unwrap() else {
        panic!("an answered job is not claimed again, even by its holder")
    };
    assert_eq!(again, recorded);
}

#[tokio::test]
async fn an_answer_is_recorded_once_and_a_retry_gets_the_first_one() {
    let (_moto, ledger) = ledger().await;
    assert!(claimed(ledger.claim_job("job-1", "run-a", Duration::from_secs(600)).await.unwrap()));
    assert_eq!(ledger.record_answer("job-1", "run-a", "InProgress", "first").await.unwrap(), Decided::Ours);
    // The same write again (its answer lost): fine.
    assert_eq!(ledger.record_answer("job-1", "run-a", "InProgress", "first").await.unwrap(), Decided::Ours);
    // A different answer later (a retry that worked the job again): the first one stands.
    let Decided::Earlier(first) = ledger.record_answer("job-1", "run-a", "JobFailed", "second").await.unwrap() else {
        panic!("the first answer stands")
    };
    assert_eq!(first.data, "first");
    // A run that lost its claim records nothing.
    assert!(claimed(ledger.claim_job("job-2", "run-a", Duration::ZERO).await.unwrap()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(claimed(ledger.claim_job("job-2", "run-b", Duration::from_secs(600)).await.unwrap()));
    assert_eq!(ledger.record_answer("job-2", "run-a", "Succeeded", "late").await.unwrap(), Decided::LostClaim);
}

#[tokio::test]
async fn the_jobs_a_run_polled_are_found_again_by_its_retry() {
    use crossdeploy_ledger::PolledJob;
    let (_moto, ledger) = ledger().await;
    let job =
        |id: &str| PolledJob { job_id: id.into(), provider: "CrossdeployLambda".into(), nonce: format!("n-{id}") };
    assert!(ledger.polled_jobs("run-a").await.unwrap().is_empty());
    ledger.record_polled("run-a", &[job("j1"), job("j2")]).await.unwrap();
    // A retried append (its answer lost) lists them twice; they are read once.
    ledger.record_polled("run-a", &[job("j2")]).await.unwrap();
    ledger.record_polled("run-a", &[job("j3")]).await.unwrap();
    assert_eq!(ledger.polled_jobs("run-a").await.unwrap(), vec![job("j1"), job("j2"), job("j3")]);
    assert!(ledger.polled_jobs("run-b").await.unwrap().is_empty());
}

#[tokio::test]
async fn one_deployment_holds_a_target_at_a_time() {
    let (_moto, ledger) = ledger().await;
    let t = target();
    assert_eq!(t.as_str(), "lambda/222222222222/us-east-1/orders-api/live");
    // Each end computed once: a second boundary may pass between two calls.
    let (first_end, renewed_end) = (until(600), until(900));
    assert_eq!(ledger.acquire_lease(&t, &holder("a"), first_end).await.unwrap(), Lease::Acquired);
    let Lease::HeldBy(by) = ledger.acquire_lease(&t, &holder("b"), until(600)).await.unwrap() else {
        panic!("another deployment is refused")
    };
    assert_eq!((by.deployment_id.as_str(), by.until), ("a", first_end));
    assert_eq!(
        ledger.acquire_lease(&t, &holder("a"), renewed_end).await.unwrap(),
        Lease::Acquired,
        "the holder renews"
    );
    assert_eq!(ledger.lease_holder(&t).await.unwrap().map(|h| h.until), Some(renewed_end));
    ledger.release_lease(&t, "b").await.unwrap();
    assert!(
        matches!(ledger.acquire_lease(&t, &holder("b"), until(600)).await.unwrap(), Lease::HeldBy(_)),
        "only the holder releases"
    );
    ledger.release_lease(&t, "a").await.unwrap();
    ledger.release_lease(&t, "a").await.unwrap(); // a retried release (its answer lost) is fine
    assert_eq!(ledger.acquire_lease(&t, &holder("b"), now_secs()).await.unwrap(), Lease::Acquired);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        ledger.acquire_lease(&t, &holder("c"), until(600)).await.unwrap(),
        Lease::Acquired,
        "an expired lease is free"
    );
    // A holder whose job was answered for good is taken over, and only while it still holds.
    let stale = ledger.lease_holder(&t).await.unwrap().unwrap();
    assert_eq!(ledger.take_over_lease(&t, &holder("d"), until(600), &stale).await.unwrap(), Lease::Acquired);
    assert!(
        matches!(ledger.take_over_lease(&t, &holder("e"), until(600), &stale).await.unwrap(), Lease::HeldBy(h) if h.deployment_id == "d"),
        "a lease that changed hands since is not taken over"
    );
    assert_eq!(
        ledger.take_over_lease(&t, &holder("d"), until(600), &stale).await.unwrap(),
        Lease::Acquired,
        "a retried take-over meets its own write"
    );
}

#[tokio::test]
async fn continuations_and_deployments_are_kept() {
    let (_moto, ledger) = ledger().await;
    let c = Continuation {
        deployment_id: "a".into(),
        started_at: 5,
        phase: Phase::Updating { state: serde_json::json!({"Phase": "WaitingForUpdate"}) },
        stands: None,
        silent: 0,
    };
    ledger.save_continuation("cd1-job-1", &c, "run-a").await.unwrap();
    ledger.save_continuation("cd1-job-1", &c, "run-a").await.expect("the same run saves again (its answer lost)");
    ledger.save_continuation("cd1-job-1", &c, "run-b").await.expect("another run may write exactly what is there");
    let other = Continuation { started_at: 6, ..c.clone() };
    assert!(ledger.save_continuation("cd1-job-1", &other, "run-c").await.is_err(), "but nothing else");
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
        serving: None,
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

fn in_progress(id: &str, started_at: u64) -> DeploymentRecord {
    DeploymentRecord {
        deployment_id: id.into(),
        target: target(),
        role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".into(),
        pipeline: PipelineContext { job_id: id.into(), ..Default::default() },
        started_at,
        finished_at: None,
        status: DeploymentStatus::InProgress,
        previous: None,
        deployed: None,
        serving: None,
        outputs: Default::default(),
        message: None,
        alarm_names: vec![],
        rollback: None,
    }
}

fn rollback_claim(status: RollbackStatus, by: &str) -> RollbackRecord {
    RollbackRecord {
        status,
        trigger: "ECS deployment ecs-svc/1 failed".into(),
        event_id: "event-1".into(),
        by: by.into(),
        at: 1,
        restored: Some("1".into()),
        message: None,
    }
}

#[tokio::test]
async fn finishing_a_deployment_updates_its_item_and_keeps_what_rollback_wrote_on_it() {
    let (_moto, ledger) = ledger().await;
    let mut record = in_progress("a", 100);
    ledger.start_deployment(&record).await.unwrap();
    // ECS's circuit breaker failed it while crossdeploy still followed it: deploy-rollback
    // recorded that on the deployment.
    let hold = Duration::from_secs(60);
    assert_eq!(
        ledger.claim_rollback(&record, &rollback_claim(RollbackStatus::InProgress, "r1"), hold).await.unwrap(),
        RollbackClaim::Claimed
    );
    assert_eq!(
        ledger.claim_rollback(&record, &rollback_claim(RollbackStatus::InProgress, "r1"), hold).await.unwrap(),
        RollbackClaim::Claimed,
        "the same holder claiming again (its answer lost) gets its claim back"
    );
    let by_ecs = rollback_claim(RollbackStatus::RolledBackByEcs, "r1");
    ledger.finish_rollback(&record, &by_ecs).await.unwrap();
    // Then the worker records the end of the deployment.
    record.status = DeploymentStatus::Failed;
    record.finished_at = Some(200);
    record.message = Some("rolled back by the circuit breaker".into());
    let finished = ledger.finish_deployment(&record).await.unwrap();
    assert_eq!(finished.condemned.as_ref(), Some(&by_ecs), "the worker learns what was recorded on its deployment");
    // A retried finish (its answer lost) is fine.
    ledger.finish_deployment(&record).await.unwrap();
    let read = ledger.deployments(&target()).await.unwrap();
    assert_eq!(read[0].status, DeploymentStatus::Failed);
    assert_eq!(read[0].message.as_deref(), Some("rolled back by the circuit breaker"));
    assert_eq!(read[0].rollback.as_ref(), Some(&by_ecs), "what rollback wrote survives the deployment's end");
}

#[tokio::test]
async fn a_deployment_condemned_while_it_runs_learns_it_when_it_ends() {
    let (_moto, ledger) = ledger().await;
    let mut record = in_progress("a", 100);
    ledger.start_deployment(&record).await.unwrap();
    let pending = RollbackRecord {
        trigger: "action Tests failed in stage Deploy-dev".into(),
        ..rollback_claim(RollbackStatus::Pending, "r1")
    };
    assert!(ledger.condemn_in_progress(&record, &pending).await.unwrap());
    assert!(ledger.condemn_in_progress(&record, &pending).await.unwrap(), "a retried condemnation is fine");
    record.status = DeploymentStatus::Succeeded;
    record.finished_at = Some(200);
    let finished = ledger.finish_deployment(&record).await.unwrap();
    assert_eq!(finished.condemned.map(|c| c.trigger), Some("action Tests failed in stage Deploy-dev".to_owned()));
    // Its rollback is claimable now, once.
    let claim = rollback_claim(RollbackStatus::InProgress, "worker-run");
    assert_eq!(ledger.claim_rollback(&record, &claim, Duration::from_secs(60)).await.unwrap(), RollbackClaim::Claimed);
    // A finished deployment is not condemned in progress: rollback handles it as finished.
    let other = in_progress("b", 300);
    ledger.start_deployment(&DeploymentRecord { status: DeploymentStatus::Succeeded, ..other.clone() }).await.unwrap();
    assert!(!ledger.condemn_in_progress(&other, &pending).await.unwrap());
}

#[tokio::test]
async fn of_many_deployments_racing_for_one_target_exactly_one_gets_it() {
    // Regression: moto's conditional writes were not atomic (two concurrent ones could both
    // pass), and the soak found two deployments holding one lease. DynamoDB documents them as
    // atomic; tests/localaws/moto_server.py makes moto keep that promise.
    let (_moto, ledger) = ledger().await;
    let t = target();
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (ledger, t) = (ledger.clone(), t.clone());
        racers.spawn(async move { ledger.acquire_lease(&t, &holder(&format!("d{i}")), until(600)).await.unwrap() });
    }
    let mut acquired = 0;
    while let Some(lease) = racers.join_next().await {
        if lease.unwrap() == Lease::Acquired {
            acquired += 1;
        }
    }
    assert_eq!(acquired, 1, "one deployment per target at a time");
}

/// A job's first writes as one transaction: all of them on a fresh job and a free target, its
/// own retry (the answer lost) found as written, and nothing at all written when any condition
/// fails (a job claimed before, a busy target, a condemned deployment).
#[tokio::test]
async fn a_jobs_first_writes_are_one_transaction_all_or_nothing() {
    use crossdeploy_ledger::Begun;
    let (_moto, ledger) = ledger().await;
    let vouching = |id: &str, request: &str| LeaseHolder { request: Some(request.into()), ..holder(id) };
    let begin = |job: &'static str, holder: &LeaseHolder, record: &DeploymentRecord, go_on: bool| {
        let (ledger, holder, record) = (ledger.clone(), holder.clone(), record.clone());
        async move { begin_as(&ledger, true, job, "run-a", &holder, &record, go_on).await }
    };
    let a = in_progress("a", 100);
    assert_eq!(begin("a", &vouching("a", "req-a1"), &a, false).await, Begun::Written);
    assert_eq!(
        ledger.claim_job("a", "run-a", Duration::from_secs(600)).await.unwrap(),
        Claim::Claimed { since_ms: 100, retried: true },
        "the claim is there, with the deployment's start time"
    );
    assert_eq!(ledger.lease_holder(&target()).await.unwrap().and_then(|h| h.request).as_deref(), Some("req-a1"));
    assert_eq!(ledger.deployment(&a).await.unwrap().map(|r| r.status), Some(DeploymentStatus::InProgress));
    // The same job delivered twice, to another run that sends the very same request (both
    // started in the same millisecond): not its work; it writes nothing. (The soak's scenario
    // 90, seed 20261201, found both runs deploying when the lease alone told.)
    assert!(matches!(
        begin_as(&ledger, true, "a", "run-twin", &vouching("a", "req-a1"), &a, false).await,
        Begun::OneByOne(_)
    ));
    assert_eq!(ledger.job_state("a").await.unwrap().map(|j| j.owner).as_deref(), Some("run-a"));
    // Another job for the busy target: nothing written, not even its claim.
    let b = in_progress("b", 200);
    assert!(matches!(begin("b", &vouching("b", "req-b1"), &b, false).await, Begun::OneByOne(_)));
    assert_eq!(ledger.job_state("b").await.unwrap(), None, "no claim was written");
    assert_eq!(ledger.deployment(&b).await.unwrap(), None, "no record was written");
    assert_eq!(ledger.lease_holder(&target()).await.unwrap().map(|h| h.deployment_id).as_deref(), Some("a"));
    // A deployment condemned between its jobs does not go on: its next job writes nothing.
    let pending = RollbackRecord { trigger: "stage failed".into(), ..rollback_claim(RollbackStatus::Pending, "r1") };
    assert!(ledger.condemn_in_progress(&a, &pending).await.unwrap());
    assert!(matches!(begin("a-2", &vouching("a", "req-a2"), &a, true).await, Begun::OneByOne(_)));
    assert_eq!(ledger.job_state("a-2").await.unwrap(), None);
    assert_eq!(ledger.lease_holder(&target()).await.unwrap().and_then(|h| h.request).as_deref(), Some("req-a1"));
    ledger.release_lease(&target(), "a").await.unwrap();
    // A job another run claimed, on a free target: nothing written, the target stays free.
    assert!(claimed(ledger.claim_job("c", "run-other", Duration::from_secs(600)).await.unwrap()));
    let c = in_progress("c", 300);
    assert!(matches!(begin("c", &vouching("c", "req-c1"), &c, false).await, Begun::OneByOne(_)));
    assert_eq!(ledger.lease_holder(&target()).await.unwrap(), None);
    assert_eq!(ledger.deployment(&c).await.unwrap(), None);
    // A deployment going on (nobody condemned it), its next job delivered for the first time.
    let d = in_progress("d", 400);
    ledger.start_deployment(&d).await.unwrap();
    assert_eq!(begin("d-2", &vouching("d", "req-d2"), &d, true).await, Begun::Written);
    assert_eq!(ledger.lease_holder(&target()).await.unwrap().and_then(|h| h.request).as_deref(), Some("req-d2"));
    assert!(ledger.job_state("d-2").await.unwrap().is_some(), "the continuation job is claimed");
    ledger.release_lease(&target(), "d").await.unwrap();
    // A custom action's job, claimed before it was acknowledged: the lease and record only.
    assert!(claimed(ledger.claim_job("e", "run-e", Duration::from_secs(600)).await.unwrap()));
    let e = in_progress("e", 500);
    assert_eq!(begin_as(&ledger, false, "e", "run-e", &vouching("e", "req-e1"), &e, false).await, Begun::Written);
    assert_eq!(ledger.deployment(&e).await.unwrap().map(|r| r.status), Some(DeploymentStatus::InProgress));
    assert_eq!(ledger.lease_holder(&target()).await.unwrap().map(|h| h.deployment_id).as_deref(), Some("e"));
}

/// `Ledger::begin` for `job`, as `owner`, with the lease `holder` and the deployment `record`.
async fn begin_as(
    ledger: &Ledger,
    claim: bool,
    job: &str,
    owner: &str,
    holder: &LeaseHolder,
    record: &DeploymentRecord,
    go_on: bool,
) -> crossdeploy_ledger::Begun {
    use crossdeploy_ledger::{Begin, Deployment};
    let b = Begin {
        claim,
        job_id: job,
        owner,
        hold: Duration::from_secs(600),
        claimed_ms: record.started_at,
        target: &record.target,
        holder,
        lease_until: until(600),
        deployment: if go_on { Deployment::GoOn(record) } else { Deployment::Start(record) },
    };
    ledger.begin(&b).await.unwrap()
}

/// A job's last writes as one transaction: a deployment nobody condemned ends, its lease is
/// given back and its answer recorded, all at once; a condemned one, or one whose claim passed
/// to another run, writes nothing (the one-by-one path sorts it out).
#[tokio::test]
async fn a_jobs_last_writes_are_one_transaction_all_or_nothing() {
    use crossdeploy_ledger::End;
    let (_moto, ledger) = ledger().await;
    let end = |record: &DeploymentRecord, job: &'static str, owner: &'static str| {
        let (ledger, record) = (ledger.clone(), record.clone());
        async move {
            let e = End { record: &record, job_id: job, owner, label: "Succeeded", data: "{\"answer\":1}" };
            ledger.end(&e).await.unwrap()
        }
    };
    let done = |mut r: DeploymentRecord| {
        r.status = DeploymentStatus::Succeeded;
        r.finished_at = Some(500);
        r
    };
    // A: the whole end, at once.
    let a = in_progress("a", 100);
    ledger.start_deployment(&a).await.unwrap();
    assert!(claimed(ledger.claim_job("a", "run-a", Duration::from_secs(600)).await.unwrap()));
    assert_eq!(ledger.acquire_lease(&target(), &holder("a"), until(600)).await.unwrap(), Lease::Acquired);
    assert!(end(&done(a.clone()), "a", "run-a").await);
    assert_eq!(ledger.deployment(&a).await.unwrap().map(|r| r.status), Some(DeploymentStatus::Succeeded));
    // The end writes what changes; what its start wrote (the index keys) stays.
    let in_account = ledger.deployments_in_account("222222222222", "us-east-1", 0).await.unwrap();
    assert_eq!(
        in_account.iter().map(|r| (r.deployment_id.as_str(), r.status)).collect::<Vec<_>>(),
        [("a", DeploymentStatus::Succeeded)]
    );
    assert_eq!(ledger.lease_holder(&target()).await.unwrap(), None, "the lease was given back");
    let answer = ledger.job_state("a").await.unwrap().and_then(|s| s.answer).expect("the answer is recorded");
    assert_eq!((answer.label.as_str(), answer.data.as_str()), ("Succeeded", "{\"answer\":1}"));
    // Sent again (its answer lost): nothing more is written, and the one-by-one path finds it all done.
    assert!(!end(&done(a.clone()), "a", "run-a").await);
    assert_eq!(
        ledger.record_answer("a", "run-a", "Succeeded", "{\"answer\":1}").await.unwrap(),
        Decided::Ours,
        "the same answer again is fine"
    );
    // B: condemned while it ran: nothing is written; the deployment keeps its lease for its rollback.
    let b = in_progress("b", 200);
    ledger.start_deployment(&b).await.unwrap();
    assert!(claimed(ledger.claim_job("b", "run-b", Duration::from_secs(600)).await.unwrap()));
    assert_eq!(ledger.acquire_lease(&target(), &holder("b"), until(600)).await.unwrap(), Lease::Acquired);
    let pending = RollbackRecord { trigger: "stage failed".into(), ..rollback_claim(RollbackStatus::Pending, "r1") };
    assert!(ledger.condemn_in_progress(&b, &pending).await.unwrap());
    assert!(!end(&done(b.clone()), "b", "run-b").await);
    assert_eq!(ledger.deployment(&b).await.unwrap().map(|r| r.status), Some(DeploymentStatus::InProgress));
    assert_eq!(ledger.lease_holder(&target()).await.unwrap().map(|h| h.deployment_id).as_deref(), Some("b"));
    assert_eq!(ledger.job_state("b").await.unwrap().and_then(|s| s.answer), None);
    // C: a run whose claim passed to another run writes nothing either (its deployment holds
    // the lease: the claim alone refuses it).
    let c = in_progress("c", 300);
    assert!(claimed(ledger.claim_job("c", "run-c", Duration::from_secs(600)).await.unwrap()));
    let c_target = TargetKey::lambda("222222222222", "us-east-1", "orders-c", "live");
    let c = DeploymentRecord { target: c_target.clone(), ..c };
    ledger.start_deployment(&c).await.unwrap();
    assert_eq!(ledger.acquire_lease(&c_target, &holder("c"), until(600)).await.unwrap(), Lease::Acquired);
    assert!(!end(&done(c.clone()), "c", "run-other").await);
    assert_eq!(ledger.deployment(&c).await.unwrap().map(|r| r.status), Some(DeploymentStatus::InProgress));
    assert_eq!(ledger.lease_holder(&c_target).await.unwrap().map(|h| h.deployment_id).as_deref(), Some("c"));
    // And the same end from the claim's holder is written whole.
    assert!(end(&done(c.clone()), "c", "run-c").await);
    assert_eq!(ledger.lease_holder(&c_target).await.unwrap(), None);
}
