//! The Lambda call sequences, including the states moto cannot produce, with aws-smithy-mocks.

use aws_sdk_lambda::operation::get_alias::GetAliasOutput;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
use aws_sdk_lambda::operation::publish_version::PublishVersionOutput;
use aws_sdk_lambda::operation::update_alias::UpdateAliasOutput;
use aws_sdk_lambda::operation::update_function_code::{UpdateFunctionCodeError, UpdateFunctionCodeOutput};
use aws_sdk_lambda::types::error::{PreconditionFailedException, ResourceConflictException};
use aws_sdk_lambda::types::{LastUpdateStatus, LastUpdateStatusReasonCode};
use aws_sdk_lambda::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use crossdeploy_aws::{Deadline, UpdaterFailure};
use crossdeploy_protocol::{FailureType, Outcome, PipelineContext, Serving};
use lambda_alias_updater::{
    deploy_package, resume, FunctionRef, Gates, LambdaState, Package, Shifting, UpdaterError, MUTATION_MARGIN,
    RESTORE_RESERVE,
};
use std::io::Write;
use std::time::Duration;

const ALIAS_ARN: &str = "arn:aws:lambda:us-east-1:222222222222:function:orders-api:live";

fn package() -> Package {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("bootstrap", zip::write::SimpleFileOptions::default()).unwrap();
    w.write_all(b"new code").unwrap();
    Package::new(w.finish().unwrap().into_inner(), "test").unwrap()
}

fn ctx() -> PipelineContext {
    PipelineContext {
        job_id: "job-1".into(),
        pipeline_name: Some("orders".into()),
        execution_id: Some("exec-1".into()),
        ..Default::default()
    }
}

fn alias_at_v1() -> Rule {
    mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder().function_version("1").alias_arn(ALIAS_ARN).revision_id("alias-rev-1").build()
    })
}

/// Version 1's configuration, read by its number or through the alias that points at it.
fn version_1_has_old_code() -> Rule {
    mock!(Client::get_function_configuration)
        .match_requests(|r| matches!(r.qualifier(), Some("1") | Some("live")))
        .then_output(|| GetFunctionConfigurationOutput::builder().code_sha256("old-sha").version("1").build())
}

fn latest(status: LastUpdateStatus, sha: &str, rev: &str) -> GetFunctionConfigurationOutput {
    GetFunctionConfigurationOutput::builder().last_update_status(status).code_sha256(sha).revision_id(rev).build()
}

fn update_code_ok() -> Rule {
    mock!(Client::update_function_code)
        .match_requests(|r| r.revision_id() == Some("rev-0") && r.publish() == Some(false) && r.zip_file().is_some())
        .then_output(|| UpdateFunctionCodeOutput::builder().last_update_status(LastUpdateStatus::InProgress).build())
}

fn publish_v2(sha: String) -> Rule {
    mock!(Client::publish_version)
        .match_requests(move |r| {
            r.code_sha256() == Some(sha.as_str())
                && r.revision_id() == Some("rev-2")
                && r.description().is_some_and(|d| d.contains("pipeline orders execution exec-1"))
        })
        .then_output(|| PublishVersionOutput::builder().version("2").build())
}

fn alias_to_v2() -> Rule {
    mock!(Client::update_alias)
        .match_requests(|r| {
            r.function_version() == Some("2")
                && r.revision_id() == Some("alias-rev-1")
                && r.routing_config().is_some_and(|c| c.additional_version_weights().is_some_and(|w| w.is_empty()))
                && r.description().is_some_and(|d| d.ends_with("; previous version 1"))
        })
        .then_output(|| UpdateAliasOutput::builder().alias_arn(ALIAS_ARN).function_version("2").build())
}

/// No alarms, all at once: the gates of a plain deployment (CloudWatch is never called).
fn plain(cw: &aws_sdk_cloudwatch::Client) -> Gates<'_> {
    Gates { strategy: Default::default(), alarms: &[], cloudwatch: cw, staging: None }
}

fn unused_cloudwatch() -> aws_sdk_cloudwatch::Client {
    let never = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .then_output(|| aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder().build());
    mock_client!(aws_sdk_cloudwatch, [&never])
}

fn target(client: &Client) -> FunctionRef<'_> {
    FunctionRef { lambda: client, account: "222222222222", function: "orders-api", alias: "live", deployment: "job-1" }
}

#[tokio::test(start_paused = true)]
async fn an_update_in_progress_is_waited_for_then_published_and_the_alias_moved() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let sha2 = sha.clone();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(|| latest(LastUpdateStatus::InProgress, "", "rev-1"))
        .times(2)
        .output(move || latest(LastUpdateStatus::Successful, &sha2, "rev-2"))
        .build();
    let (alias, v1, update, publish, move_alias) =
        (alias_at_v1(), version_1_has_old_code(), update_code_ok(), publish_v2(sha.clone()), alias_to_v2());
    let client =
        mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish, &move_alias]);

    let outcome = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["FunctionVersion"], "2");
    assert_eq!(outputs["PreviousVersion"], "1");
    assert_eq!(outputs["AliasArn"], ALIAS_ARN);
    assert_eq!(outputs["CodeSha256"], sha);
    assert_eq!(latest_rule.num_calls(), 4, "one read before, three while waiting");
    assert_eq!((update.num_calls(), publish.num_calls(), move_alias.num_calls()), (1, 1, 1));
}

