//! Every job gets exactly one answer: mocked CodePipeline, and a fake updater that answers,
//! panics or never answers.

use aws_sdk_codepipeline::operation::get_job_details::GetJobDetailsOutput;
use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultOutput;
use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultOutput;
use aws_sdk_codepipeline::types::{
    FailureType as CpFailure, JobData, JobDetails, PipelineContext as CpContext, StageContext,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::Ledger;
use crossdeploy_protocol::{FailureType, Outcome, UpdaterRequest};
use pipeline_job_worker::{handle_invoke_event, Invoke, InvokeError, Settings, Updaters, Worker, WorkerError};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Cp = aws_sdk_codepipeline::Client;

#[derive(Clone)]
enum Behaviour {
    Answer(Box<Outcome>),
    Panic,
    Hang,
}

struct FakeUpdater {
    behaviour: Mutex<Vec<Behaviour>>,
    seen: Mutex<Vec<UpdaterRequest>>,
}

impl FakeUpdater {
    fn new(behaviours: Vec<Behaviour>) -> Self {
        Self { behaviour: Mutex::new(behaviours), seen: Mutex::new(Vec::new()) }
    }
    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

struct Fake(Arc<FakeUpdater>);

impl Invoke for Fake {
    async fn invoke(&self, _function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        self.0.seen.lock().unwrap().push(request.clone());
        let b = self.0.behaviour.lock().unwrap().remove(0);
        match b {
            Behaviour::Answer(o) => Ok(*o),
            Behaviour::Panic => panic!("updater bug"),
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
                unreachable!()
            }
        }
    }
}

fn event(user_parameters: &str, continuation: Option<&str>) -> serde_json::Value {
    json!({"CodePipeline.job": {
        "id": "job-1",
        "accountId": "111111111111",
        "data": {
            "actionConfiguration": {"configuration": {"FunctionName": "pipeline-job-worker", "UserParameters": user_parameters}},
            "inputArtifacts": [{"name": "BuildOutput", "revision": null, "location": {"type": "S3", "s3Location": {"bucketName": "artifacts", "objectKey": "orders/Build/abc"}}}],
            "outputArtifacts": [],
            "artifactCredentials": {"accessKeyId": "ASIA", "secretAccessKey": "s", "sessionToken": "t"},
            "continuationToken": continuation
        }
    }})
}

const GOOD: &str = r#"{"Kind":"Lambda","TargetRoleArn":"arn:aws:iam::222222222222:role/crossdeploy-target","FunctionName":"orders-api","Alias":"live","ArtifactPath":"lambda.zip"}"#;

fn job_details() -> Rule {
    mock!(Cp::get_job_details).then_output(|| {
        GetJobDetailsOutput::builder()
            .job_details(
                JobDetails::builder()
                    .id("job-1")
                    .data(
                        JobData::builder()
                            .pipeline_context(
                                CpContext::builder()
                                    .pipeline_name("orders")
                                    .pipeline_execution_id("exec-9")
                                    .stage(StageContext::builder().name("Deploy-dev").build())
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build()
    })
}

fn failure_rule(kind: CpFailure, needle: &'static str) -> Rule {
    mock!(Cp::put_job_failure_result)
        .match_requests(move |r| {
            let d = r.failure_details().unwrap();
            r.job_id() == Some("job-1") && d.r#type() == &kind && d.message().contains(needle)
        })
        .then_output(|| PutJobFailureResultOutput::builder().build())
}

fn success_rule() -> Rule {
    mock!(Cp::put_job_success_result).then_output(|| PutJobSuccessResultOutput::builder().build())
}

type Ddb = aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::TransactWriteItem;

/// A ledger whose every conditional write succeeds: a fresh job, a free target. (The ledger's
/// own behaviour, and the worker's with it, is tested against DynamoDB in tests/.) With
/// `transactions` false, every transaction is cancelled (as a condition failing would cancel
/// it), and the worker goes one write at a time.
fn ledger(transactions: bool) -> (Ledger, Rule, Rule) {
    let (ledger, transact, update, _) = ledger_seeing(transactions);
    (ledger, transact, update)
}

/// The transactions a ledger was sent, each as its writes.
type Sent = Arc<Mutex<Vec<Vec<TransactWriteItem>>>>;

/// As [`ledger`], keeping each transaction it was sent.
fn ledger_seeing(transactions: bool) -> (Ledger, Rule, Rule, Sent) {
    use aws_sdk_dynamodb::operation::{
        delete_item::DeleteItemOutput, get_item::GetItemOutput, put_item::PutItemOutput,
        transact_write_items::TransactWriteItemsOutput, update_item::UpdateItemOutput,
    };
    let sent = Arc::new(Mutex::new(Vec::new()));
    let keep = sent.clone();
    let put = mock!(Ddb::put_item).then_output(|| PutItemOutput::builder().build());
    let update = mock!(Ddb::update_item).then_output(|| UpdateItemOutput::builder().build());
    let delete = mock!(Ddb::delete_item).then_output(|| DeleteItemOutput::builder().build());
    // Reads find nothing: no rollback recorded on the deployment.
    let get = mock!(Ddb::get_item).then_output(|| GetItemOutput::builder().build());
    let transact = mock!(Ddb::transact_write_items).match_requests(move |r| {
        keep.lock().unwrap().push(r.transact_items().to_vec());
        true
    });
    let transact = match transactions {
        true => transact.then_output(|| TransactWriteItemsOutput::builder().build()),
        false => transact.then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(
                    r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed, None, None]","CancellationReasons":[{"Code":"ConditionalCheckFailed"},{"Code":"None"},{"Code":"None"}]}"#,
                ),
            )
        }),
    };
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &update, &delete, &get, &transact]);
    (Ledger::new(client, "ledger"), transact, update, sent)
}

