//! crossdeploy as CodePipeline custom actions: PollForJobs, AcknowledgeJob, exactly one answer per
//! job, one deployment per target at a time, continuation through the ledger.

use crossdeploy_aws::Deadline;
use crossdeploy_ledger::{DeploymentStatus, Lease, LeaseHolder, TargetKey};
use crossdeploy_local::accounts::{self, OTHER_ACCOUNT, REGION, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{build_artifact, lambda_package, zip_of};
use crossdeploy_local::{ecs, templates, Answer, InProcessUpdater, LocalAws, NewCustomJob, Status};
use crossdeploy_pipeline_job::actions::{self, ECS_PROVIDER, LAMBDA_PROVIDER};
use crossdeploy_protocol::{ArtifactLocation, Outcome, UpdaterRequest};
use pipeline_job_worker::{handle_event, handle_invoke_event, handle_job, Invoke, InvokeError, Worker};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";

/// The local AWS with the action types of template.yaml, and `orders-api` in 222222222222.
async fn spawn_local() -> LocalAws {
    let local = LocalAws::start().await.expect("the local AWS starts");
    let mut created = templates::create_custom_action_types(&local.codepipeline(), REGION).await.unwrap();
    created.sort();
    assert_eq!(created, vec![ECS_PROVIDER, LAMBDA_PROVIDER]);
    accounts::create_function(&local.target, FUNCTION, ALIAS, lambda_package("v1")).await.unwrap();
    local
}

fn schedule() -> Value {
    json!({"version": "0", "id": "s1", "detail-type": "Scheduled Event", "source": "aws.events", "account": "111111111111", "region": REGION, "detail": {}})
}

fn started(provider: &str) -> Value {
    json!({
        "version": "0", "id": "e1", "detail-type": "CodePipeline Action Execution State Change", "source": "aws.codepipeline",
        "account": "111111111111", "region": REGION,
        "detail": {"pipeline": "orders", "execution-id": "x", "stage": "Deploy-dev", "action": "Deploy", "state": "STARTED",
                   "type": {"owner": "Custom", "category": "Deploy", "provider": provider, "version": "1"}}
    })
}

fn lambda_config(extra: &[(&str, &str)], without: &[&str]) -> BTreeMap<String, String> {
    let mut c: BTreeMap<String, String> = [
        ("TargetRoleArn", accounts::target_role(TARGET_ACCOUNT)),
        ("FunctionName", FUNCTION.to_owned()),
        ("Alias", ALIAS.to_owned()),
        ("ArtifactPath", "lambda.zip".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        c.insert((*k).to_owned(), (*v).to_owned());
    }
    for k in without {
        c.remove(*k);
    }
    c
}

fn custom_job(
    local: &LocalAws,
    provider: &str,
    pipeline: &str,
    configuration: BTreeMap<String, String>,
    artifact: &ArtifactLocation,
) -> String {
    local.emulator.start_custom_job(NewCustomJob {
        provider: provider.to_owned(),
        pipeline_name: pipeline.to_owned(),
        stage: "Deploy-dev".to_owned(),
        action: "Deploy".to_owned(),
        configuration,
        artifact: artifact.clone(),
        execution_id: None,
    })
}

/// Acknowledges a polled job, as the worker does before it handles one.
async fn acknowledge(local: &LocalAws, job: &crossdeploy_pipeline_job::Job) {
    let crossdeploy_pipeline_job::JobSource::Poll { nonce, provider } = &job.source else { panic!("not a polled job") };
    let deadline = Deadline::after(Duration::from_secs(30));
    assert!(crossdeploy_pipeline_job::acknowledge_job(
        &local.codepipeline(),
        provider,
        &job.id,
        nonce,
        false,
        deadline
    )
    .await
    .unwrap());
}

/// Runs the worker on the schedule until no crossdeploy job is queued (at most `rounds` runs).
async fn drain<I: Invoke>(local: &LocalAws, worker: &Arc<Worker<I>>, rounds: usize) {
    for round in 0..rounds {
        if local.emulator.queued() == 0 {
            return;
        }
        handle_event(schedule(), worker.clone(), Deadline::after(Duration::from_secs(120)), &format!("run-{round}"))
            .await
            .unwrap();
    }
}

/// Every answer of a job and of the continuation jobs it led to, in order.
fn answers_of(local: &LocalAws, pipeline_answers: &[Answer], first: &str) -> Vec<Answer> {
    let mut chain = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(id) = next.take() {
        let Some(a) = pipeline_answers.iter().find(|a| a.job_id() == id) else { break };
        chain.push(a.clone());
        if let Answer::Success { continuation_token: Some(token), .. } = a {
            // The continuation job is the one created right after this answer, carrying the token.
            next =
                pipeline_answers.iter().skip_while(|x| x.job_id() != id).skip(1).map(|x| x.job_id().to_owned()).find(
                    |candidate| local.emulator.continuation_token_of(candidate).as_deref() == Some(token.as_str()),
                );
        }
    }
    chain
}

#[tokio::test]
async fn two_custom_action_jobs_are_polled_acknowledged_deployed_and_answered() {
    let local = spawn_local().await;
    ecs::create_fargate_service(&local.moto.endpoint, &local.other).await.unwrap();
    let package = lambda_package("v2");
    let images = r#"[{"name":"web","imageUri":"111111111111.dkr.ecr.us-east-1.amazonaws.com/web:v2"}]"#;
    let artifact = local
        .upload(
            "orders/BuildOutput/v2.zip",
            zip_of(&[("lambda.zip", &package), ("imagedefinitions.json", images.as_bytes())]),
        )
        .await
        .unwrap();
    let lambda_job = custom_job(&local, LAMBDA_PROVIDER, "orders", lambda_config(&[], &[]), &artifact);
    let ecs_config = [
        ("TargetRoleArn", accounts::target_role(OTHER_ACCOUNT)),
        ("ClusterName", ecs::CLUSTER.into()),
        ("ServiceName", ecs::SERVICE.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let ecs_job = custom_job(&local, ECS_PROVIDER, "orders", ecs_config, &artifact);
    let worker = local.worker();

    // The Lambda action's STARTED event polls its type only; the schedule polls both.
    let by_event =
        handle_event(started(LAMBDA_PROVIDER), worker.clone(), Deadline::after(Duration::from_secs(120)), "run-1")
            .await
            .unwrap();
    assert_eq!(by_event.iter().map(|h| h.job_id.as_str()).collect::<Vec<_>>(), vec![lambda_job.as_str()]);
    let by_schedule =
        handle_event(schedule(), worker, Deadline::after(Duration::from_secs(120)), "run-2").await.unwrap();
    assert_eq!(by_schedule.iter().map(|h| h.job_id.as_str()).collect::<Vec<_>>(), vec![ecs_job.as_str()]);

    let answers = local.emulator.answers();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (job, keys) in [
        (&lambda_job, vec!["AliasArn", "CodeSha256", "FunctionVersion", "PreviousVersion"]),
        (&ecs_job, vec!["DeploymentId", "PreviousTaskDefinitionArn", "ServiceDeploymentArn", "TaskDefinitionArn"]),
    ] {
        let Some(Answer::Success { output_variables, .. }) = answers.iter().find(|a| a.job_id() == job.as_str()) else {
            panic!("{answers:?}")
        };
        assert_eq!(output_variables.keys().map(String::as_str).collect::<Vec<_>>(), keys);
        assert_eq!(local.emulator.status(job), Some(Status::Succeeded));
    }
    let ledger = local.ledger();
    let lambda_records = ledger.deployments(&TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS)).await.unwrap();
    assert_eq!(lambda_records.len(), 1);
    assert_eq!(
        (lambda_records[0].status, lambda_records[0].previous.as_deref(), lambda_records[0].deployed.as_deref()),
        (DeploymentStatus::Succeeded, Some("1"), Some("2"))
    );
    assert_eq!(lambda_records[0].pipeline.pipeline_name.as_deref(), Some("orders"));
    let ecs_records =
        ledger.deployments(&TargetKey::ecs(OTHER_ACCOUNT, REGION, ecs::CLUSTER, ecs::SERVICE)).await.unwrap();
    assert_eq!(ecs_records.len(), 1);
    assert_eq!(ecs_records[0].status, DeploymentStatus::Succeeded);
    assert!(
        ecs_records[0].deployed.as_deref().is_some_and(|d| d.ends_with("task-definition/web:2")),
        "{:?}",
        ecs_records[0]
    );
}

#[tokio::test]
async fn the_same_job_handed_to_two_concurrent_runs_is_deployed_once_and_answered_once() {
    let local = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let job_id = custom_job(&local, LAMBDA_PROVIDER, "orders", lambda_config(&[], &[]), &artifact);
    let polled = crossdeploy_pipeline_job::poll_for_jobs(&local.codepipeline(), LAMBDA_PROVIDER, 10).await.unwrap();
    let job = polled.into_iter().next().unwrap();
    assert_eq!(job.id, job_id);
    acknowledge(&local, &job).await;
    let (a, b) = (local.worker(), local.worker());
    let deadline = Deadline::after(Duration::from_secs(120));

    let (ra, rb) = tokio::join!(handle_job(job.clone(), a, deadline, "run-a"), handle_job(job, b, deadline, "run-b"));

    let handled: Vec<_> = [ra.unwrap(), rb.unwrap()].into_iter().flatten().collect();
    assert_eq!(handled.len(), 1, "one run handles it, the other is a no-op: {handled:?}");
    assert_eq!(local.emulator.answers().len(), 1);
    assert_eq!(
        accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().versions,
        vec!["1", "2"],
        "deployed once"
    );

    // The same for an Invoke action's event delivered twice at once.
    let artifact3 =
        local.upload("orders/BuildOutput/v3.zip", build_artifact("lambda.zip", &lambda_package("v3"))).await.unwrap();
    let params = json!({"Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": FUNCTION, "Alias": ALIAS, "ArtifactPath": "lambda.zip"}).to_string();
    let event = local.job("DeployLambda", &params, artifact3);
    let (ra, rb) = tokio::join!(
        handle_invoke_event(event.clone(), local.worker(), deadline, "run-c"),
        handle_invoke_event(event.clone(), local.worker(), deadline, "run-d")
    );
    assert_eq!([ra.unwrap(), rb.unwrap()].into_iter().flatten().count(), 1);
    assert_eq!(local.answers_for(&event).len(), 1);
    assert_eq!(accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().versions, vec!["1", "2", "3"]);
}

/// The in-process updaters, slowed down so that two deployments overlap.
struct Slow(InProcessUpdater, Duration);

impl Invoke for Slow {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        tokio::time::sleep(self.1).await;
        self.0.invoke(function, request).await
    }
}

fn slow_worker(local: &LocalAws, lease_wait: Duration) -> Arc<Worker<Slow>> {
    let mut w = local.worker_with(Slow(
        InProcessUpdater::with_allow_list(
            &local.shared,
            &LocalAws::allowed_roles(),
            accounts::EXTERNAL_ID,
            &local.ledger_table,
        ),
        Duration::from_millis(1500),
    ));
    w.settings.lease_wait = lease_wait;
    Arc::new(w)
}

#[tokio::test]
async fn two_pipelines_deploying_one_alias_at_once_are_serialised_and_both_succeed_in_order() {
    let local = spawn_local().await;
    let a = local.upload("orders/BuildOutput/a.zip", build_artifact("lambda.zip", &lambda_package("a"))).await.unwrap();
    let b =
        local.upload("payments/BuildOutput/b.zip", build_artifact("lambda.zip", &lambda_package("b"))).await.unwrap();
    let job_a = custom_job(&local, LAMBDA_PROVIDER, "orders", lambda_config(&[], &[]), &a);
    let job_b = custom_job(&local, LAMBDA_PROVIDER, "payments", lambda_config(&[], &[]), &b);
    let worker = slow_worker(&local, Duration::from_secs(600));

    drain(&local, &worker, 10).await;

    let answers = local.emulator.answers();
    let (chain_a, chain_b) = (answers_of(&local, &answers, &job_a), answers_of(&local, &answers, &job_b));
    let (first, second) = if chain_a.len() == 1 { (chain_a, chain_b) } else { (chain_b, chain_a) };
    assert_eq!(first.len(), 1, "the first deployment runs straight through: {first:?}");
    assert!(second.len() >= 2, "the second waits through continuation: {second:?}");
    let Answer::Success { summary, continuation_token: Some(token), .. } = &second[0] else { panic!("{second:?}") };
    assert!(summary.as_deref().unwrap_or_default().contains("waiting for pipeline"), "{summary:?}");
    assert!(token.len() <= 2048);
    for chain in [&first, &second] {
        assert!(matches!(chain.last(), Some(Answer::Success { continuation_token: None, .. })), "{chain:?}");
    }
    let records =
        local.ledger().deployments(&TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS)).await.unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.status == DeploymentStatus::Succeeded), "{records:?}");
    let (newest, oldest) = (&records[0], &records[1]);
    assert!(oldest.finished_at <= Some(newest.finished_at.unwrap_or(0)));
    assert_eq!(
        (oldest.deployed.as_deref(), newest.previous.as_deref(), newest.deployed.as_deref()),
        (Some("2"), Some("2"), Some("3")),
        "in order, never interleaved"
    );
    assert_eq!(accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().alias_version, "3");
}

