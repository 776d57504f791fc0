//! Every failure ends in a known state, against the local AWS: a retry of a run (Lambda's, with
//! the same request id) finds its own earlier work; an answer recorded is the one sent; a lease
//! ends with its job; a deployment a failed stage condemns while it runs is rolled back when it
//! ends; a deployment that failed half-shifted is finished by deploy-rollback from what the
//! ledger says; the CodePipeline emulator times jobs out as CodePipeline does.

use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{
    now_millis, now_secs, DeploymentRecord, DeploymentStatus, Lease, LeaseHolder, RollbackStatus, TargetKey,
};
use crossdeploy_local::accounts::{self, EXTERNAL_ID, REGION, SHARED_ACCOUNT, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{aws_event, build_artifact, event_time, lambda_package};
use crossdeploy_local::{Answer, EmulatorSettings, InProcessUpdater, LocalAws, NewJob, Status};
use crossdeploy_protocol::{Outcome, PipelineContext, Serving, UpdaterRequest};
use deploy_rollback::Handled;
use pipeline_job_worker::{handle_invoke_event, Invoke, InvokeError, Worker};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const ALIAS: &str = "live";

fn params(function: &str) -> String {
    json!({
        "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": function,
        "Alias": ALIAS, "ArtifactPath": "lambda.zip",
    })
    .to_string()
}

fn target(function: &str) -> TargetKey {
    TargetKey::lambda(TARGET_ACCOUNT, REGION, function, ALIAS)
}

async fn spawn(functions: &[&str]) -> LocalAws {
    let local = LocalAws::start().await.expect("the local AWS starts");
    for f in functions {
        accounts::create_function(&local.target, f, ALIAS, lambda_package("v1")).await.unwrap();
    }
    local
}

/// An Invoke job of pipeline `orders`, stage `Deploy-dev`, in `execution` (or a new one).
async fn job(local: &LocalAws, function: &str, marker: &str, execution: Option<&str>) -> Value {
    let artifact = local
        .upload(&format!("orders/BuildOutput/{marker}.zip"), build_artifact("lambda.zip", &lambda_package(marker)))
        .await
        .unwrap();
    local.emulator.start_invoke_job(NewJob {
        pipeline_name: "orders".into(),
        stage: "Deploy-dev".into(),
        action: format!("Deploy-{function}"),
        user_parameters: params(function),
        artifact,
        execution_id: execution.map(str::to_owned),
    })
}

fn job_id(event: &Value) -> String {
    event["CodePipeline.job"]["id"].as_str().unwrap().to_owned()
}

/// Runs `work` on a runtime of its own, and kills that runtime (every task of it, as a Lambda
/// timeout or an out-of-memory kill ends a process) once `killed` says so. The test's own
/// runtime (and the emulator on it) keeps running meanwhile.
async fn run_then_kill<F>(work: impl FnOnce(tokio::sync::oneshot::Sender<()>) -> F + Send + 'static)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        rt.spawn(work(tx));
        let _ = rt.block_on(rx);
        rt.shutdown_background();
    })
    .await
    .unwrap();
}

/// The updaters in process, each invocation signalling `done` once it has run: what a worker
/// process sees before it is killed.
struct ThenSignal(InProcessUpdater, std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl Invoke for ThenSignal {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        let outcome = self.0.invoke(function, request).await;
        if let Some(tx) = self.1.lock().unwrap().take() {
            let _ = tx.send(());
        }
        tokio::time::sleep(Duration::from_secs(3600)).await; // killed here
        outcome
    }
}

/// The worker of a run that is killed: its own clients (a killed process's connections die with it).
async fn doomed_worker(
    local_endpoint: &str,
    table: &str,
    emulator: &str,
    tx: tokio::sync::oneshot::Sender<()>,
) -> Arc<Worker<ThenSignal>> {
    let shared = accounts::account_config(local_endpoint, SHARED_ACCOUNT).await.unwrap();
    let updaters = InProcessUpdater::with_allow_list(&shared, &LocalAws::allowed_roles(), EXTERNAL_ID, table);
    Arc::new(Worker {
        codepipeline: aws_sdk_codepipeline::Client::from_conf(
            aws_sdk_codepipeline::config::Builder::from(&shared).endpoint_url(emulator).build(),
        ),
        invoker: ThenSignal(updaters, std::sync::Mutex::new(Some(tx))),
        updaters: InProcessUpdater::updaters(),
        ledger: crossdeploy_ledger::Ledger::new(aws_sdk_dynamodb::Client::new(&shared), table),
        settings: pipeline_job_worker::Settings::new(REGION),
    })
}