fn worker(cp: Cp, fake: &Arc<FakeUpdater>) -> Arc<Worker<Fake>> {
    worker_with(cp, fake, ledger(true).0)
}

fn worker_with(cp: Cp, fake: &Arc<FakeUpdater>, ledger: Ledger) -> Arc<Worker<Fake>> {
    Arc::new(Worker {
        codepipeline: cp,
        invoker: Fake(fake.clone()),
        updaters: Updaters { lambda: Some("lambda-alias-updater".into()), ecs: None },
        ledger,
        settings: Settings::new("us-east-1"),
    })
}

#[tokio::test]
async fn user_parameters_that_are_not_json_get_one_configuration_error_and_no_updater_call() {
    let (details, fail, ok) =
        (job_details(), failure_rule(CpFailure::ConfigurationError, "UserParameters"), success_rule());
    let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &fail, &ok]);
    let fake = Arc::new(FakeUpdater::new(vec![]));

    let handled = handle_invoke_event(
        event("{not json", None),
        worker(cp, &fake),
        Deadline::after(Duration::from_secs(60)),
        "run-1",
    )
    .await
    .unwrap();

    assert_eq!(handled.unwrap().answer, "ConfigurationError");
    assert_eq!((fail.num_calls(), ok.num_calls(), fake.calls()), (1, 0, 0));
}

#[tokio::test]
async fn a_successful_deploy_is_answered_once_with_its_outputs_and_the_pipeline_context() {
    let details = job_details();
    let ok = mock!(Cp::put_job_success_result)
        .match_requests(|r| {
            let d = r.execution_details().unwrap();
            r.output_variables().unwrap()["FunctionVersion"] == "7"
                && d.percent_complete() == Some(100)
                && d.external_execution_id() == Some("job-1")
                && r.continuation_token().is_none()
        })
        .then_output(|| PutJobSuccessResultOutput::builder().build());
    let fail = failure_rule(CpFailure::JobFailed, "");
    let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &ok, &fail]);
    let fake = Arc::new(FakeUpdater::new(vec![Behaviour::Answer(Box::new(Outcome::Succeeded {
        summary: "moved".into(),
        outputs: [("FunctionVersion".to_string(), "7".to_string())].into(),
    }))]));

    handle_invoke_event(event(GOOD, None), worker(cp, &fake), Deadline::after(Duration::from_secs(60)), "run-1")
        .await
        .unwrap();

    assert_eq!((ok.num_calls(), fail.num_calls()), (1, 0));
    let UpdaterRequest::Deploy(req) = &fake.seen.lock().unwrap()[0] else { panic!("the worker only deploys") };
    assert_eq!(req.pipeline.pipeline_name.as_deref(), Some("orders"));
    assert_eq!(req.pipeline.execution_id.as_deref(), Some("exec-9"));
    assert_eq!(req.artifact.key, "orders/Build/abc");
    assert!(req.resume.is_none());
}

