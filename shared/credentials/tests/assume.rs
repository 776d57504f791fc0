//! AssumeRole calls as STS sees them, with aws-smithy-mocks.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::operation::assume_role::{AssumeRoleError, AssumeRoleOutput};
use aws_sdk_sts::types::Credentials;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::DateTime;
use crossdeploy_credentials::{AllowList, CredentialsError, TargetSessions};
use crossdeploy_protocol::{FailureType, RoleArn};
use std::time::{Duration, SystemTime};

const ROLE: &str = "arn:aws:iam::222222222222:role/crossdeploy-target";

fn base() -> SdkConfig {
    SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("eu-west-1")).build()
}

fn credentials(valid_for: Duration) -> Credentials {
    Credentials::builder()
        .access_key_id("ASIATARGET")
        .secret_access_key("target-secret")
        .session_token("target-token")
        .expiration(DateTime::from(SystemTime::now() + valid_for))
        .build()
        .unwrap()
}

fn role() -> RoleArn {
    ROLE.parse().unwrap()
}

fn soon() -> crossdeploy_aws::Deadline {
    crossdeploy_aws::Deadline::after(Duration::from_secs(30))
}

#[tokio::test]
async fn a_runs_session_is_reused_by_its_continuations_with_no_second_sts_call() {
    let rule = mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(|r| {
            r.role_arn() == Some(ROLE)
                && r.external_id() == Some("ext-123")
                && r.role_session_name() == Some("crossdeploy-exec-1")
                && r.source_identity() == Some("crossdeploy-exec-1")
        })
        .then_output(|| AssumeRoleOutput::builder().credentials(credentials(Duration::from_secs(3600))).build());
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
    let sessions = TargetSessions::new(sts, base(), AllowList::parse(ROLE), Some("ext-123".into()));

    let first = sessions.assume(&role(), None, "exec-1", soon()).await.unwrap();
    let again = sessions.assume(&role(), Some("us-east-2"), "exec-1", soon()).await.unwrap();

    assert_eq!(rule.num_calls(), 1, "the run's continuation must not call STS");
    assert_eq!(first.credentials.access_key_id(), "ASIATARGET");
    assert_eq!(first.config.region().map(|r| r.as_ref()), Some("eu-west-1"));
    assert_eq!(again.config.region().map(|r| r.as_ref()), Some("us-east-2"));
}

/// CloudTrail in the target account names the run that acted: two executions deploying through
/// one warm updater assume the role with two source identities.
#[tokio::test]
async fn two_runs_through_one_warm_updater_get_sessions_of_their_own() {
    let identities = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = identities.clone();
    let rule = mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(move |r| {
            let (name, identity) = (r.role_session_name().unwrap_or_default(), r.source_identity().unwrap_or_default());
            seen.lock().unwrap().push((name.to_owned(), identity.to_owned()));
            true
        })
        .then_output(|| AssumeRoleOutput::builder().credentials(credentials(Duration::from_secs(3600))).build());
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
    let sessions = TargetSessions::new(sts, base(), AllowList::parse(ROLE), Some("ext-123".into()));
    for execution in ["exec-1", "exec-2", "exec-1", "rollback-exec-1-job"] {
        sessions.assume(&role(), None, execution, soon()).await.unwrap();
    }
    assert_eq!(rule.num_calls(), 3, "exec-1, exec-2 and the rollback each assume once");
    let identities = identities.lock().unwrap().clone();
    let expected: Vec<(String, String)> =
        ["crossdeploy-exec-1", "crossdeploy-exec-2", "crossdeploy-rollback-exec-1-job"]
            .iter()
            .map(|n| (n.to_string(), n.to_string()))
            .collect();
    assert_eq!(identities, expected);
}

#[tokio::test]
async fn a_session_close_to_expiry_is_renewed() {
    let rule = mock!(aws_sdk_sts::Client::assume_role)
        .then_output(|| AssumeRoleOutput::builder().credentials(credentials(Duration::from_secs(10 * 60))).build());
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
    let sessions = TargetSessions::new(sts, base(), AllowList::parse(ROLE), None);
    sessions.assume(&role(), None, "a", soon()).await.unwrap();
    sessions.assume(&role(), None, "b", soon()).await.unwrap();
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn a_role_off_the_allow_list_is_refused_before_any_sts_call() {
    let rule = mock!(aws_sdk_sts::Client::assume_role)
        .then_output(|| AssumeRoleOutput::builder().credentials(credentials(Duration::from_secs(3600))).build());
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
    let sessions =
        TargetSessions::new(sts, base(), AllowList::parse("arn:aws:iam::333333333333:role/crossdeploy-target"), None);
    let err = sessions.assume(&role(), None, "a", soon()).await.unwrap_err();
    assert!(matches!(err, CredentialsError::NotAllowed { .. }));
    assert_eq!(err.failure_type(), FailureType::PermissionError);
    assert!(err.to_string().contains(ROLE), "{err}");
    assert!(err.to_string().contains("CROSSDEPLOY_ALLOWED_TARGET_ROLES"), "{err}");
    assert_eq!(rule.num_calls(), 0);
}

#[tokio::test]
async fn access_denied_by_sts_is_a_permission_error_naming_the_role() {
    let rule = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
        AssumeRoleError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("User is not authorized to perform: sts:AssumeRole")
                .build(),
        )
    });
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
    let sessions = TargetSessions::new(sts, base(), AllowList::parse(ROLE), None);
    let err = sessions.assume(&role(), None, "a", soon()).await.unwrap_err();
    assert_eq!(err.failure_type(), FailureType::PermissionError);
    let msg = err.to_string();
    assert!(msg.contains(ROLE) && msg.contains("AccessDenied") && msg.contains("222222222222"), "{msg}");
}

#[tokio::test]
async fn a_transient_sts_fault_is_retried_and_the_role_assumed() {
    let failing = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
        AssumeRoleError::generic(ErrorMetadata::builder().code("InternalFailure").message("internal error").build())
    });
    let ok = mock!(aws_sdk_sts::Client::assume_role)
        .then_output(|| AssumeRoleOutput::builder().credentials(credentials(Duration::from_secs(3600))).build());
    let sts = mock_client!(aws_sdk_sts, RuleMode::Sequential, [&failing, &ok]);
    let sessions = TargetSessions::new(sts, base(), AllowList::parse(ROLE), None);
    sessions.assume(&role(), None, "a", soon()).await.unwrap();
    assert_eq!((failing.num_calls(), ok.num_calls()), (1, 1));
}