#[tokio::test]
async fn a_run_killed_after_the_updater_acted_is_answered_by_lambdas_retry_with_the_same_request_id() {
    let local = spawn(&["orders-api"]).await;
    let event = job(&local, "orders-api", "v2", None).await;
    let (endpoint, table, emulator) =
        (local.moto.endpoint.clone(), local.ledger_table.clone(), local.emulator.endpoint.clone());
    let first = event.clone();
    run_then_kill(move |killed| async move {
        let worker = doomed_worker(&endpoint, &table, &emulator, killed).await;
        let _ = handle_invoke_event(first, worker, Deadline::after(Duration::from_secs(120)), "request-1").await;
    })
    .await;
    assert!(local.answers_for(&event).is_empty(), "the killed run answered nothing");
    assert_eq!(accounts::function_state(&local.target, "orders-api", ALIAS).await.unwrap().alias_version, "2");

    // Lambda retries the invocation: the same event, the same request id.
    let handled =
        handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(120)), "request-1")
            .await
            .unwrap();

    assert_eq!(handled.map(|h| h.answer).as_deref(), Some("Succeeded"));
    let answers = local.answers_for(&event);
    let [Answer::Success { output_variables, continuation_token: None, .. }] = &answers[..] else {
        panic!("{answers:?}")
    };
    assert_eq!(
        (output_variables["FunctionVersion"].as_str(), output_variables["PreviousVersion"].as_str()),
        ("2", "1")
    );
    let records = local.ledger().deployments(&target("orders-api")).await.unwrap();
    assert_eq!(records.len(), 1, "one deployment, however many runs: {records:?}");
    assert_eq!(records[0].status, DeploymentStatus::Succeeded);
    // Another delivery of the event (another request id) finds the job answered.
    let again =
        handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(60)), "request-2")
            .await
            .unwrap();
    assert!(again.is_some_and(|h| h.already_answered));
    assert_eq!(local.answers_for(&event).len(), 1);
}

/// An updater that must not be called.
struct Untouchable;

impl Invoke for Untouchable {
    async fn invoke(&self, _: &str, _: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        panic!("the job's answer was decided: nothing may be deployed again")
    }
}

