//! Real-size packages against the local AWS: a 45 MB package uploaded directly, a package over
//! Lambda's 50 MB direct upload limit staged in the target account's own bucket (the shared
//! artifact bucket read only by crossdeploy's own principal), the ECS updater reading a small file
//! out of a large artifact by ranged reads, and the limits refused before anything changes.

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use crossdeploy_local::accounts::{self, function_state, FunctionState, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{code_sha256, incompressible, large_lambda_package, zip_stored};
use crossdeploy_local::{ecs, Answer, LocalAws};
use crossdeploy_protocol::ArtifactLocation;
use pipeline_job_worker::handle_invoke_event;
use std::path::{Path, PathBuf};
use std::time::Duration;

const FUNCTION: &str = "orders-api";
const ALIAS: &str = "live";
const MB: usize = 1024 * 1024;

/// The local AWS with moto's access log on, and `orders-api` (alias `live` -> version 1).
async fn spawn_local() -> (LocalAws, PathBuf) {
    let log = std::env::temp_dir().join(format!("crossdeploy-access-{}-{}.jsonl", std::process::id(), nanos()));
    let local = LocalAws::start_with_moto_env(&[("CROSSDEPLOY_MOTO_ACCESS_LOG", log.to_str().unwrap())])
        .await
        .expect("the local AWS starts");
    accounts::create_function(&local.target, FUNCTION, ALIAS, crossdeploy_local::fixtures::lambda_package("v1"))
        .await
        .unwrap();
    (local, log)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// The target account's staging bucket, as infra/target-account.yaml makes it (versioned).
async fn create_staging_bucket(target: &SdkConfig) -> String {
    let bucket = lambda_alias_updater::staging_bucket(TARGET_ACCOUNT, accounts::REGION);
    let s3 = aws_sdk_s3::Client::new(target);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    bucket
}

fn params(artifact_path: Option<&str>) -> String {
    let mut p = serde_json::json!({
        "Kind": "Lambda",
        "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT),
        "FunctionName": FUNCTION,
        "Alias": ALIAS,
    });
    if let Some(path) = artifact_path {
        p["ArtifactPath"] = path.into();
    }
    p.to_string()
}

async fn run(local: &LocalAws, action: &str, user_parameters: &str, artifact: ArtifactLocation) -> Vec<Answer> {
    let event = local.job(action, user_parameters, artifact);
    handle_invoke_event(
        event.clone(),
        local.worker(),
        crossdeploy_aws::Deadline::after(Duration::from_secs(300)),
        "test-run",
    )
    .await
    .unwrap();
    local.answers_for(&event)
}

async fn state(local: &LocalAws) -> FunctionState {
    function_state(&local.target, FUNCTION, ALIAS).await.unwrap()
}

/// One request as moto's access log records it.
#[derive(Debug, serde::Deserialize)]
struct Access {
    method: String,
    path: String,
    range: Option<String>,
    key_id: Option<String>,
}

fn accesses(log: &Path) -> Vec<Access> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn to_bucket<'a>(log: &'a [Access], bucket: &str) -> Vec<&'a Access> {
    let prefix = format!("/{bucket}");
    log.iter().filter(|a| a.path == prefix || a.path.starts_with(&format!("{prefix}/"))).collect()
}

async fn key_id(config: &SdkConfig) -> String {
    let provider = config.credentials_provider().unwrap();
    provider.provide_credentials().await.unwrap().access_key_id().to_owned()
}