#[tokio::test]
async fn a_deployment_that_waits_past_the_bound_fails_naming_the_holder() {
    let local = spawn_local().await;
    let a = local.upload("orders/BuildOutput/a.zip", build_artifact("lambda.zip", &lambda_package("a"))).await.unwrap();
    let b =
        local.upload("payments/BuildOutput/b.zip", build_artifact("lambda.zip", &lambda_package("b"))).await.unwrap();
    custom_job(&local, LAMBDA_PROVIDER, "orders", lambda_config(&[], &[]), &a);
    custom_job(&local, LAMBDA_PROVIDER, "payments", lambda_config(&[], &[]), &b);
    let worker = slow_worker(&local, Duration::ZERO);

    drain(&local, &worker, 10).await;

    let answers = local.emulator.answers();
    assert_eq!(answers.len(), 2, "{answers:?}");
    let failures: Vec<&String> = answers
        .iter()
        .filter_map(|a| if let Answer::Failure { message, .. } = a { Some(message) } else { None })
        .collect();
    assert_eq!(failures.len(), 1, "{answers:?}");
    assert!(
        failures[0].contains("is being deployed by pipeline")
            && failures[0].contains("lambda/222222222222/us-east-1/orders-api/live"),
        "{}",
        failures[0]
    );
}

