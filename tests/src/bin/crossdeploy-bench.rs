//! crossdeploy's benchmark (`./scripts/bench`): sizes, init time and peak RSS of each function,
//! and the Lambda deploy job's time event -> answer next to the seed's AWS CLI sequence, measured
//! side by side (interleaved runs) against the same local AWS.
//!
//! Usage: crossdeploy-bench --bin-dir <host release binaries> --zip-dir <cargo lambda output> [--runs N]

use crossdeploy_local::accounts::{self, EXTERNAL_ID, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{build_artifact, lambda_package, zip_of};
use crossdeploy_local::{assume_role_calls, ecs, free_port, Answer, LocalAws, LocalLambda, NewJob, Result};
use crossdeploy_protocol::ArtifactLocation;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FUNCTIONS: [&str; 4] = ["pipeline-job-worker", "lambda-alias-updater", "ecs-taskdef-updater", "deploy-rollback"];

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let bin_dir = PathBuf::from(arg("--bin-dir").ok_or("--bin-dir <dir of host release binaries> is required")?);
    let zip_dir = PathBuf::from(arg("--zip-dir").ok_or("--zip-dir <cargo lambda build output dir> is required")?);
    let runs: usize = arg("--runs").map(|r| r.parse()).transpose()?.unwrap_or(7).max(5);
    if args.iter().any(|a| a == "--memory-only") {
        return memory_rows(&bin_dir).await;
    }

    println!("crossdeploy benchmark ({runs} runs each; medians)\n");
    println!("{:<22} {:>14} {:>14} {:>10}", "function (arm64)", "bootstrap", "bootstrap.zip", "ELF arch");
    for f in FUNCTIONS {
        let (unzipped, zipped, arch) = sizes(&zip_dir.join(f).join("bootstrap.zip"))?;
        println!("{f:<22} {:>11.2} MB {:>11.2} MB {arch:>10}", mb(unzipped), mb(zipped));
    }

    println!("\n{:<22} {:>22}", "function (host build)", "init: exec -> /next");
    for f in FUNCTIONS {
        let mut times = Vec::new();
        for _ in 0..runs {
            times.push(init_time(&bin_dir.join(f)).await?);
        }
        println!("{f:<22} {:>19.1} ms", median_ms(&mut times));
    }

    deploy_comparison(&bin_dir, runs).await?;
    memory_rows(&bin_dir).await
}

/// The worker and `updaters` as fresh processes under cargo-lambda, against `local`.
async fn start_functions(local: &LocalAws, bin_dir: &Path, updaters: &[&str]) -> Result<LocalLambda> {
    let common = local.function_env().await?;
    let mut lambda = LocalLambda::start().await?;
    let mut updater_env = common.clone();
    updater_env.push(("CROSSDEPLOY_ALLOWED_TARGET_ROLES".into(), accounts::target_role(TARGET_ACCOUNT)));
    updater_env.push(("CROSSDEPLOY_EXTERNAL_ID".into(), EXTERNAL_ID.into()));
    updater_env.push(("CROSSDEPLOY_LEDGER_TABLE".into(), local.ledger_table.clone()));
    let mut worker_env = common;
    worker_env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), lambda.endpoint.clone()));
    worker_env.push(("AWS_ENDPOINT_URL_CODEPIPELINE".into(), local.emulator.endpoint.clone()));
    worker_env.push(("CROSSDEPLOY_LAMBDA_UPDATER".into(), "lambda-alias-updater".into()));
    worker_env.push(("CROSSDEPLOY_ECS_UPDATER".into(), "ecs-taskdef-updater".into()));
    worker_env.push(("CROSSDEPLOY_LEDGER_TABLE".into(), local.ledger_table.clone()));
    for f in updaters {
        lambda.run_binary(f, &bin_dir.join(f), &updater_env)?;
    }
    lambda.run_binary("pipeline-job-worker", &bin_dir.join("pipeline-job-worker"), &worker_env)?;
    Ok(lambda)
}

/// One deployment through a fresh worker and updater (fresh processes, so that each peak RSS
/// is that case's own). Returns the updater's peak RSS in MB.
async fn one_deploy_rss(
    local: &LocalAws,
    bin_dir: &Path,
    updater: &str,
    action: &str,
    user_parameters: serde_json::Value,
    artifact: ArtifactLocation,
) -> Result<f64> {
    let mut lambda = start_functions(local, bin_dir, &[updater]).await?;
    let event = local.job(action, &user_parameters.to_string(), artifact);
    lambda.invoke(&local.shared, "pipeline-job-worker", event.to_string().as_bytes(), Duration::from_secs(600)).await?;
    match local.answers_for(&event).first() {
        Some(Answer::Success { .. }) => {}
        other => return Err(format!("{action} for the memory rows was not answered with success: {other:?}").into()),
    }
    let pid = lambda.pid(updater).ok_or("the updater is not running")?;
    peak_rss_mb(pid)
}