/// An update whose own answer says it is done (moto's does; Lambda's usually says InProgress)
/// is not waited for: the version is published at once, guarded by the revision and code that
/// answer gave.
#[tokio::test(start_paused = true)]
async fn an_update_whose_answer_says_it_is_done_is_published_without_waiting() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .then_output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"));
    let sha2 = sha.clone();
    let update = mock!(Client::update_function_code).match_requests(|r| r.revision_id() == Some("rev-0")).then_output(
        move || {
            UpdateFunctionCodeOutput::builder()
                .last_update_status(LastUpdateStatus::Successful)
                .code_sha256(&sha2)
                .revision_id("rev-2")
                .build()
        },
    );
    let (alias, v1, publish, move_alias) =
        (alias_at_v1(), version_1_has_old_code(), publish_v2(sha.clone()), alias_to_v2());
    let client =
        mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish, &move_alias]);

    let outcome = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["FunctionVersion"], "2");
    assert_eq!(latest_rule.num_calls(), 1, "$LATEST read once, before the update: no wait after it");
    assert_eq!((update.num_calls(), publish.num_calls(), move_alias.num_calls()), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_update_that_fails_fails_the_job_with_lambdas_reason_and_publishes_nothing() {
    let pkg = package();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(|| latest(LastUpdateStatus::InProgress, "", "rev-1"))
        .output(|| {
            GetFunctionConfigurationOutput::builder()
                .last_update_status(LastUpdateStatus::Failed)
                .last_update_status_reason_code(LastUpdateStatusReasonCode::InvalidRuntime)
                .last_update_status_reason("The runtime parameter of provided is no longer supported")
                .build()
        })
        .build();
    let (alias, v1, update) = (alias_at_v1(), version_1_has_old_code(), update_code_ok());
    let publish = mock!(Client::publish_version).then_output(|| PublishVersionOutput::builder().version("2").build());
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish]);

    let err = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();

    assert_eq!(err.failure_type(), FailureType::JobFailed);
    let msg = err.to_string();
    assert!(msg.contains("InvalidRuntime: The runtime parameter of provided is no longer supported"), "{msg}");
    assert!(msg.contains("orders-api") && msg.contains("222222222222"), "{msg}");
    assert_eq!(publish.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_resource_conflict_is_retried_then_the_deploy_succeeds() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let sha2 = sha.clone();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(move || latest(LastUpdateStatus::Successful, &sha2, "rev-2"))
        .build();
    let update = mock!(Client::update_function_code)
        .sequence()
        .error(|| {
            UpdateFunctionCodeError::ResourceConflictException(
                ResourceConflictException::builder()
                    .message("An update is in progress for resource: orders-api")
                    .build(),
            )
        })
        .times(2)
        .output(|| UpdateFunctionCodeOutput::builder().build())
        .build();
    let (alias, v1, publish, move_alias) = (alias_at_v1(), version_1_has_old_code(), publish_v2(sha), alias_to_v2());
    let client =
        mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish, &move_alias]);

    let outcome = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(update.num_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_precondition_failure_says_someone_else_changed_the_function() {
    let pkg = package();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .then_output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"));
    let update = mock!(Client::update_function_code).then_error(|| {
        UpdateFunctionCodeError::PreconditionFailedException(
            PreconditionFailedException::builder()
                .message("The Revision Id provided does not match the latest Revision Id.")
                .r#type("User")
                .build(),
        )
    });
    let (alias, v1) = (alias_at_v1(), version_1_has_old_code());
    let publish = mock!(Client::publish_version).then_output(|| PublishVersionOutput::builder().version("2").build());
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish]);

    let err = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, UpdaterError::Changed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("PreconditionFailedException") && msg.contains("orders-api") && msg.contains("222222222222"),
        "{msg}"
    );
    assert!(msg.contains("retry this action"), "{msg}");
    assert_eq!(update.num_calls(), 1, "a precondition failure is not retried");
    assert_eq!(publish.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_wait_cut_short_by_the_deadline_hands_back_state_and_resumes() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let sha2 = sha.clone();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(|| latest(LastUpdateStatus::InProgress, "", "rev-1"))
        .times(3)
        .output(move || latest(LastUpdateStatus::Successful, &sha2, "rev-2"))
        .times(2)
        .build();
    let (alias, v1, update, publish, move_alias) =
        (alias_at_v1(), version_1_has_old_code(), update_code_ok(), publish_v2(sha.clone()), alias_to_v2());
    let client =
        mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish, &move_alias]);

    // Time for the upload, then the wait (1 + 2 + 4 s) leaves too little to publish and move
    // the alias before the deadline (and put it back if need be): the state is handed back.
    let first = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(MUTATION_MARGIN + RESTORE_RESERVE + Duration::from_millis(2500)),
    )
    .await
    .unwrap();
    let Outcome::InProgress { state, .. } = first else { panic!("{first:?}") };
    assert_eq!(publish.num_calls(), 0);
    let state: LambdaState = serde_json::from_value(state).unwrap();

    let second =
        resume(&target(&client), &plain(&unused_cloudwatch()), state, &ctx(), Deadline::after(Duration::from_secs(60)))
            .await
            .unwrap();

    let Outcome::Succeeded { outputs, .. } = second else { panic!("{second:?}") };
    assert_eq!((outputs["FunctionVersion"].as_str(), outputs["PreviousVersion"].as_str()), ("2", "1"));
    assert_eq!(
        (update.num_calls(), publish.num_calls(), move_alias.num_calls()),
        (1, 1, 1),
        "the code is uploaded once"
    );
}