/// An updater that works through a few steps, each as long as an updater invocation may last
/// (its request's deadline), then succeeds; it records what it resumed from.
struct Steps {
    steps: Mutex<Vec<Outcome>>,
    resumed: Mutex<Vec<Option<Value>>>,
}

impl Invoke for Steps {
    async fn invoke(&self, _function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        let UpdaterRequest::Deploy(r) = request else { panic!("the worker only deploys") };
        self.resumed.lock().unwrap().push(r.resume.clone());
        let next = self.steps.lock().unwrap().remove(0);
        if matches!(next, Outcome::InProgress { .. }) {
            let deadline =
                Deadline::at_epoch_millis(r.deadline_ms.expect("every request carries the worker's deadline"));
            tokio::time::sleep(deadline.remaining().saturating_sub(Duration::from_millis(200))).await;
        }
        Ok(next)
    }
}

#[tokio::test]
async fn a_long_deployment_completes_over_several_continuation_jobs() {
    let local = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let job = custom_job(&local, LAMBDA_PROVIDER, "orders", lambda_config(&[], &[]), &artifact);
    let state = |n: u32| json!({"Phase": "FollowingRollout", "Step": n, "Detail": "x".repeat(3000)});
    let steps = Arc::new(Steps {
        steps: Mutex::new(vec![
            Outcome::InProgress { summary: "step 1".into(), percent_complete: 25, state: state(1), stands: None },
            Outcome::InProgress { summary: "step 2".into(), percent_complete: 50, state: state(2), stands: None },
            Outcome::InProgress { summary: "step 3".into(), percent_complete: 75, state: state(3), stands: None },
            Outcome::Succeeded {
                summary: "done".into(),
                outputs: [("FunctionVersion".to_string(), "9".to_string())].into(),
            },
        ]),
        resumed: Mutex::new(Vec::new()),
    });
    // Invocations of 4 s, and runs with room for three of them at most: the work goes on over
    // several jobs, the state passing through the ledger.
    let mut w = local.worker_with(steps.clone());
    w.settings.updater_slice = Duration::from_secs(4);
    w.settings.min_slice = Duration::from_secs(1);
    let worker = Arc::new(w);
    for round in 0..10 {
        if local.emulator.queued() == 0 {
            break;
        }
        let deadline = Deadline::after(pipeline_job_worker::poll_time_for_a_job(&worker) + Duration::from_millis(500));
        handle_event(schedule(), worker.clone(), deadline, &format!("run-{round}")).await.unwrap();
    }

    let chain = answers_of(&local, &local.emulator.answers(), &job);
    assert!(chain.len() >= 2 && chain.len() <= 4, "{chain:?}");
    for a in &chain[..chain.len() - 1] {
        let Answer::Success { continuation_token: Some(token), percent_complete, .. } = a else { panic!("{a:?}") };
        assert!(token.len() <= 2048, "the token is only a key into the ledger: {} characters", token.len());
        assert!(matches!(percent_complete, Some(25 | 50 | 75)), "{percent_complete:?}");
    }
    assert!(
        matches!(chain.last(), Some(Answer::Success { continuation_token: None, output_variables, .. }) if output_variables["FunctionVersion"] == "9")
    );
    assert_eq!(
        *steps.resumed.lock().unwrap(),
        vec![None, Some(state(1)), Some(state(2)), Some(state(3))],
        "each invocation resumes from the state the last one left, across jobs too"
    );
    let records =
        local.ledger().deployments(&TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS)).await.unwrap();
    assert_eq!(records.len(), 1, "one deployment over several jobs");
    assert_eq!(records[0].status, DeploymentStatus::Succeeded);
}

