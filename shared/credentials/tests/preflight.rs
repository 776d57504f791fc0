//! The permissions preflight with aws-smithy-mocks (moto has no policy simulation).

use aws_sdk_iam::operation::simulate_principal_policy::SimulatePrincipalPolicyOutput;
use aws_sdk_iam::types::{EvaluationResult, PolicyEvaluationDecisionType};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use crossdeploy_aws::Deadline;
use crossdeploy_credentials::{simulate, Needed, Preflight};
use crossdeploy_protocol::RoleArn;
use std::time::Duration;

const ROLE: &str = "arn:aws:iam::222222222222:role/crossdeploy-target";
const FUNCTION: &str = "arn:aws:lambda:eu-west-1:222222222222:function:app-orders";

fn role() -> RoleArn {
    ROLE.parse().unwrap()
}

fn result(action: &str, resource: &str, decision: PolicyEvaluationDecisionType) -> EvaluationResult {
    EvaluationResult::builder()
        .eval_action_name(action)
        .eval_resource_name(resource)
        .eval_decision(decision)
        .build()
        .unwrap()
}

fn needed() -> Vec<Needed> {
    vec![
        Needed::new("lambda:UpdateFunctionCode", FUNCTION),
        Needed::new("lambda:PublishVersion", FUNCTION),
        Needed::new("cloudwatch:DescribeAlarms", "*"),
        Needed::new("ecs:TagResource", "arn:aws:ecs:eu-west-1:222222222222:task-definition/app-web:8")
            .with("ecs:CreateAction", "RegisterTaskDefinition"),
    ]
}

#[tokio::test]
async fn a_missing_permission_fails_before_any_change_naming_each_action_and_resource() {
    let per_resource = mock!(aws_sdk_iam::Client::simulate_principal_policy)
        .match_requests(|r| r.policy_source_arn() == Some(ROLE) && r.resource_arns() == [FUNCTION])
        .then_output(|| {
            SimulatePrincipalPolicyOutput::builder()
                .evaluation_results(result(
                    "lambda:UpdateFunctionCode",
                    FUNCTION,
                    PolicyEvaluationDecisionType::Allowed,
                ))
                .evaluation_results(result(
                    "lambda:PublishVersion",
                    FUNCTION,
                    PolicyEvaluationDecisionType::ImplicitDeny,
                ))
                .build()
        });
    let tagging = mock!(aws_sdk_iam::Client::simulate_principal_policy)
        .match_requests(|r| {
            r.context_entries().first().is_some_and(|c| {
                c.context_key_name() == Some("ecs:CreateAction")
                    && c.context_key_values() == ["RegisterTaskDefinition".to_owned()]
            }) && r.action_names() == ["ecs:TagResource".to_owned()]
        })
        .then_output(|| {
            SimulatePrincipalPolicyOutput::builder()
                .evaluation_results(result(
                    "ecs:TagResource",
                    "arn:aws:ecs:eu-west-1:222222222222:task-definition/app-web:8",
                    PolicyEvaluationDecisionType::ExplicitDeny,
                ))
                .build()
        });
    let rest = mock!(aws_sdk_iam::Client::simulate_principal_policy).then_output(|| {
        SimulatePrincipalPolicyOutput::builder()
            .evaluation_results(result("cloudwatch:DescribeAlarms", "*", PolicyEvaluationDecisionType::Allowed))
            .build()
    });
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&per_resource, &tagging, &rest]);

    let e = simulate(&iam, &role(), &needed(), Deadline::after(Duration::from_secs(30))).await.unwrap_err();
    assert_eq!(
        e.missing,
        vec![
            ("lambda:PublishVersion".to_owned(), FUNCTION.to_owned(), "implicitDeny".to_owned()),
            (
                "ecs:TagResource".to_owned(),
                "arn:aws:ecs:eu-west-1:222222222222:task-definition/app-web:8".to_owned(),
                "explicitDeny".to_owned()
            ),
        ]
    );
    let message = e.to_string();
    assert!(message.contains("lambda:PublishVersion on arn:aws:lambda") && message.contains(ROLE), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");
    // One simulation per resource: the function, "*", and the task definition with its context.
    assert_eq!((per_resource.num_calls(), tagging.num_calls(), rest.num_calls()), (1, 1, 1));
}

#[tokio::test]
async fn every_call_allowed_lets_the_deployment_go_on() {
    let all = mock!(aws_sdk_iam::Client::simulate_principal_policy).then_output(|| {
        SimulatePrincipalPolicyOutput::builder()
            .evaluation_results(result("lambda:UpdateFunctionCode", FUNCTION, PolicyEvaluationDecisionType::Allowed))
            .build()
    });
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&all]);
    let found = simulate(&iam, &role(), &needed(), Deadline::after(Duration::from_secs(30))).await.unwrap();
    assert_eq!(found, Preflight::Allowed);
}

#[tokio::test]
async fn a_simulation_denied_or_failing_is_reported_unavailable_and_the_deployment_goes_on() {
    let denied = mock!(aws_sdk_iam::Client::simulate_principal_policy).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(403).unwrap(),
            aws_smithy_types::body::SdkBody::from(
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform: iam:SimulatePrincipalPolicy</Message></Error></ErrorResponse>",
            ),
        )
    });
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&denied]);
    let found = simulate(&iam, &role(), &needed(), Deadline::after(Duration::from_secs(30))).await.unwrap();
    let Preflight::Unavailable(why) = found else { panic!("{found:?}") };
    assert!(why.contains("may not simulate its own policies"), "{why}");
    assert_eq!(denied.num_calls(), 1, "never retried at the deployment's expense");

    // moto answers 500 (not implemented): unavailable at once.
    let broken = mock!(aws_sdk_iam::Client::simulate_principal_policy).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(500).unwrap(),
            aws_smithy_types::body::SdkBody::from("<!doctype html><title>500 Internal Server Error</title>"),
        )
    });
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&broken]);
    let found = simulate(&iam, &role(), &needed(), Deadline::after(Duration::from_secs(30))).await.unwrap();
    assert!(matches!(found, Preflight::Unavailable(_)), "{found:?}");
    assert_eq!(broken.num_calls(), 1);
}