#[tokio::test(start_paused = true)]
async fn an_alias_that_already_serves_the_package_changes_nothing() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let alias = mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder()
            .function_version("2")
            .alias_arn(ALIAS_ARN)
            .description("crossdeploy: pipeline orders execution exec-1; deployment job-1; previous version 1")
            .build()
    });
    let sha2 = sha.clone();
    let v2 = mock!(Client::get_function_configuration)
        .match_requests(|r| matches!(r.qualifier(), Some("2") | Some("live")))
        .then_output(move || GetFunctionConfigurationOutput::builder().code_sha256(&sha2).version("2").build());
    let sha3 = sha.clone();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .then_output(move || latest(LastUpdateStatus::Successful, &sha3, "rev-2"));
    let update = mock!(Client::update_function_code).then_output(|| UpdateFunctionCodeOutput::builder().build());
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v2, &latest_rule, &update]);

    let outcome = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    let Outcome::Succeeded { outputs, summary } = outcome else { panic!() };
    assert_eq!(
        (outputs["FunctionVersion"].as_str(), outputs["PreviousVersion"].as_str()),
        ("2", "1"),
        "this deployment's own earlier attempt moved the alias from 1"
    );
    assert!(summary.contains("nothing changed"), "{summary}");
    assert_eq!(update.num_calls(), 0);

    // Another deployment of the same package finds the alias on it: it changed nothing, and
    // what stood before it is what stands (never the version an older deployment replaced).
    let other = FunctionRef {
        lambda: &client,
        account: "222222222222",
        function: "orders-api",
        alias: "live",
        deployment: "job-9",
    };
    let outcome =
        deploy_package(&other, &plain(&unused_cloudwatch()), &pkg, &ctx(), Deadline::after(Duration::from_secs(60)))
            .await
            .unwrap();
    let Outcome::Succeeded { outputs, .. } = outcome else { panic!() };
    assert_eq!((outputs["FunctionVersion"].as_str(), outputs["PreviousVersion"].as_str()), ("2", "2"));
    let _ = sha;
}

fn alarms(state: aws_sdk_cloudwatch::types::StateValue) -> aws_sdk_cloudwatch::Client {
    let rule = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .match_requests(|r| r.alarm_names() == ["orders-errors"])
        .then_output(move || {
            aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder()
                .metric_alarms(
                    aws_sdk_cloudwatch::types::MetricAlarm::builder()
                        .alarm_name("orders-errors")
                        .state_value(state.clone())
                        .state_reason("Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0)")
                        .build(),
                )
                .build()
        });
    mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule])
}

fn canary<'a>(cw: &'a aws_sdk_cloudwatch::Client, names: &'a [String]) -> Gates<'a> {
    Gates { strategy: "Canary10Percent5Minutes".parse().unwrap(), alarms: names, cloudwatch: cw, staging: None }
}

fn shifting(started: u64) -> LambdaState {
    LambdaState::Shifting(Shifting {
        code_sha256: "new-sha".into(),
        new_version: "2".into(),
        previous_version: "1".into(),
        step: 0,
        step_started_at: started,
        alias_revision_id: Some("alias-rev-2".into()),
        alias_arn: ALIAS_ARN.into(),
    })
}

