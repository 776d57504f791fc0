//! Container-image functions against the local AWS: an image named by an ECR source action's
//! imageDetail.json deployed by digest, redeployed without a change, and the mismatches (an image
//! for a zip function, a zip for an image function) refused before anything changes.
//!
//! moto resolves an image only in the function's own account (MOTO_LAMBDA_STUB_ECR=false makes it
//! look the digest up in its ECR, as Lambda does), so the images are pushed to the target
//! account's registry here; in AWS they would be in the shared services account's repository,
//! whose policy the README describes.

use aws_config::SdkConfig;
use crossdeploy_local::accounts::{self, function_state, FunctionState, TARGET_ACCOUNT};
use crossdeploy_local::ecs::aws_cli;
use crossdeploy_local::fixtures::{lambda_package, zip_of};
use crossdeploy_local::{Answer, LocalAws};
use crossdeploy_protocol::ArtifactLocation;
use pipeline_job_worker::handle_invoke_event;
use std::time::Duration;

const FUNCTION: &str = "orders-image";
const ALIAS: &str = "live";
const REPOSITORY: &str = "orders";

fn repository_uri() -> String {
    format!("{TARGET_ACCOUNT}.dkr.ecr.{}.amazonaws.com/{REPOSITORY}", accounts::REGION)
}

/// Pushes an image manifest (distinct per `marker`) and returns its digest (`sha256:<hex>`).
async fn push_image(local: &LocalAws, marker: &str) -> String {
    // moto's digest covers the config and layers: make them the marker's own.
    let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1000, "digest": format!("sha256:{hex:0>64}")},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 10, "digest": format!("sha256:{hex:0>64}")}],
        "annotations": {"build": marker},
    })
    .to_string();
    aws_cli(
        &local.moto.endpoint,
        &local.target,
        &[
            "ecr",
            "put-image",
            "--repository-name",
            REPOSITORY,
            "--image-tag",
            marker,
            "--image-manifest",
            &manifest,
            "--query",
            "image.imageId.imageDigest",
        ],
    )
    .await
    .unwrap()
}

async fn spawn_local() -> (LocalAws, String) {
    let local =
        LocalAws::start_with_moto_env(&[("MOTO_LAMBDA_STUB_ECR", "false")]).await.expect("the local AWS starts");
    aws_cli(&local.moto.endpoint, &local.target, &["ecr", "create-repository", "--repository-name", REPOSITORY])
        .await
        .unwrap();
    let first = push_image(&local, "v1").await;
    create_image_function(&local.target, &format!("{}@{first}", repository_uri())).await;
    accounts::create_function(&local.target, "orders-zip", ALIAS, lambda_package("v1")).await.unwrap();
    (local, first)
}

/// An image function as a team would have it: version 1 published, the alias on it.
async fn create_image_function(target: &SdkConfig, image_uri: &str) {
    let iam = aws_sdk_iam::Client::new(target);
    let role = iam
        .create_role()
        .role_name(format!("{FUNCTION}-exec"))
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
        .unwrap();
    let lambda = aws_sdk_lambda::Client::new(target);
    lambda
        .create_function()
        .function_name(FUNCTION)
        .package_type(aws_sdk_lambda::types::PackageType::Image)
        .role(role.role.unwrap().arn)
        .code(aws_sdk_lambda::types::FunctionCode::builder().image_uri(image_uri).build())
        .send()
        .await
        .unwrap();
    let version = lambda.publish_version().function_name(FUNCTION).send().await.unwrap().version.unwrap();
    lambda.create_alias().function_name(FUNCTION).name(ALIAS).function_version(version).send().await.unwrap();
}

fn params(function: &str, extra: &[(&str, &str)]) -> String {
    let mut p = serde_json::json!({
        "Kind": "Lambda",
        "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT),
        "FunctionName": function,
        "Alias": ALIAS,
    });
    for (k, v) in extra {
        p[*k] = (*v).into();
    }
    p.to_string()
}