/// A fresh job on a free target takes two transactions (its claim, lease and record; its end,
/// release and answer) and no other write. Where the transactions are cancelled, the
/// same job goes one write at a time to the same answer.
#[tokio::test]
async fn a_fresh_job_takes_two_transactions_and_a_cancelled_one_goes_one_write_at_a_time() {
    for transactions in [true, false] {
        let (details, ok, fail) = (job_details(), success_rule(), failure_rule(CpFailure::JobFailed, ""));
        let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &ok, &fail]);
        let fake = Arc::new(FakeUpdater::new(vec![Behaviour::Answer(Box::new(Outcome::Succeeded {
            summary: "moved".into(),
            outputs: [("FunctionVersion".to_string(), "7".to_string())].into(),
        }))]));
        let (ledger, transact, update, sent) = ledger_seeing(transactions);
        let handled = handle_invoke_event(
            event(GOOD, None),
            worker_with(cp, &fake, ledger),
            Deadline::after(Duration::from_secs(60)),
            "run-1",
        )
        .await
        .unwrap();
        assert_eq!(handled.unwrap().answer, "Succeeded");
        assert_eq!((ok.num_calls(), fail.num_calls(), fake.seen.lock().unwrap().len()), (1, 0, 1));
        // The first claims the job, leases its target vouching for the very request the
        // updater got, and records the deployment; the second ends it, frees the target and
        // records the answer.
        let sent = sent.lock().unwrap().clone();
        let [first, last] = &sent[..] else { panic!("{sent:?}") };
        let key = |i: &TransactWriteItem| {
            let key = i.put().map(|p| p.item()).or(i.update().map(|u| u.key())).or(i.delete().map(|d| d.key()));
            key.and_then(|k| k.get("pk")).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
        };
        let kinds = |items: &[TransactWriteItem]| {
            items.iter().map(|i| key(i).split('#').next().unwrap_or_default().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(kinds(first), ["JOB", "LEASE", "TARGET"]);
        assert_eq!(kinds(last), ["TARGET", "LEASE", "JOB"]);
        assert!(first[0].put().is_some() && last[1].delete().is_some());
        let vouched = first[1].update().and_then(|u| u.expression_attribute_values()).and_then(|v| v.get(":data"));
        let vouched: serde_json::Value = serde_json::from_str(vouched.and_then(|v| v.as_s().ok()).unwrap()).unwrap();
        let got = fake.seen.lock().unwrap()[0].fingerprint();
        // (A cancelled transaction vouched for nothing: the one-by-one path vouches afresh.)
        if transactions {
            assert_eq!(
                vouched["Request"].as_str(),
                got.as_deref(),
                "the lease vouches for the request the updater got"
            );
        }
        match transactions {
            // Nothing is written but the two transactions.
            true => assert_eq!((transact.num_calls(), update.num_calls()), (2, 0)),
            // Claim, lease, vouching lease, end, answer; the start is a put, the release a delete.
            false => assert_eq!((transact.num_calls(), update.num_calls()), (2, 5)),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_updater_that_panics_still_gets_the_job_answered_as_failed() {
    let (details, fail, ok) = (job_details(), failure_rule(CpFailure::JobFailed, "panic"), success_rule());
    let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &fail, &ok]);
    let fake = Arc::new(FakeUpdater::new(vec![Behaviour::Panic]));

    let handled =
        handle_invoke_event(event(GOOD, None), worker(cp, &fake), Deadline::after(Duration::from_secs(60)), "run-1")
            .await
            .unwrap();

    assert_eq!(handled.unwrap().answer, "JobFailed");
    assert_eq!((fail.num_calls(), ok.num_calls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_updater_that_never_answers_is_waited_out_to_each_deadline_and_the_job_fails_after_three() {
    let (details, fail, ok) =
        (job_details(), failure_rule(CpFailure::JobFailed, "gave no outcome 3 times in a row"), success_rule());
    let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &fail, &ok]);
    let fake = Arc::new(FakeUpdater::new(vec![Behaviour::Hang, Behaviour::Hang, Behaviour::Hang]));
    let worker = {
        let mut w = Arc::try_unwrap(worker(cp, &fake)).ok().expect("one owner");
        w.settings.updater_slice = Duration::from_secs(10);
        w.settings.min_slice = Duration::from_secs(5);
        Arc::new(w)
    };

    let started = tokio::time::Instant::now();
    let handled = handle_invoke_event(event(GOOD, None), worker, Deadline::after(Duration::from_secs(120)), "run-1")
        .await
        .unwrap();

    assert_eq!(handled.unwrap().answer, "JobFailed");
    assert_eq!((fail.num_calls(), ok.num_calls(), fake.calls()), (1, 0, 3));
    // Each silent invocation is waited out to its deadline (10 s) and the answer's slack (3 s):
    // no answer is given while an updater may still act.
    assert!(started.elapsed() >= Duration::from_secs(39), "{:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(120), "answered before the invocation's deadline");
}

#[tokio::test]
async fn every_request_to_an_updater_carries_a_deadline_before_the_workers_own() {
    let (details, ok) = (job_details(), success_rule());
    let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &ok]);
    let fake = Arc::new(FakeUpdater::new(vec![Behaviour::Answer(Box::new(Outcome::Succeeded {
        summary: "moved".into(),
        outputs: [("FunctionVersion".to_string(), "7".to_string())].into(),
    }))]));
    let deadline = Deadline::after(Duration::from_secs(300));

    handle_invoke_event(event(GOOD, None), worker(cp, &fake), deadline, "run-1").await.unwrap();

    let UpdaterRequest::Deploy(req) = &fake.seen.lock().unwrap()[0] else { panic!("the worker only deploys") };
    let asked = req.deadline_ms.expect("the worker's deadline travels in the request");
    let answer_by = deadline.epoch_millis() - pipeline_job_worker::ANSWER_MARGIN.as_millis() as u64;
    assert!(asked + 5_000 <= answer_by, "the updater stops well before the worker answers: {asked} vs {answer_by}");
    assert!(asked <= crossdeploy_aws::now_epoch_millis() + 61_000, "one slice of at most a minute");
    assert_eq!(req.deployment_id.as_deref(), Some("job-1"));
}

#[tokio::test]
async fn a_failed_outcome_keeps_its_failure_type_and_message() {
    let (details, fail, ok) =
        (job_details(), failure_rule(CpFailure::PermissionError, "not on crossdeploy's allow-list"), success_rule());
    let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &fail, &ok]);
    let fake = Arc::new(FakeUpdater::new(vec![Behaviour::Answer(Box::new(Outcome::failed(
        FailureType::PermissionError,
        "role arn:aws:iam::222222222222:role/x is not on crossdeploy's allow-list",
    )))]));

    handle_invoke_event(event(GOOD, None), worker(cp, &fake), Deadline::after(Duration::from_secs(60)), "run-1")
        .await
        .unwrap();

    assert_eq!((fail.num_calls(), ok.num_calls()), (1, 0));
}