/// The alias of a canary at its first step: version 1, with 10% on version 2.
fn alias_shifted_to_v2() -> Rule {
    mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder()
            .function_version("1")
            .alias_arn(ALIAS_ARN)
            .revision_id("alias-rev-2")
            .routing_config(
                aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                    .additional_version_weights("2", 0.1)
                    .build(),
            )
            .description("crossdeploy: pipeline orders execution exec-1; deployment job-1; previous version 1")
            .build()
    })
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(start_paused = true)]
async fn a_canary_sends_its_share_of_traffic_to_the_new_version_then_hands_back_its_state() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let sha2 = sha.clone();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(move || latest(LastUpdateStatus::Successful, &sha2, "rev-2"))
        .build();
    let ten_percent = mock!(Client::update_alias)
        .match_requests(|r| {
            r.function_version() == Some("1")
                && r.revision_id() == Some("alias-rev-1")
                && r.routing_config()
                    .and_then(|c| c.additional_version_weights())
                    .is_some_and(|w| w.get("2") == Some(&0.1))
        })
        .then_output(|| UpdateAliasOutput::builder().alias_arn(ALIAS_ARN).revision_id("alias-rev-2").build());
    let (alias, v1, update, publish) = (alias_at_v1(), version_1_has_old_code(), update_code_ok(), publish_v2(sha));
    let client =
        mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish, &ten_percent]);
    let cw = alarms(aws_sdk_cloudwatch::types::StateValue::Ok);
    let names = vec!["orders-errors".to_owned()];

    let outcome =
        deploy_package(&target(&client), &canary(&cw, &names), &pkg, &ctx(), Deadline::after(Duration::from_secs(30)))
            .await
            .unwrap();

    let Outcome::InProgress { state, summary, .. } = outcome else { panic!("{outcome:?}") };
    assert!(summary.starts_with("10% of alias live's traffic on version 2"), "{summary}");
    let LambdaState::Shifting(s) = serde_json::from_value(state).unwrap() else { panic!() };
    assert_eq!(
        (s.step, s.previous_version.as_str(), s.new_version.as_str(), s.alias_revision_id.as_deref()),
        (0, "1", "2", Some("alias-rev-2"))
    );
    assert_eq!(ten_percent.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn with_the_alarm_ok_the_canary_takes_its_next_step_and_leaves_no_routing() {
    let shifted = alias_shifted_to_v2();
    let all = mock!(Client::update_alias)
        .match_requests(|r| {
            r.function_version() == Some("2")
                && r.revision_id() == Some("alias-rev-2")
                && r.routing_config().and_then(|c| c.additional_version_weights()).is_some_and(|w| w.is_empty())
        })
        .then_output(|| UpdateAliasOutput::builder().alias_arn(ALIAS_ARN).revision_id("alias-rev-3").build());
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&shifted, &all]);
    let cw = alarms(aws_sdk_cloudwatch::types::StateValue::Ok);
    let names = vec!["orders-errors".to_owned()];

    let outcome = resume(
        &target(&client),
        &canary(&cw, &names),
        shifting(now() - 301),
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!((outputs["FunctionVersion"].as_str(), outputs["PreviousVersion"].as_str()), ("2", "1"));
    assert_eq!(all.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_alarm_mid_canary_restores_the_alias_and_fails_naming_the_alarm() {
    let shifted = alias_shifted_to_v2();
    let restore = mock!(Client::update_alias)
        .match_requests(|r| {
            r.function_version() == Some("1")
                && r.revision_id() == Some("alias-rev-2")
                && r.routing_config().and_then(|c| c.additional_version_weights()).is_some_and(|w| w.is_empty())
        })
        .then_output(|| UpdateAliasOutput::builder().alias_arn(ALIAS_ARN).build());
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&shifted, &restore]);
    let cw = alarms(aws_sdk_cloudwatch::types::StateValue::Alarm);
    let names = vec!["orders-errors".to_owned()];

    let err = resume(
        &target(&client),
        &canary(&cw, &names),
        shifting(now()),
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();

    assert_eq!(err.failure_type(), FailureType::JobFailed);
    let msg = err.to_string();
    assert!(msg.contains("alarm orders-errors in account 222222222222 is in ALARM (Threshold Crossed"), "{msg}");
    assert!(msg.contains("restored to version 1"), "{msg}");
    assert_eq!(restore.num_calls(), 1);
}

fn rollback_spec() -> crossdeploy_protocol::LambdaRollback {
    crossdeploy_protocol::LambdaRollback {
        function_name: "orders-api".into(),
        alias: "live".into(),
        restore_version: "1".into(),
        deployed_version: "2".into(),
    }
}

#[tokio::test]
async fn a_rollback_moves_the_alias_back_guarded_by_its_revision_id() {
    let at_v2 = mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder().function_version("2").alias_arn(ALIAS_ARN).revision_id("alias-rev-2").build()
    });
    let back_to_v1 = mock!(Client::update_alias)
        .match_requests(|r| {
            r.function_version() == Some("1")
                && r.revision_id() == Some("alias-rev-2")
                && r.routing_config().is_some_and(|c| c.additional_version_weights().is_some_and(|w| w.is_empty()))
        })
        .then_output(|| UpdateAliasOutput::builder().alias_arn(ALIAS_ARN).function_version("1").build());
    let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&at_v2, &back_to_v1]);
    let f = FunctionRef {
        lambda: &lambda,
        account: "222222222222",
        function: "orders-api",
        alias: "live",
        deployment: "job-1",
    };
    let outcome = lambda_alias_updater::rollback_alias(
        &f,
        &rollback_spec(),
        None,
        "rollback-job-1",
        "alarm x",
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let Outcome::Succeeded { outputs, summary } = outcome else { panic!("expected success") };
    assert_eq!(outputs["RollbackResult"], "Restored");
    assert_eq!(outputs["Current"], "1");
    assert!(summary.contains("restored to version 1") && summary.contains("alarm x"), "{summary}");
    assert_eq!(back_to_v1.num_calls(), 1);
}