#[tokio::test]
async fn an_answer_recorded_before_a_crash_is_the_one_the_retry_sends() {
    let local = spawn(&["orders-api"]).await;
    let event = job(&local, "orders-api", "v2", None).await;
    let id = job_id(&event);
    // The run recorded its answer, then died before sending it.
    let ledger = local.ledger();
    ledger.claim_job(&id, "request-1", Duration::from_secs(300)).await.unwrap();
    let recorded = crossdeploy_pipeline_job::JobAnswer::Failure {
        failure_type: crossdeploy_protocol::FailureType::JobFailed,
        message: "the answer decided before the crash".into(),
        external_execution_id: Some(id.clone()),
    };
    ledger.record_answer(&id, "request-1", recorded.label(), &serde_json::to_string(&recorded).unwrap()).await.unwrap();

    let handled = handle_invoke_event(
        event.clone(),
        Arc::new(local.worker_with(Untouchable)),
        Deadline::after(Duration::from_secs(60)),
        "request-1",
    )
    .await
    .unwrap();

    assert_eq!(handled.map(|h| h.answer).as_deref(), Some("JobFailed"));
    let answers = local.answers_for(&event);
    let [Answer::Failure { message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert_eq!(message, "the answer decided before the crash");
    assert!(ledger.job_state(&id).await.unwrap().and_then(|s| s.answer).is_some_and(|a| a.label == "JobFailed"));
}

fn holder(id: &str) -> LeaseHolder {
    LeaseHolder {
        deployment_id: id.into(),
        pipeline: Some("payments".into()),
        execution_id: Some(format!("exec-{id}")),
        job_id: Some(id.into()),
        since: now_secs(),
        until: 0,
        request: None,
    }
}

#[tokio::test]
async fn a_lease_whose_holder_was_answered_for_good_is_free_and_one_answered_with_a_continuation_is_not() {
    let local = spawn(&["orders-api"]).await;
    let ledger = local.ledger();
    // A run answered its job (JobFailed) and could not release its lease: it holds for an hour.
    let t = target("orders-api");
    assert_eq!(ledger.acquire_lease(&t, &holder("old-job"), now_secs() + 3600).await.unwrap(), Lease::Acquired);
    ledger.claim_job("old-job", "run-old", Duration::from_secs(60)).await.unwrap();
    ledger.record_answer("old-job", "run-old", "JobFailed", "{}").await.unwrap();

    let event = job(&local, "orders-api", "v2", None).await;
    handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(120)), "run-1")
        .await
        .unwrap();

    let answers = local.answers_for(&event);
    assert!(
        matches!(&answers[..], [Answer::Success { continuation_token: None, .. }]),
        "deployed at once: {answers:?}"
    );

    // A holder whose job was answered with a continuation is still at work: the next one waits.
    assert_eq!(ledger.acquire_lease(&t, &holder("busy-job"), now_secs() + 3600).await.unwrap(), Lease::Acquired);
    ledger.claim_job("busy-job", "run-busy", Duration::from_secs(60)).await.unwrap();
    ledger.record_answer("busy-job", "run-busy", "InProgress", "{}").await.unwrap();
    let event = job(&local, "orders-api", "v3", None).await;
    handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(120)), "run-2")
        .await
        .unwrap();
    let answers = local.answers_for(&event);
    let [Answer::Success { continuation_token: Some(_), summary, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert!(summary.as_deref().unwrap_or_default().contains("waiting for pipeline payments"), "{summary:?}");
}

/// An updater that takes its time: the worker is killed while it works.
struct SignalThenWork(InProcessUpdater, std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl Invoke for SignalThenWork {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        if let Some(tx) = self.1.lock().unwrap().take() {
            let _ = tx.send(());
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        self.0.invoke(function, request).await
    }
}

#[tokio::test]
async fn a_run_that_dies_mid_deployment_frees_its_target_a_minute_after_its_deadline_not_an_hour() {
    let local = spawn(&["orders-api"]).await;
    let event = job(&local, "orders-api", "v2", None).await;
    let (endpoint, table, emulator) =
        (local.moto.endpoint.clone(), local.ledger_table.clone(), local.emulator.endpoint.clone());
    let deadline_secs = now_secs() + 300;
    run_then_kill(move |killed| async move {
        let shared = accounts::account_config(&endpoint, SHARED_ACCOUNT).await.unwrap();
        let updaters = InProcessUpdater::with_allow_list(&shared, &LocalAws::allowed_roles(), EXTERNAL_ID, &table);
        let worker = Arc::new(Worker {
            codepipeline: aws_sdk_codepipeline::Client::from_conf(
                aws_sdk_codepipeline::config::Builder::from(&shared).endpoint_url(&emulator).build(),
            ),
            invoker: SignalThenWork(updaters, std::sync::Mutex::new(Some(killed))),
            updaters: InProcessUpdater::updaters(),
            ledger: crossdeploy_ledger::Ledger::new(aws_sdk_dynamodb::Client::new(&shared), &table),
            settings: pipeline_job_worker::Settings::new(REGION),
        });
        let _ = handle_invoke_event(event, worker, Deadline::after(Duration::from_secs(300)), "request-1").await;
    })
    .await;

    let lease = local.ledger().lease_holder(&target("orders-api")).await.unwrap().expect("the dead run's lease");
    assert!(
        lease.until <= deadline_secs + 60 + 2,
        "the lease ends a minute after the run's deadline ({deadline_secs}), not an hour later: {}",
        lease.until
    );
    let record = &local.ledger().deployments(&target("orders-api")).await.unwrap()[0];
    assert_eq!(record.status, DeploymentStatus::InProgress, "the dead run's deployment, as the ledger knows it");
}

/// The updaters in process, each deployment starting only after `delay`.
struct Slow(InProcessUpdater, Duration);

impl Invoke for Slow {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        tokio::time::sleep(self.1).await;
        self.0.invoke(function, request).await
    }
}

fn action_failed(execution: &str, action: &str) -> Value {
    aws_event(
        "codepipeline-action-failed.json",
        &[
            ("/id", json!(format!("event-{action}"))),
            ("/time", json!(event_time(0))),
            ("/detail/pipeline", json!("orders")),
            ("/detail/execution-id", json!(execution)),
            ("/detail/stage", json!("Deploy-dev")),
            ("/detail/action", json!(action)),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn a_stage_that_fails_while_a_deployment_runs_has_it_rolled_back_when_it_ends() {
    let local = spawn(&["orders-api", "orders-worker"]).await;
    let execution = "exec-parallel";
    // Action A deployed; action B is still deploying when action C of the stage fails.
    let a = job(&local, "orders-api", "a2", Some(execution)).await;
    handle_invoke_event(a.clone(), local.worker(), Deadline::after(Duration::from_secs(120)), "run-a").await.unwrap();
    assert_eq!(accounts::function_state(&local.target, "orders-api", ALIAS).await.unwrap().alias_version, "2");
    let b = job(&local, "orders-worker", "b2", Some(execution)).await;
    let slow = Arc::new(local.worker_with(Slow(
        InProcessUpdater::with_allow_list(&local.shared, &LocalAws::allowed_roles(), EXTERNAL_ID, &local.ledger_table),
        Duration::from_secs(4),
    )));
    let running =
        tokio::spawn(handle_invoke_event(b.clone(), slow, Deadline::after(Duration::from_secs(120)), "run-b"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let report = deploy_rollback::handle(
        action_failed(execution, "Tests"),
        &local.rollback(),
        Deadline::after(Duration::from_secs(60)),
        "rollback-run",
    )
    .await
    .unwrap();

    let result_of = |f: &str| report.rollbacks.iter().find(|r| r.target == target(f).to_string()).map(|r| r.result);
    assert_eq!(result_of("orders-api"), Some(Handled::Restored), "{report:?}");
    assert_eq!(result_of("orders-worker"), Some(Handled::Pending), "{report:?}");
    running.await.unwrap().unwrap();
    // B finished deploying, found itself condemned, and put back what stood before.
    let answers = local.answers_for(&b);
    let [Answer::Failure { failure_type, message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "JobFailed");
    assert!(
        message.contains("action Tests failed in stage Deploy-dev") && message.contains("rolled back"),
        "{message}"
    );
    for f in ["orders-api", "orders-worker"] {
        let state = accounts::function_state(&local.target, f, ALIAS).await.unwrap();
        assert_eq!((state.alias_version.as_str(), state.alias_routing.len()), ("1", 0), "{f} is back on version 1");
    }
    let record = &local.ledger().deployments(&target("orders-worker")).await.unwrap()[0];
    assert_eq!(record.rollback.as_ref().map(|r| r.status), Some(RollbackStatus::Restored), "{record:?}");
}

/// `orders-api` as a shift left half-way leaves it: a new version published, and the alias on
/// version 1 with 10% of its traffic on it. Returns the new version.
/// Publishes version 2 and gives it 10% of the alias's traffic, with `description` on the alias
/// (an updater's mark, or none).
async fn half_shift(local: &LocalAws, description: Option<&str>) -> String {
    let lambda = aws_sdk_lambda::Client::new(&local.target);
    lambda
        .update_function_code()
        .function_name("orders-api")
        .zip_file(aws_sdk_lambda::primitives::Blob::new(lambda_package("v2")))
        .send()
        .await
        .unwrap();
    let v2 = lambda.publish_version().function_name("orders-api").send().await.unwrap().version.unwrap();
    let routing =
        aws_sdk_lambda::types::AliasRoutingConfiguration::builder().additional_version_weights(&v2, 0.1).build();
    lambda
        .update_alias()
        .function_name("orders-api")
        .name(ALIAS)
        .function_version("1")
        .routing_config(routing)
        .set_description(description.map(str::to_owned))
        .send()
        .await
        .unwrap();
    v2
}

#[tokio::test]
async fn a_deployment_that_failed_half_shifted_is_finished_by_deploy_rollback_from_what_the_ledger_says() {
    let local = spawn(&["orders-api"]).await;
    // Version 2 took 10% of the alias's traffic, then the deployment failed and its restore
    // failed too: the ledger says so.
    let v2 = half_shift(&local, None).await;
    let record = DeploymentRecord {
        deployment_id: "half".into(),
        target: target("orders-api"),
        role_arn: accounts::target_role(TARGET_ACCOUNT),
        pipeline: PipelineContext {
            job_id: "half".into(),
            pipeline_name: Some("orders".into()),
            execution_id: Some("exec-half".into()),
            stage: Some("Deploy-dev".into()),
            action: Some("Deploy".into()),
        },
        started_at: now_millis() - 10_000,
        finished_at: Some(now_millis() - 1_000),
        status: DeploymentStatus::Failed,
        previous: Some("1".into()),
        deployed: Some(v2.clone()),
        serving: Some(Serving::Shifting),
        outputs: Default::default(),
        message: Some("alarm fired; putting the alias back failed".into()),
        alarm_names: vec![],
        rollback: None,
    };
    local.ledger().start_deployment(&record).await.unwrap();

    let report = deploy_rollback::handle(
        action_failed("exec-half", "Deploy"),
        &local.rollback(),
        Deadline::after(Duration::from_secs(60)),
        "r1",
    )
    .await
    .unwrap();

    assert_eq!(report.rollbacks.iter().map(|r| r.result).collect::<Vec<_>>(), vec![Handled::Restored], "{report:?}");
    let state = accounts::function_state(&local.target, "orders-api", ALIAS).await.unwrap();
    assert_eq!((state.alias_version.as_str(), state.alias_routing.len()), ("1", 0));
}

/// A deployment whose run died before anything of the target reached the ledger: InProgress,
/// its lease lapsed, no previous, deployed or serving recorded.
fn unheard(deployment_id: &str, execution_id: &str) -> DeploymentRecord {
    DeploymentRecord {
        deployment_id: deployment_id.into(),
        target: target("orders-api"),
        role_arn: accounts::target_role(TARGET_ACCOUNT),
        pipeline: PipelineContext {
            job_id: deployment_id.into(),
            pipeline_name: Some("orders".into()),
            execution_id: Some(execution_id.into()),
            stage: Some("Deploy-dev".into()),
            action: Some("Deploy".into()),
        },
        started_at: now_millis() - 10_000,
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

#[tokio::test]
async fn a_deployment_that_died_unheard_is_put_back_by_the_mark_it_left_on_the_alias_and_only_by_it() {
    let local = spawn(&["orders-api"]).await;
    // The run died after its updater shifted 10% to version 2 and before the ledger heard: only
    // the alias's description (the updater's mark) says who moved it and what stood before.
    let mark = "crossdeploy: pipeline orders execution exec-dead; deployment dead; previous version 1";
    half_shift(&local, Some(mark)).await;
    local.ledger().start_deployment(&unheard("dead", "exec-dead")).await.unwrap();
    // Another run that died unheard, in another execution: the alias shows no move of its own.
    local.ledger().start_deployment(&unheard("other", "exec-other")).await.unwrap();

    let run = |execution: &'static str, id: &'static str| {
        let local = &local;
        async move {
            deploy_rollback::handle(
                action_failed(execution, "Deploy"),
                &local.rollback(),
                Deadline::after(Duration::from_secs(60)),
                id,
            )
            .await
            .unwrap()
        }
    };
    let state = || accounts::function_state(&local.target, "orders-api", ALIAS);

    let other = run("exec-other", "r-other").await;
    assert_eq!(other.rollbacks.len(), 1, "{other:?}");
    assert!(other.rollbacks[0].message.contains("shows no move by deployment other"), "{other:?}");
    let s = state().await.unwrap();
    assert_eq!((s.alias_version.as_str(), s.alias_routing.len()), ("1", 1), "another's shift is not touched");

    let dead = run("exec-dead", "r-dead").await;
    assert_eq!(dead.rollbacks.iter().map(|r| r.result).collect::<Vec<_>>(), vec![Handled::Restored], "{dead:?}");
    let s = state().await.unwrap();
    assert_eq!((s.alias_version.as_str(), s.alias_routing.len()), ("1", 0), "back on version 1, no routing");
    let records = local.ledger().deployments(&target("orders-api")).await.unwrap();
    let recorded = records.into_iter().find(|r| r.deployment_id == "dead").expect("the deployment is recorded");
    let rollback = recorded.rollback.expect("the rollback is in the ledger");
    assert_eq!((rollback.status, rollback.restored.as_deref()), (RollbackStatus::Restored, Some("1")));
}

#[tokio::test]
async fn the_emulator_times_jobs_out_as_codepipeline_does_and_refuses_a_late_answer() {
    let mut local = spawn(&["orders-api"]).await;
    local.emulator = crossdeploy_local::Emulator::start_with(EmulatorSettings {
        job_timeout: Duration::from_secs(1),
        ack_timeout: Duration::from_secs(1),
        ..EmulatorSettings::default()
    })
    .await
    .unwrap();
    let event = job(&local, "orders-api", "v2", None).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(local.emulator.status(&job_id(&event)), Some(Status::TimedOut));

    // The worker's answer comes too late: CodePipeline refuses it, and the worker reports it
    // as answered (by the timeout) without answering again.
    let handled =
        handle_invoke_event(event.clone(), local.worker(), Deadline::after(Duration::from_secs(120)), "run-1")
            .await
            .unwrap()
            .unwrap();
    assert!(handled.already_answered);
    assert!(local.answers_for(&event).is_empty());
    assert_eq!(local.emulator.late_answers(), vec![job_id(&event)]);

    // A job handed out and never acknowledged is not handed out again: it times out.
    let codepipeline = local.codepipeline();
    crossdeploy_local::templates::create_custom_action_types(&codepipeline, REGION).await.unwrap();
    let custom = local.emulator.start_custom_job(crossdeploy_local::NewCustomJob {
        provider: "CrossdeployLambda".into(),
        pipeline_name: "orders".into(),
        stage: "Deploy-dev".into(),
        action: "Deploy".into(),
        configuration: Default::default(),
        artifact: crossdeploy_protocol::ArtifactLocation { bucket: local.bucket.clone(), key: "k".into() },
        execution_id: None,
    });
    let polled = crossdeploy_pipeline_job::poll_for_jobs(&codepipeline, "CrossdeployLambda", 1).await.unwrap();
    assert_eq!(polled.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(local.emulator.status(&custom), Some(Status::TimedOut));
    assert!(crossdeploy_pipeline_job::poll_for_jobs(&codepipeline, "CrossdeployLambda", 1).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_retried_run_of_a_deployment_rolled_back_meanwhile_deploys_nothing_again() {
    let local = spawn(&["orders-api"]).await;
    let event = job(&local, "orders-api", "v2", None).await;
    let (endpoint, table, emulator) =
        (local.moto.endpoint.clone(), local.ledger_table.clone(), local.emulator.endpoint.clone());
    let first = event.clone();
    run_then_kill(move |killed| async move {
        let worker = doomed_worker(&endpoint, &table, &emulator, killed).await;
        let _ = handle_invoke_event(first, worker, Deadline::after(Duration::from_secs(120)), "request-1").await;
    })
    .await;
    // Judged dead, the deployment was rolled back before Lambda retried the run: the alias is
    // back on version 1, and the ledger says so on the deployment.
    let ledger = local.ledger();
    let record = ledger.deployments(&target("orders-api")).await.unwrap().remove(0);
    ledger.release_lease(&target("orders-api"), &record.deployment_id).await.unwrap();
    let claim = crossdeploy_ledger::RollbackRecord {
        status: RollbackStatus::InProgress,
        trigger: "action Tests failed in stage Deploy-dev".into(),
        event_id: "e1".into(),
        by: "rollback-run".into(),
        at: now_millis(),
        restored: None,
        message: None,
    };
    ledger.claim_rollback(&record, &claim, Duration::from_secs(60)).await.unwrap();
    let restored =
        crossdeploy_ledger::RollbackRecord { status: RollbackStatus::Restored, restored: Some("1".into()), ..claim };
    ledger.finish_rollback(&record, &restored).await.unwrap();
    aws_sdk_lambda::Client::new(&local.target)
        .update_alias()
        .function_name("orders-api")
        .name(ALIAS)
        .function_version("1")
        .send()
        .await
        .unwrap();

    // Lambda's retry: the same event, the same request id. It must not deploy again, and it
    // concludes (puts back what is left) only once the killed attempt's updater invocation is
    // out: up to one slice.
    let mut retry = local.worker_with(Untouchable);
    retry.settings.updater_slice = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let handled =
        handle_invoke_event(event.clone(), Arc::new(retry), Deadline::after(Duration::from_secs(300)), "request-1")
            .await
            .unwrap()
            .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3 + 5), "answered after {:?}", started.elapsed());

    assert_eq!(handled.answer, "JobFailed");
    let answers = local.answers_for(&event);
    let [Answer::Failure { message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert!(message.contains("was condemned") && message.contains("Restored"), "{message}");
    assert_eq!(accounts::function_state(&local.target, "orders-api", ALIAS).await.unwrap().alias_version, "1");
}

/// An updater that fails half-way (it left the alias shifting) after a moment, and rolls back
/// for real.
struct FailsHalfShifted(InProcessUpdater);

impl Invoke for FailsHalfShifted {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        match request {
            UpdaterRequest::Deploy(_) => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(Outcome::Failed {
                    failure_type: crossdeploy_protocol::FailureType::JobFailed,
                    message: "putting the alias back failed".into(),
                    stands: Some(crossdeploy_protocol::Stands {
                        previous: "1".into(),
                        deployed: "2".into(),
                        serving: Serving::Shifting,
                        detail: "alias live points at version 1 with 10% on version 2".into(),
                        service_deployment_arn: None,
                    }),
                })
            }
            UpdaterRequest::Rollback(_) => self.0.invoke(function, request).await,
        }
    }
}

#[tokio::test]
async fn a_deployment_condemned_while_it_runs_that_then_fails_half_way_is_put_back_by_its_worker() {
    let local = spawn(&["orders-api"]).await;
    // The target as the failing deployment leaves it: version 1 with 10% on version 2.
    assert_eq!(half_shift(&local, None).await, "2");
    let execution = "exec-half";
    let event = job(&local, "orders-api", "v2", Some(execution)).await;
    let worker = Arc::new(local.worker_with(FailsHalfShifted(InProcessUpdater::with_allow_list(
        &local.shared,
        &LocalAws::allowed_roles(),
        EXTERNAL_ID,
        &local.ledger_table,
    ))));
    let running =
        tokio::spawn(handle_invoke_event(event.clone(), worker, Deadline::after(Duration::from_secs(120)), "run-1"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let report = deploy_rollback::handle(
        action_failed(execution, "Tests"),
        &local.rollback(),
        Deadline::after(Duration::from_secs(60)),
        "r1",
    )
    .await
    .unwrap();
    assert_eq!(report.rollbacks.iter().map(|r| r.result).collect::<Vec<_>>(), vec![Handled::Pending], "{report:?}");
    running.await.unwrap().unwrap();

    let answers = local.answers_for(&event);
    let [Answer::Failure { message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert!(message.contains("was condemned") && message.contains("rolled back"), "{message}");
    let state = accounts::function_state(&local.target, "orders-api", ALIAS).await.unwrap();
    assert_eq!((state.alias_version.as_str(), state.alias_routing.len()), ("1", 0), "put back, no routing");
    assert!(local.ledger().lease_holder(&target("orders-api")).await.unwrap().is_none(), "the lease was released");
}

/// An updater that moves the alias (before the test starts: the target as it leaves it) and
/// then dies on every invocation without a word of what stands; it rolls back for real.
struct DiesUnheard(InProcessUpdater);

impl Invoke for DiesUnheard {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        match request {
            UpdaterRequest::Deploy(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Err(InvokeError::Function {
                    function: function.to_owned(),
                    error_type: "Runtime.ExitError".into(),
                    message: "RequestId: x Error: Runtime exited with error: signal: killed".into(),
                })
            }
            UpdaterRequest::Rollback(_) => self.0.invoke(function, request).await,
        }
    }
}

/// A job of `execution` whose updater shifted 10% to version 2 with its mark on the alias (the
/// target as it leaves it), and a worker whose every invocation of it then dies unheard.
async fn shifted_then_unheard(execution: &str) -> (LocalAws, Value, Arc<Worker<DiesUnheard>>) {
    let local = spawn(&["orders-api"]).await;
    let event = job(&local, "orders-api", "v2", Some(execution)).await;
    let mark = format!(
        "crossdeploy: pipeline orders execution {execution}; deployment {}; previous version 1",
        job_id(&event)
    );
    assert_eq!(half_shift(&local, Some(&mark)).await, "2");
    let updaters =
        InProcessUpdater::with_allow_list(&local.shared, &LocalAws::allowed_roles(), EXTERNAL_ID, &local.ledger_table);
    let worker = Arc::new(local.worker_with(DiesUnheard(updaters)));
    (local, event, worker)
}

#[tokio::test]
async fn a_condemned_deployment_whose_updater_never_said_what_stands_is_put_back_by_its_mark() {
    let execution = "exec-unheard";
    let (local, event, worker) = shifted_then_unheard(execution).await;
    let running =
        tokio::spawn(handle_invoke_event(event.clone(), worker, Deadline::after(Duration::from_secs(120)), "run-1"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = deploy_rollback::handle(
        action_failed(execution, "Tests"),
        &local.rollback(),
        Deadline::after(Duration::from_secs(60)),
        "r1",
    )
    .await
    .unwrap();
    assert_eq!(report.rollbacks.iter().map(|r| r.result).collect::<Vec<_>>(), vec![Handled::Pending], "{report:?}");
    running.await.unwrap().unwrap();

    let answers = local.answers_for(&event);
    let [Answer::Failure { message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert!(message.contains("was condemned") && message.contains("restored to version 1"), "{message}");
    let state = accounts::function_state(&local.target, "orders-api", ALIAS).await.unwrap();
    assert_eq!((state.alias_version.as_str(), state.alias_routing.len()), ("1", 0), "put back by its mark");
    assert!(local.ledger().lease_holder(&target("orders-api")).await.unwrap().is_none(), "the lease was released");
}

#[tokio::test]
async fn a_deployment_whose_updater_died_unheard_every_time_is_put_back_by_its_mark_when_its_stage_fails() {
    // The soak's finding: an updater killed three times in a row, the job failed, and the ledger
    // said the deployment "changed nothing", so deploy-rollback left the target half deployed.
    let execution = "exec-silent";
    let (local, event, worker) = shifted_then_unheard(execution).await;
    handle_invoke_event(event.clone(), worker, Deadline::after(Duration::from_secs(120)), "run-1").await.unwrap();
    let answers = local.answers_for(&event);
    let [Answer::Failure { message, .. }] = &answers[..] else { panic!("{answers:?}") };
    assert!(message.contains("gave no outcome 3 times") && message.contains("may have been left changed"), "{message}");
    let record = local.ledger().deployments(&target("orders-api")).await.unwrap().remove(0);
    assert_eq!(record.serving, Some(crossdeploy_protocol::Serving::Unknown), "{record:?}");

    // CodePipeline's FAILED event for the action reaches deploy-rollback: put back by the mark.
    let report = deploy_rollback::handle(
        action_failed(execution, "Deploy-orders-api"),
        &local.rollback(),
        Deadline::after(Duration::from_secs(60)),
        "r1",
    )
    .await
    .unwrap();
    assert_eq!(report.rollbacks.iter().map(|r| r.result).collect::<Vec<_>>(), vec![Handled::Restored], "{report:?}");
    let state = accounts::function_state(&local.target, "orders-api", ALIAS).await.unwrap();
    assert_eq!((state.alias_version.as_str(), state.alias_routing.len()), ("1", 0), "put back by its mark");
}
