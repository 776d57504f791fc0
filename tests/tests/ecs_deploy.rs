//! Whole ECS deployments across accounts against the local AWS: the shared services account
//! 111111111111 rolls a Fargate service in 222222222222 out to a new revision.

use aws_sdk_ecs::types::TaskDefinition;
use crossdeploy_local::accounts::{self, TARGET_ACCOUNT};
use crossdeploy_local::ecs::{self, ServiceState};
use crossdeploy_local::fixtures::zip_of;
use crossdeploy_local::{Answer, LocalAws};
use crossdeploy_protocol::ArtifactLocation;
use pipeline_job_worker::handle_invoke_event;
use std::time::Duration;

const NEW_IMAGE: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:abc123";

async fn spawn_local() -> (LocalAws, String) {
    let local = LocalAws::start().await.expect("the local AWS starts");
    let first =
        ecs::create_fargate_service(&local.moto.endpoint, &local.target).await.expect("the Fargate service is created");
    (local, first)
}

fn params(extra: &[(&str, &str)]) -> String {
    let mut p = serde_json::json!({
        "Kind": "Ecs",
        "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT),
        "ClusterName": ecs::CLUSTER,
        "ServiceName": ecs::SERVICE,
    });
    for (k, v) in extra {
        p[*k] = (*v).into();
    }
    p.to_string()
}