#[tokio::test]
async fn a_rollback_that_finds_the_alias_elsewhere_changes_nothing() {
    let at_v3 = mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder().function_version("3").alias_arn(ALIAS_ARN).revision_id("alias-rev-3").build()
    });
    let moved = mock!(Client::update_alias).then_output(|| UpdateAliasOutput::builder().build());
    let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&at_v3, &moved]);
    let f = FunctionRef {
        lambda: &lambda,
        account: "222222222222",
        function: "orders-api",
        alias: "live",
        deployment: "job-1",
    };
    let outcome = lambda_alias_updater::rollback_alias(
        &f,
        &rollback_spec(),
        None,
        "rollback-job-1",
        "alarm x",
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let Outcome::Succeeded { outputs, summary } = outcome else { panic!("expected success") };
    assert_eq!(outputs["RollbackResult"], "LeftAlone");
    assert!(summary.contains("someone deployed since"), "{summary}");
    assert_eq!(moved.num_calls(), 0);
}

#[tokio::test]
async fn a_rollback_raced_by_another_change_of_the_alias_fails_naming_it() {
    let at_v2 = mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder().function_version("2").alias_arn(ALIAS_ARN).revision_id("alias-rev-2").build()
    });
    let raced = mock!(Client::update_alias).then_error(|| {
        aws_sdk_lambda::operation::update_alias::UpdateAliasError::PreconditionFailedException(
            PreconditionFailedException::builder().message("revision id mismatch").build(),
        )
    });
    let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&at_v2, &raced]);
    let f = FunctionRef {
        lambda: &lambda,
        account: "222222222222",
        function: "orders-api",
        alias: "live",
        deployment: "job-1",
    };
    let e = lambda_alias_updater::rollback_alias(
        &f,
        &rollback_spec(),
        None,
        "rollback-job-1",
        "alarm x",
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.failure_type(), FailureType::JobFailed);
    assert!(e.to_string().contains("the alias of function orders-api in account 222222222222 changed"), "{e}");
}

// ---- Failures after the target changed (issue: every failure ends in a known state) ----

fn alias_error_precondition() -> aws_sdk_lambda::operation::update_alias::UpdateAliasError {
    aws_sdk_lambda::operation::update_alias::UpdateAliasError::PreconditionFailedException(
        PreconditionFailedException::builder()
            .message("The Revision Id provided does not match the latest Revision Id")
            .build(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_shift_resumed_from_an_old_state_goes_on_from_where_the_alias_is() {
    // A lost invocation took the canary all the way: the alias serves version 2, its
    // description naming this deployment. The resumed shift recognises it: success, no change.
    let done = mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder()
            .function_version("2")
            .alias_arn(ALIAS_ARN)
            .revision_id("alias-rev-9")
            .description("crossdeploy: pipeline orders execution exec-1; deployment job-1; previous version 1")
            .build()
    });
    let never = mock!(Client::update_alias).then_output(|| UpdateAliasOutput::builder().build());
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&done, &never]);
    let cw = alarms(aws_sdk_cloudwatch::types::StateValue::Ok);
    let names = vec!["orders-errors".to_owned()];

    let outcome = resume(
        &target(&client),
        &canary(&cw, &names),
        shifting(now() - 100),
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!((outputs["FunctionVersion"].as_str(), outputs["PreviousVersion"].as_str()), ("2", "1"));
    assert_eq!(never.num_calls(), 0, "nothing moved again, nothing put back");
}

#[tokio::test(start_paused = true)]
async fn a_cloudwatch_read_error_mid_shift_puts_the_alias_back_and_says_what_it_serves() {
    let shifted = alias_shifted_to_v2();
    let restore = mock!(Client::update_alias)
        .match_requests(|r| r.function_version() == Some("1") && r.revision_id() == Some("alias-rev-2"))
        .then_output(|| UpdateAliasOutput::builder().alias_arn(ALIAS_ARN).build());
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&shifted, &restore]);
    let denied = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_error(|| {
        aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsError::generic(
            aws_smithy_types::error::ErrorMetadata::builder().code("AccessDenied").message("not authorized").build(),
        )
    });
    let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&denied]);
    let names = vec!["orders-errors".to_owned()];

    let err = resume(
        &target(&client),
        &canary(&cw, &names),
        shifting(now()),
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();

    assert_eq!(restore.num_calls(), 1, "the alias goes back");
    let msg = err.to_string();
    assert!(msg.contains("failed to read alarms") && msg.contains("restored to version 1 with no routing"), "{msg}");
    let stands = err.stands().expect("a failure after the alias moved says what it serves");
    assert_eq!((stands.serving, stands.previous.as_str(), stands.deployed.as_str()), (Serving::Previous, "1", "2"));
}