/// An ECR source action's output artifact: imageDetail.json.
fn image_detail(digest: &str) -> Vec<u8> {
    let detail = serde_json::json!({
        "ImageSizeInBytes": "1024",
        "ImageDigest": digest,
        "Version": "1.0",
        "RegistryId": TARGET_ACCOUNT,
        "RepositoryName": REPOSITORY,
        "ImageURI": format!("{}@{digest}", repository_uri()),
        "ImageTags": ["v2"],
    });
    zip_of(&[("imageDetail.json", detail.to_string().as_bytes())])
}

async fn run(local: &LocalAws, user_parameters: &str, artifact: ArtifactLocation) -> Vec<Answer> {
    let event = local.job("DeployLambda", user_parameters, artifact);
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

async fn state(local: &LocalAws, function: &str) -> FunctionState {
    function_state(&local.target, function, ALIAS).await.unwrap()
}

#[tokio::test]
async fn an_image_is_deployed_by_digest_and_redeploying_it_changes_nothing() {
    let (local, _) = spawn_local().await;
    let digest = push_image(&local, "v2").await;
    let hex = digest.trim_start_matches("sha256:").to_owned();
    let artifact = local.upload("orders/Source/image.zip", image_detail(&digest)).await.unwrap();
    let with_image = params(FUNCTION, &[("ImageFile", "imageDetail.json")]);

    let answers = run(&local, &with_image, artifact.clone()).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    let Answer::Success { output_variables, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(output_variables["FunctionVersion"], "2", "{answers:?}");
    assert_eq!(output_variables["PreviousVersion"], "1");
    assert_eq!(output_variables["CodeSha256"], hex);
    assert_eq!(output_variables["ImageUri"], format!("{}@{digest}", repository_uri()));
    assert_eq!(output_variables["ResolvedImageUri"], format!("{}@{digest}", repository_uri()));
    let after = state(&local, FUNCTION).await;
    assert_eq!((after.alias_version.as_str(), after.alias_version_sha.as_str()), ("2", hex.as_str()));
    assert!(after.alias_routing.is_empty());

    // The same image again: nothing published, the alias where it is.
    let again = run(&local, &with_image, artifact).await;
    let Answer::Success { output_variables, .. } = &again[0] else { panic!("{again:?}") };
    assert_eq!(output_variables["FunctionVersion"], "2");
    assert_eq!(state(&local, FUNCTION).await, after);
}

#[tokio::test]
async fn an_image_for_a_zip_function_and_a_zip_for_an_image_function_are_refused_before_anything_changes() {
    let (local, _) = spawn_local().await;
    let digest = push_image(&local, "v3").await;
    let image_artifact = local.upload("orders/Source/image.zip", image_detail(&digest)).await.unwrap();
    let zip_artifact = local.upload("orders/Build/lambda.zip", lambda_package("v2")).await.unwrap();
    let zip_before = state(&local, "orders-zip").await;
    let image_before = state(&local, FUNCTION).await;

    let answers = run(&local, &params("orders-zip", &[("ImageFile", "imageDetail.json")]), image_artifact).await;
    let Answer::Failure { failure_type, message, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "ConfigurationError", "{message}");
    assert!(message.contains("orders-zip") && message.contains("PackageType Zip"), "{message}");

    let answers = run(&local, &params(FUNCTION, &[]), zip_artifact).await;
    let Answer::Failure { failure_type, message, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "ConfigurationError", "{message}");
    assert!(message.contains("container-image function") && message.contains("ImageFile"), "{message}");

    assert_eq!(state(&local, "orders-zip").await, zip_before);
    assert_eq!(state(&local, FUNCTION).await, image_before);
}

#[tokio::test]
async fn an_image_named_by_tag_alone_is_refused_naming_why() {
    let (local, _) = spawn_local().await;
    let before = state(&local, FUNCTION).await;
    let detail = serde_json::json!({"ImageURI": format!("{}:latest", repository_uri())}).to_string();
    let artifact =
        local.upload("orders/Source/tag.zip", zip_of(&[("imageDetail.json", detail.as_bytes())])).await.unwrap();
    let answers = run(&local, &params(FUNCTION, &[("ImageFile", "imageDetail.json")]), artifact).await;
    let Answer::Failure { failure_type, message, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "ConfigurationError", "{message}");
    assert!(message.contains("by tag only") && message.contains("digest"), "{message}");
    assert_eq!(state(&local, FUNCTION).await, before);
}