#[tokio::test]
async fn an_event_that_is_not_a_job_is_answered_by_nobody() {
    let (details, fail, ok) = (job_details(), failure_rule(CpFailure::JobFailed, ""), success_rule());
    let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &fail, &ok]);
    let fake = Arc::new(FakeUpdater::new(vec![]));

    let err = handle_invoke_event(
        json!({"source": "aws.events"}),
        worker(cp, &fake),
        Deadline::after(Duration::from_secs(60)),
        "run-1",
    )
    .await
    .unwrap_err();

    assert!(matches!(err, WorkerError::NotAJob(_)));
    assert_eq!((details.num_calls(), fail.num_calls(), ok.num_calls(), fake.calls()), (0, 0, 0, 0));
}

#[tokio::test]
async fn a_malformed_job_is_answered_as_failed_naming_what_is_missing() {
    let (details, fail, ok) = (job_details(), failure_rule(CpFailure::JobFailed, "inputArtifacts"), success_rule());
    let cp = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&details, &fail, &ok]);
    let fake = Arc::new(FakeUpdater::new(vec![]));
    let mut e = event(GOOD, None);
    e["CodePipeline.job"]["data"].as_object_mut().unwrap().remove("inputArtifacts");

    handle_invoke_event(e, worker(cp, &fake), Deadline::after(Duration::from_secs(60)), "run-1").await.unwrap();

    assert_eq!((fail.num_calls(), fake.calls()), (1, 0));
}

#[tokio::test]
async fn the_lambda_invoker_turns_a_function_error_into_a_clear_failure() {
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_sdk_lambda::primitives::Blob;
    let rule = mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(|r| r.function_name() == Some("lambda-alias-updater"))
        .then_output(|| {
            InvokeOutput::builder()
                .status_code(200)
                .function_error("Unhandled")
                .payload(Blob::new(br#"{"errorType":"Runtime.ExitError","errorMessage":"signal: killed"}"#.to_vec()))
                .build()
        });
    let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&rule]);
    let req: UpdaterRequest = serde_json::from_value(json!({
        "Action": "Deploy", "RequestId": "job-1", "Pipeline": {"JobId": "job-1"},
        "Target": {"RoleArn": "arn:aws:iam::222222222222:role/crossdeploy-target"},
        "Artifact": {"Bucket": "b", "Key": "k"},
        "Spec": {"Kind": "Lambda", "FunctionName": "f", "Alias": "live"}
    }))
    .unwrap();

    let err = Invoke::invoke(&lambda, "lambda-alias-updater", &req).await.unwrap_err();

    assert_eq!(err.to_string(), "the updater lambda-alias-updater failed: Runtime.ExitError: signal: killed");
}