#[tokio::test(start_paused = true)]
async fn a_restore_that_fails_too_says_exactly_what_the_alias_serves() {
    let shifted = alias_shifted_to_v2();
    // Someone moves the alias between crossdeploy's read and its restore: the restore is refused.
    let refused = mock!(Client::update_alias).then_error(alias_error_precondition);
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&shifted, &refused]);
    let cw = alarms(aws_sdk_cloudwatch::types::StateValue::Alarm);
    let names = vec!["orders-errors".to_owned()];

    let err = resume(
        &target(&client),
        &canary(&cw, &names),
        shifting(now()),
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();

    let stands = err.stands().expect("what the alias serves");
    assert_eq!(stands.serving, Serving::Shifting, "{stands:?}");
    assert!(stands.detail.contains("points at version 1 with 10% on version 2"), "{}", stands.detail);
    assert!(err.to_string().contains("putting it back on version 1 failed"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_alias_moved_wholly_by_someone_else_mid_shift_is_left_alone() {
    // The next step's move meets another RevisionId: someone deployed version 5 meanwhile.
    let someone = mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder().function_version("5").alias_arn(ALIAS_ARN).revision_id("alias-rev-9").build()
    });
    let moved = mock!(Client::update_alias).then_error(alias_error_precondition);
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&someone, &moved]);
    let cw = alarms(aws_sdk_cloudwatch::types::StateValue::Ok);
    let names = vec!["orders-errors".to_owned()];

    let err = resume(
        &target(&client),
        &canary(&cw, &names),
        shifting(now() - 301),
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();

    assert_eq!(moved.num_calls(), 1, "no restore over someone else's deployment");
    let stands = err.stands().unwrap();
    assert_eq!(stands.serving, Serving::Previous, "version 2 takes none of the traffic: {stands:?}");
    assert!(err.to_string().contains("changed while crossdeploy was deploying"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_alias_on_latest_is_refused_before_anything_changes() {
    let on_latest = mock!(Client::get_alias).then_output(|| {
        GetAliasOutput::builder().function_version("$LATEST").alias_arn(ALIAS_ARN).revision_id("r").build()
    });
    let update = update_code_ok();
    // Reads only, made beside the alias's: what $LATEST and the alias's version hold.
    let reads = mock!(Client::get_function_configuration)
        .then_output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"));
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&on_latest, &reads, &update]);

    let err = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &package(),
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap_err();

    assert_eq!(err.failure_type(), FailureType::ConfigurationError);
    assert!(
        err.to_string().contains("points at $LATEST")
            && err.to_string().contains("rollback must never restore $LATEST"),
        "{err}"
    );
    assert_eq!(update.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pending_version_is_waited_for_and_the_alias_moves_only_once_it_is_active() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let sha2 = sha.clone();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(move || latest(LastUpdateStatus::Successful, &sha2, "rev-2"))
        .build();
    let publish = mock!(Client::publish_version).then_output(|| {
        PublishVersionOutput::builder().version("2").state(aws_sdk_lambda::types::State::Pending).build()
    });
    let v2 = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier() == Some("2"))
        .sequence()
        .output(|| {
            GetFunctionConfigurationOutput::builder().version("2").state(aws_sdk_lambda::types::State::Pending).build()
        })
        .times(2)
        .output(|| {
            GetFunctionConfigurationOutput::builder().version("2").state(aws_sdk_lambda::types::State::Active).build()
        })
        .build();
    let (alias, v1, update, move_alias) = (alias_at_v1(), version_1_has_old_code(), update_code_ok(), alias_to_v2());
    let client = mock_client!(
        aws_sdk_lambda,
        RuleMode::MatchAny,
        [&alias, &v1, &latest_rule, &update, &publish, &v2, &move_alias]
    );

    let outcome = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(v2.num_calls(), 3, "read until Active");
    assert_eq!(move_alias.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_version_still_pending_at_the_deadline_hands_back_its_state_without_moving_the_alias() {
    let pending =
        mock!(Client::get_function_configuration).match_requests(|r| r.qualifier() == Some("2")).then_output(|| {
            GetFunctionConfigurationOutput::builder().version("2").state(aws_sdk_lambda::types::State::Pending).build()
        });
    let move_alias = alias_to_v2();
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&pending, &move_alias]);
    let state = LambdaState::WaitingForVersion {
        code_sha256: "new-sha".into(),
        version: "2".into(),
        alias_version: Some("1".into()),
        alias_revision_id: Some("alias-rev-1".into()),
    };

    let outcome = resume(
        &target(&client),
        &plain(&unused_cloudwatch()),
        state.clone(),
        &ctx(),
        Deadline::after(Duration::from_secs(20)),
    )
    .await
    .unwrap();

    let Outcome::InProgress { state: handed, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(serde_json::from_value::<LambdaState>(handed).unwrap(), state);
    assert_eq!(move_alias.num_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_code_update_whose_answer_was_lost_is_recognised_by_its_codesha256() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let (sha2, sha3) = (sha.clone(), sha.clone());
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(move || latest(LastUpdateStatus::Successful, &sha2, "rev-2"))
        .output(move || latest(LastUpdateStatus::Successful, &sha3, "rev-2"))
        .build();
    // The first attempt was applied; its answer was lost; the retry meets the moved RevisionId.
    let update = mock!(Client::update_function_code)
        .sequence()
        .http_status(503, None)
        .error(|| {
            UpdateFunctionCodeError::PreconditionFailedException(
                PreconditionFailedException::builder().message("The Revision Id provided does not match").build(),
            )
        })
        .build();
    let (alias, v1, publish, move_alias) =
        (alias_at_v1(), version_1_has_old_code(), publish_v2(sha.clone()), alias_to_v2());
    let client =
        mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish, &move_alias]);

    let outcome = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!((update.num_calls(), publish.num_calls(), move_alias.num_calls()), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_publish_whose_answer_was_lost_does_not_publish_twice() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let (sha2, sha3) = (sha.clone(), sha.clone());
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(move || latest(LastUpdateStatus::Successful, &sha2, "rev-2"))
        .build();
    let publish = mock!(Client::publish_version).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(503).unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        )
    });
    // The lost attempt did publish version 2, with this code and this deployment's description.
    let listed = mock!(Client::list_versions_by_function).then_output(move || {
        aws_sdk_lambda::operation::list_versions_by_function::ListVersionsByFunctionOutput::builder()
            .versions(
                aws_sdk_lambda::types::FunctionConfiguration::builder().version("$LATEST").code_sha256(&sha3).build(),
            )
            .versions(
                aws_sdk_lambda::types::FunctionConfiguration::builder().version("1").code_sha256("old-sha").build(),
            )
            .versions(
                aws_sdk_lambda::types::FunctionConfiguration::builder()
                    .version("2")
                    .code_sha256(&sha3)
                    .description("crossdeploy: pipeline orders execution exec-1 deployment job-1")
                    .build(),
            )
            .build()
    });
    let (alias, v1, update, move_alias) = (alias_at_v1(), version_1_has_old_code(), update_code_ok(), alias_to_v2());
    let client = mock_client!(
        aws_sdk_lambda,
        RuleMode::MatchAny,
        [&alias, &v1, &latest_rule, &update, &publish, &listed, &move_alias]
    );

    let outcome = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(outputs["FunctionVersion"], "2");
    assert_eq!(publish.num_calls(), 1, "the retry found the version instead of publishing again");
    assert_eq!(listed.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_alias_move_whose_answer_was_lost_is_recognised_on_retry() {
    let pkg = package();
    let sha = pkg.sha256.clone();
    let sha2 = sha.clone();
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"))
        .output(move || latest(LastUpdateStatus::Successful, &sha2, "rev-2"))
        .build();
    let alias = mock!(Client::get_alias)
        .sequence()
        .output(|| {
            GetAliasOutput::builder().function_version("1").alias_arn(ALIAS_ARN).revision_id("alias-rev-1").build()
        })
        .output(|| {
            GetAliasOutput::builder()
                .function_version("2")
                .alias_arn(ALIAS_ARN)
                .revision_id("alias-rev-2")
                .description("crossdeploy: pipeline orders execution exec-1; deployment job-1; previous version 1")
                .build()
        })
        .build();
    let moved = mock!(Client::update_alias).sequence().http_status(503, None).error(alias_error_precondition).build();
    let (v1, update, publish) = (version_1_has_old_code(), update_code_ok(), publish_v2(sha.clone()));
    let client =
        mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish, &moved]);

    let outcome = deploy_package(
        &target(&client),
        &plain(&unused_cloudwatch()),
        &pkg,
        &ctx(),
        Deadline::after(Duration::from_secs(60)),
    )
    .await
    .unwrap();

    let Outcome::Succeeded { outputs, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!((outputs["FunctionVersion"].as_str(), outputs["PreviousVersion"].as_str()), ("2", "1"));
    assert_eq!(moved.num_calls(), 2);
}