/// Peak RSS of each updater by package and artifact size (issue 12's goals): the Lambda updater
/// uploading directly (at most 2.5x the package + 32 MB) and through the staging bucket (at most
/// 64 MB whatever the size), the ECS updater whatever the artifact's size (at most 32 MB).
async fn memory_rows(bin_dir: &Path) -> Result<()> {
    use crossdeploy_local::fixtures::{incompressible, large_lambda_package, zip_stored};
    const MIB: usize = 1024 * 1024;
    let local = LocalAws::start().await?;
    accounts::create_function(&local.target, "orders-api", "live", lambda_package("v0")).await?;
    ecs::create_fargate_service(&local.moto.endpoint, &local.target).await?;
    let staging = lambda_alias_updater::staging_bucket(TARGET_ACCOUNT, accounts::REGION);
    let s3 = aws_sdk_s3::Client::new(&local.target);
    s3.create_bucket().bucket(&staging).send().await?;
    s3.put_bucket_versioning()
        .bucket(&staging)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    let lambda_params = serde_json::json!({"Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": "orders-api", "Alias": "live", "ArtifactPath": "dist/lambda.zip"});
    let ecs_params = serde_json::json!({"Kind": "Ecs", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "ClusterName": ecs::CLUSTER, "ServiceName": ecs::SERVICE});

    println!("\n{:<44} {:>12} {:>12} {:>16}", "peak RSS of one deployment", "input", "peak RSS", "goal");
    let mut rows = Vec::new();
    for (label, mib, direct) in [
        ("lambda-alias-updater, direct upload", 1usize, true),
        ("lambda-alias-updater, direct upload", 45, true),
        ("lambda-alias-updater, through the staging bucket", 120, false),
    ] {
        let package = large_lambda_package(&format!("mem-{mib}"), mib * MIB);
        let key = format!("orders/BuildOutput/mem-{mib}.zip");
        accounts::put_artifact(
            &local.shared,
            &local.bucket,
            &key,
            zip_stored(&[("README.md", b"build"), ("dist/lambda.zip", &package)]),
        )
        .await?;
        let artifact = ArtifactLocation { bucket: local.bucket.clone(), key };
        let rss =
            one_deploy_rss(&local, bin_dir, "lambda-alias-updater", "DeployLambda", lambda_params.clone(), artifact)
                .await?;
        let size_mb = mb(package.len() as u64);
        let goal = if direct { 2.5 * size_mb + 32.0 } else { 64.0 };
        rows.push((label, format!("{size_mb:.1} MB pkg"), rss, goal));
    }
    for mib in [1usize, 200] {
        let images = format!(r#"[{{"name":"web","imageUri":"{}:mem{mib}"}}]"#, ecs::OLD_IMAGE.trim_end_matches(":old"));
        let bundle = incompressible(mib * MIB, mib as u64);
        let artifact_bytes = zip_stored(&[("site/bundle.bin", &bundle), ("imagedefinitions.json", images.as_bytes())]);
        let size_mb = mb(artifact_bytes.len() as u64);
        let key = format!("orders/BuildOutput/ecs-mem-{mib}.zip");
        accounts::put_artifact(&local.shared, &local.bucket, &key, artifact_bytes).await?;
        let artifact = ArtifactLocation { bucket: local.bucket.clone(), key };
        let rss =
            one_deploy_rss(&local, bin_dir, "ecs-taskdef-updater", "DeployEcs", ecs_params.clone(), artifact).await?;
        rows.push(("ecs-taskdef-updater, imagedefinitions.json", format!("{size_mb:.1} MB art."), rss, 32.0));
    }
    for (label, input, rss, goal) in rows {
        let verdict = if rss <= goal { "met" } else { "MISSED" };
        println!("{label:<44} {input:>12} {rss:>9.1} MB {:>9.1} MB {verdict}", goal);
    }
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// Size of `bootstrap` inside the zip, size of the zip, and the ELF machine of `bootstrap`.
fn sizes(zip_path: &Path) -> Result<(u64, u64, &'static str)> {
    let file = std::fs::File::open(zip_path)
        .map_err(|e| format!("{}: {e} (build it with ./scripts/bench)", zip_path.display()))?;
    let zipped = file.metadata()?.len();
    let mut archive = zip::ZipArchive::new(file)?;
    let mut entry = archive.by_name("bootstrap")?;
    let unzipped = entry.size();
    let mut header = [0u8; 20];
    entry.read_exact(&mut header)?;
    let arch = match (&header[..4], u16::from_le_bytes([header[18], header[19]])) {
        (b"\x7fELF", 0xB7) => "aarch64",
        (b"\x7fELF", 0x3E) => "x86_64",
        (b"\x7fELF", _) => "other ELF",
        _ => "not ELF",
    };
    Ok((unzipped, zipped, arch))
}

/// Time from spawning the binary to its first Runtime API request, under a minimal local
/// Runtime API that never hands out an invocation.
async fn init_time(binary: &Path) -> Result<Duration> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()?)).await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_REGION", accounts::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        // The worker and deploy-rollback need their ledger table named to start; init makes no call to it.
        .env("CROSSDEPLOY_LEDGER_TABLE", "crossdeploy-ledger")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let first = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    first.map_err(|_| format!("{} made no Runtime API request within 10 s", binary.display()))??;
    Ok(elapsed)
}