/// An updater that never answers.
struct Hang;

impl Invoke for Hang {
    async fn invoke(&self, _function: &str, _request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Err(InvokeError::BadAnswer { function: "hang".into(), problem: "woke up".into() })
    }
}

#[tokio::test]
async fn an_updater_that_never_answers_fails_the_job_after_three_silent_invocations_and_the_lease_is_released() {
    let local = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let job_id = custom_job(&local, LAMBDA_PROVIDER, "orders", lambda_config(&[], &[]), &artifact);
    let job =
        crossdeploy_pipeline_job::poll_for_jobs(&local.codepipeline(), LAMBDA_PROVIDER, 1).await.unwrap().remove(0);
    acknowledge(&local, &job).await;
    let mut w = local.worker_with(Hang);
    w.settings.updater_slice = Duration::from_secs(1);
    w.settings.min_slice = Duration::from_secs(1);
    let worker = Arc::new(w);

    let started = std::time::Instant::now();
    handle_job(job, worker, Deadline::after(Duration::from_secs(40)), "run-1").await.unwrap();

    // Each silent invocation is waited out to its deadline and a little more (about 4 s here).
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let answers = local.emulator.answers();
    let [Answer::Failure { failure_type, message, .. }] = answers.as_slice() else { panic!("{answers:?}") };
    assert_eq!(failure_type, "JobFailed");
    assert!(message.contains("gave no outcome 3 times in a row"), "{message}");
    assert_eq!(local.emulator.status(&job_id), Some(Status::Failed));
    let target = TargetKey::lambda(TARGET_ACCOUNT, REGION, FUNCTION, ALIAS);
    let other = LeaseHolder { deployment_id: "next".into(), ..Default::default() };
    assert_eq!(
        local.ledger().acquire_lease(&target, &other, crossdeploy_ledger::now_secs() + 60).await.unwrap(),
        Lease::Acquired,
        "the lease was released"
    );
    let records = local.ledger().deployments(&target).await.unwrap();
    assert_eq!(records[0].status, DeploymentStatus::Failed);
}