/// A container image goes through the same gates: here a canary with its alarm, the image given
/// to Lambda by digest and the version published under the digest as its CodeSha256.
#[tokio::test(start_paused = true)]
async fn a_container_image_is_deployed_through_the_same_canary_and_alarm_gates() {
    let hex = "ab".repeat(32);
    let uri = format!("111111111111.dkr.ecr.us-east-1.amazonaws.com/orders@sha256:{hex}");
    let detail = format!(
        r#"{{"ImageURI":"111111111111.dkr.ecr.us-east-1.amazonaws.com/orders:v2","ImageDigest":"sha256:{hex}"}}"#
    );
    let image = lambda_alias_updater::parse_image_file(detail.as_bytes(), "imageDetail.json").unwrap();
    let pkg = Package::image(image);
    let image_latest = |sha: &str, rev: &str| {
        GetFunctionConfigurationOutput::builder()
            .package_type(aws_sdk_lambda::types::PackageType::Image)
            .last_update_status(LastUpdateStatus::Successful)
            .code_sha256(sha)
            .revision_id(rev)
            .build()
    };
    let (hex2, hex3) = (hex.clone(), hex.clone());
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .sequence()
        .output(move || image_latest("old-digest", "rev-0"))
        .output(move || image_latest(&hex2, "rev-2"))
        .build();
    let uri2 = uri.clone();
    let update = mock!(Client::update_function_code)
        .match_requests(move |r| {
            r.image_uri() == Some(uri2.as_str()) && r.zip_file().is_none() && r.revision_id() == Some("rev-0")
        })
        .then_output(|| UpdateFunctionCodeOutput::builder().last_update_status(LastUpdateStatus::InProgress).build());
    let ten_percent = mock!(Client::update_alias)
        .match_requests(|r| {
            r.function_version() == Some("1")
                && r.routing_config()
                    .and_then(|c| c.additional_version_weights())
                    .is_some_and(|w| w.get("2") == Some(&0.1))
        })
        .then_output(|| UpdateAliasOutput::builder().alias_arn(ALIAS_ARN).revision_id("alias-rev-2").build());
    let (alias, v1, publish) = (alias_at_v1(), version_1_has_old_code(), publish_v2(hex3));
    let client =
        mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &update, &publish, &ten_percent]);
    let cw = alarms(aws_sdk_cloudwatch::types::StateValue::Ok);
    let names = vec!["orders-errors".to_owned()];

    let outcome =
        deploy_package(&target(&client), &canary(&cw, &names), &pkg, &ctx(), Deadline::after(Duration::from_secs(30)))
            .await
            .unwrap();

    let Outcome::InProgress { state, .. } = outcome else { panic!("{outcome:?}") };
    let LambdaState::Shifting(s) = serde_json::from_value(state).unwrap() else { panic!() };
    assert_eq!((s.code_sha256.as_str(), s.new_version.as_str()), (hex.as_str(), "2"));
    assert_eq!((update.num_calls(), ten_percent.num_calls()), (1, 1));
}