fn image_definitions(container: &str, image: &str) -> Vec<u8> {
    zip_of(&[("imagedefinitions.json", format!(r#"[{{"name":"{container}","imageUri":"{image}"}}]"#).as_bytes())])
}

async fn run(local: &LocalAws, user_parameters: &str, artifact: ArtifactLocation) -> Vec<Answer> {
    let event = local.job("DeployEcs", user_parameters, artifact);
    handle_invoke_event(
        event.clone(),
        local.worker(),
        crossdeploy_aws::Deadline::after(Duration::from_secs(120)),
        "test-run",
    )
    .await
    .unwrap();
    local.answers_for(&event)
}

/// The old revision as the new one must be: the new image, the new revision's read-only fields.
fn expected_clone(old: &TaskDefinition, new: &TaskDefinition) -> TaskDefinition {
    let mut expected = old.clone();
    for c in expected.container_definitions.iter_mut().flatten() {
        if c.name() == Some("web") {
            c.image = Some(NEW_IMAGE.to_owned());
        }
    }
    expected.task_definition_arn = new.task_definition_arn.clone();
    expected.revision = new.revision;
    expected.status = new.status.clone();
    expected.requires_attributes = new.requires_attributes.clone();
    expected.compatibilities = new.compatibilities.clone();
    expected.registered_at = new.registered_at;
    expected.registered_by = new.registered_by.clone();
    expected.deregistered_at = new.deregistered_at;
    expected.delete_requested_at = new.delete_requested_at;
    expected
}

#[tokio::test]
async fn a_pipeline_job_rolls_the_service_out_to_a_revision_that_keeps_every_field() {
    let (local, first) = spawn_local().await;
    let artifact = local.upload("orders/BuildOutput/img.zip", image_definitions("web", NEW_IMAGE)).await.unwrap();

    let answers = run(&local, &params(&[]), artifact.clone()).await;

    assert_eq!(answers.len(), 1, "{answers:?}");
    let Answer::Success { output_variables: outputs, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(outputs.len(), 4, "{outputs:?}");
    assert!(outputs["ServiceDeploymentArn"].contains(":service-deployment/prod/web/"), "{outputs:?}");
    let new = outputs["TaskDefinitionArn"].clone();
    assert_eq!(new, first.replace(":1", ":2"));
    assert_eq!(outputs["PreviousTaskDefinitionArn"], first);
    assert!(outputs["DeploymentId"].starts_with("ecs-svc/"), "{outputs:?}");
    assert_eq!(
        ecs::service_state(&local.target).await.unwrap().task_definition,
        new,
        "the service points at the new revision"
    );

    let (old_td, old_tags) = ecs::task_definition(&local.target, &first).await.unwrap();
    let (new_td, new_tags) = ecs::task_definition(&local.target, &new).await.unwrap();
    assert_eq!(new_td, expected_clone(&old_td, &new_td), "every field but the image is the old revision's");
    assert!(old_tags.iter().all(|t| new_tags.contains(t)), "tags carried: {old_tags:?} -> {new_tags:?}");
    assert!(new_tags
        .iter()
        .any(|t| t.key() == Some("crossdeploy:previous-task-definition") && t.value() == Some(first.as_str())));

    // The same images again: nothing registered, the same revision; this deployment changed
    // nothing, so what stood before it is what runs (a rollback of it restores nothing).
    let again = run(&local, &params(&[]), artifact).await;
    let Answer::Success { output_variables: outputs2, summary, .. } = &again[0] else { panic!("{again:?}") };
    assert_eq!(outputs2["TaskDefinitionArn"], new);
    assert_eq!(outputs2["PreviousTaskDefinitionArn"], new);
    assert!(summary.as_deref().unwrap_or_default().contains("nothing changed"), "{summary:?}");
    assert_eq!(ecs::service_state(&local.target).await.unwrap().revisions.len(), 2);
}

#[tokio::test]
async fn an_image_detail_file_moves_the_named_container() {
    let (local, first) = spawn_local().await;
    let detail = format!(r#"{{"ImageSizeInBytes":"50801513","ImageURI":"{NEW_IMAGE}","ImageTags":["abc123"]}}"#);
    let artifact =
        local.upload("orders/Source/detail.zip", zip_of(&[("imageDetail.json", detail.as_bytes())])).await.unwrap();

    let answers = run(&local, &params(&[("FileName", "imageDetail.json"), ("ContainerName", "web")]), artifact).await;

    let Answer::Success { output_variables, .. } = &answers[0] else { panic!("{answers:?}") };
    let (td, _) = ecs::task_definition(&local.target, &output_variables["TaskDefinitionArn"]).await.unwrap();
    assert_eq!(td.container_definitions()[0].image(), Some(NEW_IMAGE));
    assert_eq!(
        td.container_definitions()[1].image(),
        Some("public.ecr.aws/envoy:v1.30"),
        "containers not named keep their image"
    );
    assert_eq!(output_variables["PreviousTaskDefinitionArn"], first);
}

/// Each bad input: one failure answer naming the problem; nothing registered, nothing updated.
#[tokio::test]
async fn bad_input_fails_the_job_once_and_registers_and_updates_nothing() {
    let (local, _) = spawn_local().await;
    let before: ServiceState = ecs::service_state(&local.target).await.unwrap();
    let file = |name: &str, body: &[u8]| zip_of(&[(name, body)]);
    let big = format!(r#"[{{"name":"web","imageUri":"{NEW_IMAGE}","padding":"{}"}}]"#, "x".repeat(110 * 1024));
    // (case, artifact bytes, UserParameters, failure type, what the message must say)
    type Case<'a> = (&'a str, Vec<u8>, String, &'a str, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "imagedefinitions not JSON",
            file("imagedefinitions.json", b"web=abc123"),
            params(&[]),
            "ConfigurationError",
            vec!["imagedefinitions.json is not JSON"],
        ),
        ("empty list", file("imagedefinitions.json", b"[]"), params(&[]), "ConfigurationError", vec!["empty list"]),
        (
            "entry without imageUri",
            file("imagedefinitions.json", br#"[{"name":"web"}]"#),
            params(&[]),
            "ConfigurationError",
            vec!["no `imageUri`"],
        ),
        (
            "file over 100 KB",
            file("imagedefinitions.json", big.as_bytes()),
            params(&[]),
            "ConfigurationError",
            vec!["imagedefinitions.json", "100 KB"],
        ),
        (
            "unknown container",
            image_definitions("api", NEW_IMAGE),
            params(&[]),
            "ConfigurationError",
            vec!["`api`", "web, sidecar"],
        ),
        (
            "imageDetail.json without ContainerName",
            file("imageDetail.json", br#"{"ImageURI":"x"}"#),
            params(&[("FileName", "imageDetail.json")]),
            "ConfigurationError",
            vec!["`ContainerName`"],
        ),
        (
            "image file not in the artifact",
            file("other.json", b"[]"),
            params(&[]),
            "ConfigurationError",
            vec!["`imagedefinitions.json` is not in the input artifact", "other.json"],
        ),
        (
            "missing service",
            image_definitions("web", NEW_IMAGE),
            params(&[("ServiceName", "api")]),
            "ConfigurationError",
            vec!["service api in cluster prod of account 222222222222 does not exist"],
        ),
        (
            "missing cluster",
            image_definitions("web", NEW_IMAGE),
            params(&[("ClusterName", "staging")]),
            "ConfigurationError",
            vec!["cluster staging does not exist in account 222222222222"],
        ),
        (
            "role off the allow-list",
            image_definitions("web", NEW_IMAGE),
            params(&[("TargetRoleArn", "arn:aws:iam::444444444444:role/crossdeploy-target")]),
            "PermissionError",
            vec!["allow-list"],
        ),
    ];
    for (i, (case, artifact_bytes, user_parameters, failure_type, needles)) in cases.into_iter().enumerate() {
        let artifact = local.upload(&format!("orders/BuildOutput/bad-{i}.zip"), artifact_bytes).await.unwrap();
        let answers = run(&local, &user_parameters, artifact).await;
        assert_eq!(answers.len(), 1, "{case}: {answers:?}");
        let Answer::Failure { failure_type: got, message, .. } = &answers[0] else { panic!("{case}: {answers:?}") };
        assert_eq!(got, failure_type, "{case}: {message}");
        for needle in needles {
            assert!(message.contains(needle), "{case}: `{needle}` not in: {message}");
        }
        assert_eq!(
            ecs::service_state(&local.target).await.unwrap(),
            before,
            "{case}: something was registered or updated"
        );
    }
}

#[tokio::test]
async fn the_real_binaries_roll_the_service_out_under_cargo_lambda() {
    let (local, first) = spawn_local().await;
    let artifact = local.upload("orders/BuildOutput/img.zip", image_definitions("web", NEW_IMAGE)).await.unwrap();
    let event = local.job("DeployEcs", &params(&[]), artifact);
    let (mut lambda, logs) = local.run_functions().await.expect("the functions run under cargo-lambda");

    let (function_error, body) = lambda
        .invoke(&local.shared, "pipeline-job-worker", event.to_string().as_bytes(), Duration::from_secs(120))
        .await
        .unwrap();

    assert!(function_error.is_none(), "{}", String::from_utf8_lossy(&body));
    let answers = local.answers_for(&event);
    let Answer::Success { output_variables, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(output_variables["PreviousTaskDefinitionArn"], first);
    assert_eq!(ecs::service_state(&local.target).await.unwrap().task_definition, output_variables["TaskDefinitionArn"]);
    // The worker's metric of the deployment's end, in the embedded metric format (its log is its stdout).
    let worker_log = logs.iter().find(|l| l.to_string_lossy().contains("pipeline-job-worker")).unwrap();
    let metrics = crossdeploy_local::emf_lines(worker_log).unwrap();
    let ended = metrics.iter().find(|m| m["Deployments"] == 1.0).unwrap_or_else(|| panic!("{metrics:?}"));
    assert_eq!((ended["Kind"].as_str(), ended["Outcome"].as_str()), (Some("Ecs"), Some("Succeeded")), "{ended}");
    assert!(ended["DeploymentDuration"].as_f64().is_some_and(|d| d > 0.0), "{ended}");
}