#[tokio::test]
async fn bad_configuration_properties_fail_naming_the_key() {
    let local = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let ecs = |extra: &[(&str, &str)], without: &[&str]| -> BTreeMap<String, String> {
        let mut c: BTreeMap<String, String> = [
            ("TargetRoleArn", accounts::target_role(TARGET_ACCOUNT)),
            ("ClusterName", "prod".into()),
            ("ServiceName", "web".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        c.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        without.iter().for_each(|k| {
            c.remove(*k);
        });
        c
    };
    let cases = vec![
        (LAMBDA_PROVIDER, lambda_config(&[], &["TargetRoleArn"]), "TargetRoleArn"),
        (LAMBDA_PROVIDER, lambda_config(&[], &["FunctionName"]), "FunctionName"),
        (LAMBDA_PROVIDER, lambda_config(&[], &["Alias"]), "Alias"),
        (LAMBDA_PROVIDER, lambda_config(&[("TargetRoleArn", "not-an-arn")], &[]), "TargetRoleArn"),
        (LAMBDA_PROVIDER, lambda_config(&[("DeploymentStrategy", "Canary10Percent")], &[]), "DeploymentStrategy"),
        (LAMBDA_PROVIDER, lambda_config(&[("Region", "Mars")], &[]), "Region"),
        (ECS_PROVIDER, ecs(&[], &["ClusterName"]), "ClusterName"),
        (ECS_PROVIDER, ecs(&[], &["ServiceName"]), "ServiceName"),
        (ECS_PROVIDER, ecs(&[("TimeoutMinutes", "soon")], &[]), "TimeoutMinutes"),
        (ECS_PROVIDER, ecs(&[("FileName", "imageDetail.json")], &[]), "ContainerName"),
    ];
    let jobs: Vec<(String, &str)> =
        cases.into_iter().map(|(p, c, key)| (custom_job(&local, p, "orders", c, &artifact), key)).collect();

    drain(&local, &local.worker(), 5).await;

    let answers = local.emulator.answers();
    for (job, key) in jobs {
        let Some(Answer::Failure { failure_type, message, .. }) = answers.iter().find(|a| a.job_id() == job) else {
            panic!("{key}: {answers:?}")
        };
        assert_eq!(failure_type, "ConfigurationError", "{key}: {message}");
        assert!(message.contains(&format!("`{key}`")), "{key}: {message}");
    }
    assert_eq!(
        accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().versions,
        vec!["1"],
        "nothing deployed"
    );
}

#[tokio::test]
async fn a_job_for_an_unknown_action_type_is_left_alone() {
    let local = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let foreign = custom_job(&local, "SomeoneElsesDeployer", "orders", lambda_config(&[], &[]), &artifact);
    let worker = local.worker();

    let by_event = handle_event(
        started("SomeoneElsesDeployer"),
        worker.clone(),
        Deadline::after(Duration::from_secs(60)),
        "run-1",
    )
    .await
    .unwrap();
    let by_schedule =
        handle_event(schedule(), worker, Deadline::after(Duration::from_secs(60)), "run-2").await.unwrap();

    assert!(by_event.is_empty() && by_schedule.is_empty());
    assert_eq!(local.emulator.status(&foreign), Some(Status::Queued), "not acknowledged, not answered");
    assert!(local.emulator.answers().is_empty());
}

#[test]
fn template_yaml_declares_the_action_types_of_the_contract() {
    let t = templates::template("template.yaml").unwrap();
    for (_, resource) in templates::resources(&t, "AWS::CodePipeline::CustomActionType") {
        let p = &resource["Properties"];
        let provider = p["Provider"].as_str().unwrap();
        assert_eq!((p["Category"].as_str(), p["Version"].as_str()), (Some("Deploy"), Some(actions::ACTION_VERSION)));
        let declared: Vec<(String, bool, String)> = p["ConfigurationProperties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["Name"].as_str().unwrap().to_owned(),
                    c["Required"].as_bool().unwrap(),
                    c["Type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let contract: Vec<(String, bool, String)> =
            actions::properties(provider).iter().map(|c| (c.name.to_owned(), c.required, c.kind.to_owned())).collect();
        assert_eq!(declared, contract, "{provider}");
        for c in p["ConfigurationProperties"].as_array().unwrap() {
            assert_eq!(
                (c["Secret"].as_bool(), c["Queryable"].as_bool()),
                (Some(false), Some(false)),
                "{provider} {}",
                c["Name"]
            );
        }
        assert_eq!(
            (p["InputArtifactDetails"]["MinimumCount"].as_i64(), p["InputArtifactDetails"]["MaximumCount"].as_i64()),
            (Some(1), Some(1))
        );
        assert!(p["Settings"]["ExecutionUrlTemplate"]["Fn::Sub"].as_str().unwrap().contains("{ExternalExecutionId}"));
    }
}

#[tokio::test]
async fn a_run_with_too_little_time_left_polls_nothing_and_the_job_stays_queued_for_the_next() {
    let local = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    let job = custom_job(&local, LAMBDA_PROVIDER, "orders", lambda_config(&[], &[]), &artifact);
    let worker = local.worker();

    let handled =
        handle_event(schedule(), worker.clone(), Deadline::after(Duration::from_secs(20)), "run-late").await.unwrap();

    assert!(handled.is_empty());
    assert!(local.emulator.answers().is_empty());
    // Not polled at all: what CodePipeline does with a job handed out and never acknowledged is
    // not documented (the emulator lets it time out), so none is.
    assert_eq!(local.emulator.status(&job), Some(Status::Queued));
    assert_eq!(accounts::function_state(&local.target, FUNCTION, ALIAS).await.unwrap().versions, vec!["1"]);
    // The next run, with time, takes it.
    let handled =
        handle_event(schedule(), worker.clone(), Deadline::after(Duration::from_secs(120)), "run-next").await.unwrap();
    assert_eq!(handled.len(), 1);
    assert_eq!(local.emulator.status(&job), Some(Status::Succeeded));
}

#[tokio::test]
async fn a_run_polls_no_more_jobs_than_it_can_start_at_once_and_acknowledges_every_one() {
    let local = spawn_local().await;
    let artifact =
        local.upload("orders/BuildOutput/v2.zip", build_artifact("lambda.zip", &lambda_package("v2"))).await.unwrap();
    // Six jobs on six functions; the worker starts four at once.
    let mut jobs = Vec::new();
    for i in 0..6 {
        let name = format!("svc-{i}");
        accounts::create_function(&local.target, &name, ALIAS, lambda_package("v1")).await.unwrap();
        let mut config = lambda_config(&[], &[]);
        config.insert("FunctionName".into(), name);
        jobs.push(custom_job(&local, LAMBDA_PROVIDER, "orders", config, &artifact));
    }
    let worker = local.worker();
    assert_eq!(worker.settings.concurrency, 4);

    let handled =
        handle_event(schedule(), worker.clone(), Deadline::after(Duration::from_secs(120)), "run-1").await.unwrap();

    assert_eq!(handled.len(), 4, "{handled:?}");
    assert_eq!(local.emulator.queued(), 2, "two jobs stay queued for the next run, never handed out");
    let statuses: Vec<Status> = jobs.iter().filter_map(|j| local.emulator.status(j)).collect();
    assert_eq!(statuses.iter().filter(|s| **s == Status::Succeeded).count(), 4, "{statuses:?}");
    assert!(!statuses.contains(&Status::Dispatched), "none is handed out and left unacknowledged: {statuses:?}");
}

/// CodePipeline's quota: at most 10 configuration properties per custom action type. The
/// emulator refuses an 11th, as CodePipeline does; template.yaml's ECS action type has 10.
#[tokio::test]
async fn a_custom_action_type_with_more_than_ten_properties_is_refused() {
    use aws_sdk_codepipeline::types::{ActionCategory, ActionConfigurationProperty, ArtifactDetails};
    let local = LocalAws::start().await.expect("the local AWS starts");
    let template = templates::template("template.yaml").unwrap();
    let ecs_props = template["Resources"]["CrossdeployEcsActionType"]["Properties"]["ConfigurationProperties"]
        .as_array()
        .map(Vec::len);
    assert_eq!(ecs_props, Some(10), "the ECS action type is at CodePipeline's limit");
    let property = |i: usize| {
        ActionConfigurationProperty::builder()
            .name(format!("P{i}"))
            .required(false)
            .key(false)
            .secret(false)
            .build()
            .unwrap()
    };
    let details = || ArtifactDetails::builder().minimum_count(0).maximum_count(1).build();
    let create = |n: usize| {
        let mut call = local
            .codepipeline()
            .create_custom_action_type()
            .category(ActionCategory::Deploy)
            .provider(format!("Probe{n}"))
            .version("1")
            .input_artifact_details(details())
            .output_artifact_details(details());
        for i in 0..n {
            call = call.configuration_properties(property(i));
        }
        call.send()
    };
    assert!(create(10).await.is_ok());
    let e = create(11).await.unwrap_err();
    assert_eq!(e.as_service_error().and_then(|e| e.meta().code()), Some("ValidationException"), "{e:?}");
}