/// An alarm already in ALARM stops an image deployment before anything changes, as a zip's.
#[tokio::test(start_paused = true)]
async fn an_alarm_in_alarm_stops_an_image_deployment_before_anything_changes() {
    let hex = "cd".repeat(32);
    let detail = format!(r#"{{"ImageURI":"111111111111.dkr.ecr.us-east-1.amazonaws.com/orders@sha256:{hex}"}}"#);
    let pkg = Package::image(lambda_alias_updater::parse_image_file(detail.as_bytes(), "imageDetail.json").unwrap());
    let never = mock!(Client::update_function_code).then_output(|| UpdateFunctionCodeOutput::builder().build());
    let (alias, v1) = (alias_at_v1(), version_1_has_old_code());
    let latest_rule = mock!(Client::get_function_configuration)
        .match_requests(|r| r.qualifier().is_none())
        .then_output(|| latest(LastUpdateStatus::Successful, "old-sha", "rev-0"));
    let client = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, [&alias, &v1, &latest_rule, &never]);
    let cw = alarms(aws_sdk_cloudwatch::types::StateValue::Alarm);
    let names = vec!["orders-errors".to_owned()];
    let err =
        deploy_package(&target(&client), &canary(&cw, &names), &pkg, &ctx(), Deadline::after(Duration::from_secs(30)))
            .await
            .unwrap_err();
    assert!(matches!(err, UpdaterError::AlarmBeforeStart { .. }), "{err}");
    assert_eq!(never.num_calls(), 0);
}

/// What the permissions preflight asks for: the function's calls on its ARN, the alarms, and
/// for a container image its repository.
#[test]
fn the_preflight_asks_for_every_call_of_the_deployment_on_its_resources() {
    use lambda_alias_updater::{needed_calls, staging_bucket, Staging};
    let role: crossdeploy_protocol::RoleArn = "arn:aws:iam::222222222222:role/crossdeploy-target".parse().unwrap();
    let spec = crossdeploy_protocol::LambdaSpec {
        function_name: "arn:aws:lambda:eu-west-1:222222222222:function:app-orders".into(),
        alias: "live".into(),
        artifact_path: None,
        image_file: Some("imageDetail.json".into()),
        strategy: Default::default(),
    };
    let hex = "ab".repeat(32);
    let detail = format!(r#"{{"ImageURI":"111111111111.dkr.ecr.eu-west-1.amazonaws.com/orders@sha256:{hex}"}}"#);
    let image = Package::image(lambda_alias_updater::parse_image_file(detail.as_bytes(), "imageDetail.json").unwrap());
    let staging = Staging {
        s3: aws_sdk_s3::Client::from_conf(aws_sdk_s3::Config::builder().behavior_version_latest().build()),
        bucket: staging_bucket("222222222222", "eu-west-1"),
        account: "222222222222".into(),
    };
    let needed = needed_calls(&role, "eu-west-1", &spec, &["orders-errors".into()], &image, &staging);
    let shown: Vec<(String, String)> = needed.iter().map(|n| (n.action.to_owned(), n.resource.clone())).collect();
    let function = "arn:aws:lambda:eu-west-1:222222222222:function:app-orders".to_owned();
    for action in ["lambda:UpdateFunctionCode", "lambda:PublishVersion", "lambda:UpdateAlias", "lambda:GetAlias"] {
        assert!(shown.contains(&(action.to_owned(), function.clone())), "{action}: {shown:?}");
    }
    assert!(shown.contains(&("cloudwatch:DescribeAlarms".to_owned(), "*".to_owned())));
    let repository = "arn:aws:ecr:eu-west-1:111111111111:repository/orders".to_owned();
    assert!(shown.contains(&("ecr:BatchGetImage".to_owned(), repository.clone())), "{shown:?}");
    assert!(shown.contains(&("ecr:GetDownloadUrlForLayer".to_owned(), repository)));
    assert!(!shown.iter().any(|(a, _)| a.starts_with("s3:")), "an image is not staged: {shown:?}");
}