fn succeeded(answers: &[Answer]) -> &std::collections::BTreeMap<String, String> {
    assert_eq!(answers.len(), 1, "{answers:?}");
    match &answers[0] {
        Answer::Success { output_variables, .. } => output_variables,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_45_mb_package_is_uploaded_directly_and_nothing_is_staged() {
    let (local, _log) = spawn_local().await;
    let package = large_lambda_package("direct", 45 * MB);
    let artifact = local.upload("orders/BuildOutput/45mb.zip", package.clone()).await.unwrap();

    let answers = run(&local, "DeployLambda", &params(None), artifact).await;
    let out = succeeded(&answers);
    assert_eq!(out["CodeSha256"], code_sha256(&package));
    let after = state(&local).await;
    assert_eq!((after.alias_version.as_str(), after.alias_version_sha.as_str()), ("2", code_sha256(&package).as_str()));
    // No staging bucket exists here: the direct path needs none.
    let buckets = aws_sdk_s3::Client::new(&local.target).list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty(), "{buckets:?}");
}

#[tokio::test]
async fn a_package_over_50_mb_goes_through_the_target_accounts_staging_bucket() {
    let (local, log) = spawn_local().await;
    let staging = create_staging_bucket(&local.target).await;
    let package = large_lambda_package("staged", 60 * MB);
    assert!(package.len() as u64 > lambda_alias_updater::MAX_DIRECT_UPLOAD_BYTES);
    // The package inside a build output, beside other files, as a pipeline hands it over.
    let artifact = zip_stored(&[("README.md", b"build output"), ("dist/lambda.zip", &package)]);
    let artifact = local.upload("orders/BuildOutput/60mb.zip", artifact).await.unwrap();

    let answers = run(&local, "DeployLambda", &params(Some("dist/lambda.zip")), artifact.clone()).await;
    let out = succeeded(&answers);
    assert_eq!(out["CodeSha256"], code_sha256(&package));
    let after = state(&local).await;
    assert_eq!(after.alias_version, "2");
    assert_eq!(after.alias_version_sha, code_sha256(&package), "the version holds the staged package");
    assert!(after.alias_routing.is_empty());

    // The staged object: under the function's name, versioned, holding the package.
    let s3 = aws_sdk_s3::Client::new(&local.target);
    let listed = s3.list_object_versions().bucket(&staging).send().await.unwrap();
    let versions = listed.versions();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(versions[0].key().unwrap().starts_with(&format!("crossdeploy/{FUNCTION}/")), "{versions:?}");
    let staged = s3.get_object().bucket(&staging).key(versions[0].key().unwrap()).send().await.unwrap();
    let staged = staged.body.collect().await.unwrap().into_bytes();
    assert!(staged.as_ref() == package.as_slice(), "the staged object is the package");

    // Who touched what: the artifact bucket only ever with the updater's own credentials (the
    // shared services account), the staging bucket only with the target role's session.
    let own = key_id(&local.shared).await;
    let log = accesses(&log);
    let artifact_reads = to_bucket(&log, &artifact.bucket);
    assert!(!artifact_reads.is_empty());
    for a in &artifact_reads {
        assert_eq!(
            a.key_id.as_deref(),
            Some(own.as_str()),
            "the artifact bucket was reached by another principal: {a:?}"
        );
    }
    // Read by ranges, never whole.
    assert!(artifact_reads.iter().filter(|a| a.method == "GET").all(|a| a.range.is_some()), "{artifact_reads:?}");
    let writes: Vec<_> =
        to_bucket(&log, &staging).into_iter().filter(|a| a.method == "PUT" || a.method == "POST").collect();
    assert!(writes.len() >= 8, "a 60 MB package is uploaded in 8 MiB parts: {writes:?}");
    for w in &writes {
        assert!(w.key_id.is_some() && w.key_id.as_deref() != Some(own.as_str()), "staged with the target role: {w:?}");
    }
}

#[tokio::test]
async fn redeploying_a_staged_package_stages_nothing_again() {
    let (local, log) = spawn_local().await;
    let staging = create_staging_bucket(&local.target).await;
    let package = large_lambda_package("again", 55 * MB);
    let first = local.upload("orders/BuildOutput/a.zip", package.clone()).await.unwrap();
    succeeded(&run(&local, "DeployLambda", &params(None), first).await);
    // Someone moves the alias back; the same package, deployed again, finds its staged object.
    aws_sdk_lambda::Client::new(&local.target)
        .update_alias()
        .function_name(FUNCTION)
        .name(ALIAS)
        .function_version("1")
        .send()
        .await
        .unwrap();
    let uploads_before = to_bucket(&accesses(&log), &staging).iter().filter(|a| a.method == "PUT").count();
    let second = local.upload("orders/BuildOutput/b.zip", package.clone()).await.unwrap();
    succeeded(&run(&local, "DeployLambda", &params(None), second).await);
    let uploads_after = to_bucket(&accesses(&log), &staging).iter().filter(|a| a.method == "PUT").count();
    assert_eq!(uploads_before, uploads_after, "the staged object was found, not uploaded again");
    assert_eq!(state(&local).await.alias_version_sha, code_sha256(&package));
}

#[tokio::test]
async fn a_package_over_50_mb_without_a_staging_bucket_is_refused_and_nothing_changes() {
    let (local, _log) = spawn_local().await;
    let before = state(&local).await;
    let package = large_lambda_package("nostaging", 52 * MB);
    let artifact = local.upload("orders/BuildOutput/52mb.zip", package).await.unwrap();
    let answers = run(&local, "DeployLambda", &params(None), artifact).await;
    let Answer::Failure { failure_type, message, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "ConfigurationError", "{message}");
    assert!(message.contains("staging bucket") && message.contains("infra/target-account.yaml"), "{message}");
    assert_eq!(state(&local).await, before);
}

#[tokio::test]
async fn a_package_that_unzips_past_250_mb_is_refused_before_anything_changes() {
    let (local, log) = spawn_local().await;
    let before = state(&local).await;
    // 251 MiB of zeros: a small zip, too large once unzipped.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("bootstrap", zip::write::SimpleFileOptions::default().large_file(true)).unwrap();
    let chunk = vec![0u8; MB];
    for _ in 0..251 {
        std::io::Write::write_all(&mut w, &chunk).unwrap();
    }
    let package = w.finish().unwrap().into_inner();
    let artifact = local.upload("orders/BuildOutput/bomb.zip", package).await.unwrap();
    let seen = accesses(&log).len();
    let answers = run(&local, "DeployLambda", &params(None), artifact).await;
    let Answer::Failure { failure_type, message, .. } = &answers[0] else { panic!("{answers:?}") };
    assert_eq!(failure_type, "ConfigurationError", "{message}");
    assert!(message.contains("250 MB) unzipped"), "{message}");
    assert_eq!(state(&local).await, before);
    let during = accesses(&log).split_off(seen);
    assert!(!during.is_empty());
    let lambda_writes: Vec<_> = during.iter().filter(|a| a.path.contains("/functions/") && a.method != "GET").collect();
    assert!(lambda_writes.is_empty(), "nothing was sent to Lambda: {lambda_writes:?}");
}

#[tokio::test]
async fn the_ecs_updater_reads_a_small_file_from_a_large_artifact_by_ranges() {
    let (local, log) = spawn_local().await;
    ecs::create_fargate_service(&local.moto.endpoint, &local.target).await.unwrap();
    let image = "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:big";
    let site = incompressible(80 * MB, 42);
    let artifact = zip_stored(&[
        ("site/bundle.bin", &site),
        ("imagedefinitions.json", format!(r#"[{{"name":"web","imageUri":"{image}"}}]"#).as_bytes()),
    ]);
    let artifact = local.upload("orders/BuildOutput/site.zip", artifact).await.unwrap();
    let user_parameters = serde_json::json!({
        "Kind": "Ecs",
        "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT),
        "ClusterName": ecs::CLUSTER,
        "ServiceName": ecs::SERVICE,
    })
    .to_string();
    let answers = run(&local, "DeployEcs", &user_parameters, artifact.clone()).await;
    succeeded(&answers);
    let state = ecs::service_state(&local.target).await.unwrap();
    let (taskdef, _) = ecs::task_definition(&local.target, &state.task_definition).await.unwrap();
    assert_eq!(taskdef.container_definitions()[0].image(), Some(image));

    // What was read of the 80 MB artifact: ranges adding up to well under a megabyte.
    let log = accesses(&log);
    let reads = to_bucket(&log, &artifact.bucket);
    let mut asked = 0u64;
    for a in reads.iter().filter(|a| a.method == "GET") {
        let range = a.range.as_deref().unwrap_or_else(|| panic!("a whole-object GET: {a:?}"));
        asked += match range.trim_start_matches("bytes=").split_once('-').unwrap() {
            // The first GET: the object's last bytes (its zip directory).
            ("", last) => last.parse::<u64>().unwrap(),
            (start, end) => end.parse::<u64>().unwrap() - start.parse::<u64>().unwrap() + 1,
        };
    }
    assert!(asked > 0 && asked < 1024 * 1024, "{asked} bytes read of an 80 MB artifact");
}