/// Peak resident set size of a process, from /proc (VmHWM).
fn peak_rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmHWM in /proc status")?;
    Ok(kb / 1024.0)
}

async fn deploy_comparison(bin_dir: &Path, runs: usize) -> Result<()> {
    let access_log = std::env::temp_dir().join(format!("crossdeploy-bench-access-{}.jsonl", std::process::id()));
    let log_path = access_log.to_string_lossy().into_owned();
    let local = LocalAws::start_with_moto_env(&[("CROSSDEPLOY_MOTO_ACCESS_LOG", &log_path)]).await?;
    let mut sts_calls = 0;
    let (shared, target, bucket, emulator) = (&local.shared, &local.target, &local.bucket, &local.emulator);
    accounts::create_function(target, "orders-api", "live", lambda_package("v0")).await?;
    accounts::create_function(target, "orders-cli", "live", lambda_package("v0")).await?;
    ecs::create_fargate_service(&local.moto.endpoint, target).await?;

    let common = local.function_env().await?;
    let mut lambda = start_functions(&local, bin_dir, &["lambda-alias-updater", "ecs-taskdef-updater"]).await?;

    let aws = crossdeploy_local::venv_bin("aws")?;
    let work = std::env::temp_dir().join(format!("crossdeploy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    let (mut ours, mut cli) = (Vec::new(), Vec::new());
    let mut rss = Vec::new();
    for i in 0..runs {
        // crossdeploy: the Invoke event in, the job's answer recorded by the emulator.
        let package = lambda_package(&format!("crossdeploy-{i}"));
        let key = format!("orders/BuildOutput/{i}.zip");
        accounts::put_artifact(shared, bucket, &key, build_artifact("lambda.zip", &package)).await?;
        let event = emulator.start_invoke_job(NewJob {
            pipeline_name: "orders".into(),
            stage: "Deploy-dev".into(),
            action: "DeployLambda".into(),
            user_parameters: serde_json::json!({"Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": "orders-api", "Alias": "live", "ArtifactPath": "lambda.zip"}).to_string(),
            artifact: ArtifactLocation { bucket: bucket.clone(), key },
            execution_id: None,
        });
        let job_id = event["CodePipeline.job"]["id"].as_str().unwrap_or_default().to_owned();
        let assumed_before = assume_role_calls(&access_log);
        let started = Instant::now();
        lambda.invoke(shared, "pipeline-job-worker", event.to_string().as_bytes(), Duration::from_secs(60)).await?;
        let took = started.elapsed();
        sts_calls += assume_role_calls(&access_log) - assumed_before;
        match emulator.answers().iter().find(|a| a.job_id() == job_id) {
            Some(Answer::Success { output_variables, .. }) if output_variables.contains_key("FunctionVersion") => {}
            other => return Err(format!("run {i}: the deploy job was not answered with success: {other:?}").into()),
        }
        ours.push(took);
        if i == 0 {
            for f in ["pipeline-job-worker", "lambda-alias-updater"] {
                if let Some(pid) = lambda.pid(f) {
                    rss.push((f, peak_rss_mb(pid)?));
                }
            }
        }

        // The seed's buildspec steps with the AWS CLI, against the same local AWS.
        let pkg_path = work.join(format!("cli-{i}.zip"));
        std::fs::write(&pkg_path, lambda_package(&format!("cli-{i}")))?;
        let started = Instant::now();
        cli_sequence(&aws, &common, &pkg_path)?;
        cli.push(started.elapsed());
    }

    // One ECS deploy, for the ECS updater's peak RSS.
    let images = format!(r#"[{{"name":"web","imageUri":"{}:bench"}}]"#, ecs::OLD_IMAGE.trim_end_matches(":old"));
    accounts::put_artifact(
        shared,
        bucket,
        "orders/BuildOutput/ecs.zip",
        zip_of(&[("imagedefinitions.json", images.as_bytes())]),
    )
    .await?;
    let event = local.job(
        "DeployEcs",
        &serde_json::json!({"Kind": "Ecs", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "ClusterName": ecs::CLUSTER, "ServiceName": ecs::SERVICE}).to_string(),
        ArtifactLocation { bucket: bucket.clone(), key: "orders/BuildOutput/ecs.zip".into() },
    );
    lambda.invoke(shared, "pipeline-job-worker", event.to_string().as_bytes(), Duration::from_secs(60)).await?;
    match local.answers_for(&event).first() {
        Some(Answer::Success { .. }) => {}
        other => return Err(format!("the ECS deploy job was not answered with success: {other:?}").into()),
    }
    if let Some(pid) = lambda.pid("ecs-taskdef-updater") {
        rss.push(("ecs-taskdef-updater", peak_rss_mb(pid)?));
    }

    println!("\n{:<22} {:>22}", "function", "peak RSS (first deploy)");
    for (f, mb) in rss {
        println!("{f:<22} {mb:>19.1} MB");
    }
    let (o, c) = (median_ms(&mut ours), median_ms(&mut cli));
    println!("\nLambda deploy, event -> answer, median of {runs} interleaved runs:");
    println!("  crossdeploy (worker -> updater, real binaries under cargo-lambda): {o:>8.1} ms");
    println!(
        "  seed buildspec (aws sts assume-role, update-function-code, publish-version, update-alias): {c:>8.1} ms"
    );
    println!("  ratio: crossdeploy is {:.1}x faster", c / o);
    // Each run is its own pipeline execution: one session each (CloudTrail names the run).
    println!(
        "  STS AssumeRole calls per crossdeploy job: {:.2} ({sts_calls} over {runs} jobs, each its own execution)",
        sts_calls as f64 / runs as f64
    );
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_file(&access_log);
    Ok(())
}

/// `aws sts assume-role`, then `update-function-code`, `publish-version` and `update-alias` with
/// the assumed credentials: what the seed's CodeBuild step runs.
fn cli_sequence(aws: &Path, env: &[(String, String)], package: &Path) -> Result<()> {
    let run = |args: &[&str], extra: &[(String, String)]| -> Result<String> {
        let out = Command::new(aws)
            .args(args)
            .args(["--output", "text"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("AWS_DEFAULT_REGION", accounts::REGION)
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .output()?;
        if !out.status.success() {
            return Err(format!("aws {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let creds = run(
        &[
            "sts",
            "assume-role",
            "--role-arn",
            &accounts::target_role(TARGET_ACCOUNT),
            "--role-session-name",
            "seed-buildspec",
            "--external-id",
            EXTERNAL_ID,
            "--query",
            "Credentials.[AccessKeyId,SecretAccessKey,SessionToken]",
        ],
        &[],
    )?;
    let parts: Vec<&str> = creds.split_whitespace().collect();
    let [key, secret, token] = parts[..] else {
        return Err(format!("unexpected assume-role output: {} fields", parts.len()).into());
    };
    let assumed = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), key.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), secret.to_owned()),
        ("AWS_SESSION_TOKEN".to_owned(), token.to_owned()),
    ];
    let zip_arg = format!("fileb://{}", package.display());
    run(
        &[
            "lambda",
            "update-function-code",
            "--function-name",
            "orders-cli",
            "--zip-file",
            &zip_arg,
            "--query",
            "CodeSha256",
        ],
        &assumed,
    )?;
    let version = run(&["lambda", "publish-version", "--function-name", "orders-cli", "--query", "Version"], &assumed)?;
    run(
        &[
            "lambda",
            "update-alias",
            "--function-name",
            "orders-cli",
            "--name",
            "live",
            "--function-version",
            &version,
            "--query",
            "AliasArn",
        ],
        &assumed,
    )?;
    Ok(())
}
