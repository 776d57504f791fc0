//! crossdeploy's benchmark (`./scripts/bench`): sizes, init time and peak RSS of each function;
//! the Lambda deploy job's time event -> answer, crossdeploy cold and warm next to the API-call
//! floor, a boto3 handler cold and warm and the seed's AWS CLI sequence, in interleaved runs
//! against one local AWS, with the calls each makes; one poll of 100 custom-action jobs; and
//! each updater's peak RSS by input size. See README.md, "Benchmark".
//!
//! Usage: crossdeploy-bench --bin-dir <host release binaries> --zip-dir <cargo lambda output> [--runs N]
//!        [--scale-jobs N] [--scale-updaters N] [--deploy-only | --scale-only | --memory-only]

use crossdeploy_local::accounts::{self, EXTERNAL_ID, TARGET_ACCOUNT};
use crossdeploy_local::bench::{calls_between, describe, per_service, Call, Floor, FLOOR_CALLS};
use crossdeploy_local::fixtures::{build_artifact, lambda_package};
use crossdeploy_local::lambda_host::{FunctionSpec, Invocation, LambdaHost};
use crossdeploy_local::{ecs, free_port, Answer, LocalAws, LocalLambda, NewJob, Result};
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
    let scale_jobs: usize = arg("--scale-jobs").map(|r| r.parse()).transpose()?.unwrap_or(100);
    // The updater's concurrency in the scale run (its reserved concurrency in Lambda).
    let scale_updaters: usize = arg("--scale-updaters").map(|r| r.parse()).transpose()?.unwrap_or(scale_jobs);
    if args.iter().any(|a| a == "--deploy-only") {
        return deploy_comparison(&bin_dir, runs).await;
    }
    if args.iter().any(|a| a == "--scale-only") {
        return scale(&bin_dir, scale_jobs, scale_updaters).await;
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
    scale(&bin_dir, scale_jobs, scale_updaters).await?;
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

/// One way of deploying, timed job by job.
#[derive(Default)]
struct Variant {
    times: Vec<Duration>,
    /// Each timed job's window (ms since the epoch), for the calls moto answered in it.
    windows: Vec<(f64, f64)>,
}

impl Variant {
    fn median_ms(&self) -> f64 {
        median_ms(&mut self.times.clone())
    }

    /// Calls per job by service, and moto's own time per job.
    fn calls(&self, log: &Path) -> (String, f64) {
        let calls: Vec<Call> = self.windows.iter().flat_map(|(from, to)| calls_between(log, *from, *to)).collect();
        let moto_ms = calls.iter().map(|c| c.took_ms).sum::<f64>() / self.windows.len().max(1) as f64;
        (describe(&per_service(&calls, self.windows.len())), moto_ms)
    }
}

fn epoch_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// Times `work` into `variant`.
async fn timed<T>(variant: &mut Variant, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let (from, started) = (epoch_ms(), Instant::now());
    let out = work.await?;
    variant.times.push(started.elapsed());
    variant.windows.push((from, epoch_ms()));
    Ok(out)
}

/// A new Invoke action job for `function` with a fresh package `marker` in its artifact: the
/// `CodePipeline.job` event, and where the artifact is.
async fn new_job(local: &LocalAws, function: &str, marker: &str) -> Result<(serde_json::Value, ArtifactLocation)> {
    let key = format!("orders/BuildOutput/{marker}.zip");
    accounts::put_artifact(&local.shared, &local.bucket, &key, build_artifact("lambda.zip", &lambda_package(marker)))
        .await?;
    let artifact = ArtifactLocation { bucket: local.bucket.clone(), key };
    let event = local.emulator.start_invoke_job(NewJob {
        pipeline_name: "orders".into(),
        stage: "Deploy-dev".into(),
        action: "DeployLambda".into(),
        user_parameters: serde_json::json!({"Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": function, "Alias": "live", "ArtifactPath": "lambda.zip"}).to_string(),
        artifact: artifact.clone(),
        execution_id: None,
    });
    Ok((event, artifact))
}

/// Invokes `function` on the host with the job's event; an error unless the job was answered
/// with success and a FunctionVersion.
async fn run_job(local: &LocalAws, host: &LambdaHost, function: &str, event: &serde_json::Value) -> Result<()> {
    let ended = host.invoke(function, bytes::Bytes::from(event.to_string()), None).await?;
    if let Invocation::FunctionError(kind, message) = ended {
        return Err(format!("{function} failed: {kind}: {message}").into());
    }
    answered(local, event)
}

fn answered(local: &LocalAws, event: &serde_json::Value) -> Result<()> {
    match local.answers_for(event).first() {
        Some(Answer::Success { output_variables, .. }) if output_variables.contains_key("FunctionVersion") => Ok(()),
        other => Err(format!("the deploy job was not answered with success: {other:?}").into()),
    }
}

/// The Lambda deploy job, event -> answer, measured side by side in interleaved runs against one
/// local AWS: crossdeploy (worker and updater, fresh processes for the cold job, the same ones
/// for the warm job), the boto3 handler (likewise, under the same Lambda Runtime API host), the
/// API-call floor, and the seed's AWS CLI sequence.
async fn deploy_comparison(bin_dir: &Path, runs: usize) -> Result<()> {
    let access_log = std::env::temp_dir().join(format!("crossdeploy-bench-access-{}.jsonl", std::process::id()));
    let log_path = access_log.to_string_lossy().into_owned();
    let local = LocalAws::start_with_moto_env(&[("CROSSDEPLOY_MOTO_ACCESS_LOG", &log_path)]).await?;
    for f in ["orders-api", "orders-boto3", "orders-floor", "orders-cli"] {
        accounts::create_function(&local.target, f, "live", lambda_package("v0")).await?;
    }
    let common = common_env(&local).await?;
    let boto3_bootstrap = crossdeploy_local::workspace_root().join("tests/localaws/boto3_deploy/bootstrap");
    let python = crossdeploy_local::venv_bin("python")?;

    let floor = Floor::new(&local.shared, &local.emulator.endpoint).await?;
    // Warm: its connections open, its clients' first-call work done.
    let (event, artifact) = new_job(&local, "orders-floor", "floor-warmup").await?;
    floor.deploy((&artifact.bucket, &artifact.key, "lambda.zip"), "orders-floor", "live", job_id_of(&event)).await?;

    let aws = crossdeploy_local::venv_bin("aws")?;
    let work = std::env::temp_dir().join(format!("crossdeploy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    let (mut ours_cold, mut ours_warm, mut boto3_cold, mut boto3_warm) =
        (Variant::default(), Variant::default(), Variant::default(), Variant::default());
    let (mut floor_v, mut seed) = (Variant::default(), Variant::default());
    let mut rss = Vec::new();
    for i in 0..runs {
        // A fresh host: every function starts a fresh process at its first invocation, as a
        // cold Lambda does; the second job finds it warm.
        let host = LambdaHost::start().await?;
        let (worker_env, updater_env) = envs(&local, &common, &host);
        let mut boto3_env = common.clone();
        boto3_env.push(("AWS_DEFAULT_REGION".into(), accounts::REGION.into()));
        boto3_env.push(("AWS_ENDPOINT_URL_CODEPIPELINE".into(), local.emulator.endpoint.clone()));
        boto3_env.push(("DEPLOY_EXTERNAL_ID".into(), EXTERNAL_ID.into()));
        boto3_env.push(("BOTO3_DEPLOY_PYTHON".into(), python.to_string_lossy().into_owned()));
        for (name, binary, env, timeout) in [
            ("pipeline-job-worker", bin_dir.join("pipeline-job-worker"), &worker_env, 300),
            ("lambda-alias-updater", bin_dir.join("lambda-alias-updater"), &updater_env, 240),
            ("boto3-deploy", boto3_bootstrap.clone(), &boto3_env, 240),
        ] {
            host.add(FunctionSpec {
                name: name.into(),
                binary,
                env: env.clone(),
                timeout: Duration::from_secs(timeout),
                max_instances: 1,
            })?;
        }
        for (variant, n) in [(&mut ours_cold, 0), (&mut ours_warm, 1)] {
            let (event, _) = new_job(&local, "orders-api", &format!("crossdeploy-{i}-{n}")).await?;
            timed(variant, run_job(&local, &host, "pipeline-job-worker", &event)).await?;
        }
        if i == 0 {
            for f in ["pipeline-job-worker", "lambda-alias-updater"] {
                if let Some(pid) = host.pids(f).first() {
                    rss.push((f, peak_rss_mb(*pid)?));
                }
            }
        }
        for (variant, n) in [(&mut boto3_cold, 0), (&mut boto3_warm, 1)] {
            let (event, _) = new_job(&local, "orders-boto3", &format!("boto3-{i}-{n}")).await?;
            timed(variant, run_job(&local, &host, "boto3-deploy", &event)).await?;
        }
        drop(host);

        let (event, artifact) = new_job(&local, "orders-floor", &format!("floor-{i}")).await?;
        let location = (artifact.bucket.as_str(), artifact.key.as_str(), "lambda.zip");
        timed(&mut floor_v, floor.deploy(location, "orders-floor", "live", job_id_of(&event))).await?;
        answered(&local, &event)?;

        // The seed's buildspec steps with the AWS CLI, against the same local AWS.
        let pkg_path = work.join(format!("cli-{i}.zip"));
        std::fs::write(&pkg_path, lambda_package(&format!("cli-{i}")))?;
        timed(&mut seed, async { cli_sequence(&aws, &common, &pkg_path) }).await?;
    }

    println!("\n{:<22} {:>22}", "function", "peak RSS (first deploy)");
    for (f, mb) in rss {
        println!("{f:<22} {mb:>19.1} MB");
    }
    println!("\nLambda deploy job, event -> answer: medians of {runs} interleaved runs on one local AWS");
    println!("{:<44} {:>10} {:>12}  calls moto answered per job", "", "median", "moto's time");
    let rows: [(&str, &Variant); 6] = [
        ("API-call floor (Rust SDK, warm, no ledger)", &floor_v),
        ("crossdeploy, warm", &ours_warm),
        ("crossdeploy, cold (fresh processes)", &ours_cold),
        ("boto3 handler, warm", &boto3_warm),
        ("boto3 handler, cold (fresh process)", &boto3_cold),
        ("seed buildspec (AWS CLI, 4 processes)", &seed),
    ];
    for (label, v) in rows {
        let (calls, moto_ms) = v.calls(&access_log);
        println!("{label:<44} {:>7.1} ms {:>9.1} ms  {calls}", v.median_ms(), moto_ms);
    }
    println!("  the floor's calls: {}", FLOOR_CALLS.join(", "));
    println!("\nwhere a warm crossdeploy job's calls go (per job: calls, moto's time):");
    let calls: Vec<Call> = ours_warm.windows.iter().flat_map(|(a, b)| calls_between(&access_log, *a, *b)).collect();
    let mut by_op: std::collections::BTreeMap<(&str, &str), (f64, f64)> = Default::default();
    for c in &calls {
        let e = by_op.entry((c.service, c.operation.as_str())).or_default();
        e.0 += 1.0;
        e.1 += c.took_ms;
    }
    let jobs = ours_warm.windows.len().max(1) as f64;
    for ((service, op), (n, ms)) in by_op {
        println!("  {:<40} {:>5.1} {:>8.1} ms", format!("{service} {op}"), n / jobs, ms / jobs);
    }
    let (f, w, c) = (floor_v.median_ms(), ours_warm.median_ms(), ours_cold.median_ms());
    let (bw, bc, s) = (boto3_warm.median_ms(), boto3_cold.median_ms(), seed.median_ms());
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!("\nratios (goal in brackets):");
    println!("  crossdeploy warm / floor:  {:>6.2}x  (at most 1.3x: {})", w / f, verdict(w / f <= 1.3));
    println!("  boto3 cold / crossdeploy cold: {:>6.2}x  (at least 5x: {})", bc / c, verdict(bc / c >= 5.0));
    println!("  boto3 warm / crossdeploy warm: {:>6.2}x  (at least 2x: {})", bw / w, verdict(bw / w >= 2.0));
    println!("  seed / crossdeploy warm:   {:>6.2}x", s / w);
    println!("  seed / crossdeploy cold:   {:>6.2}x", s / c);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_file(&access_log);
    Ok(())
}

/// One poll of `jobs` queued custom-action jobs, each for its own target (a function of its
/// own), worked by one worker run; next to a single such job through the same path.
async fn scale(bin_dir: &Path, jobs: usize, updaters: usize) -> Result<()> {
    use crossdeploy_local::NewCustomJob;
    let access_log = std::env::temp_dir().join(format!("crossdeploy-bench-scale-{}.jsonl", std::process::id()));
    let log_path = access_log.to_string_lossy().into_owned();
    let local = LocalAws::start_with_moto_env(&[("CROSSDEPLOY_MOTO_ACCESS_LOG", &log_path)]).await?;
    // The custom action types, as template.yaml declares them.
    crossdeploy_local::templates::create_custom_action_types(&local.codepipeline(), accounts::REGION).await?;
    let names: Vec<String> = (0..jobs).map(|i| format!("scale-{i:03}")).collect();
    for name in names.iter().chain(std::iter::once(&"scale-single".to_owned())) {
        accounts::create_function(&local.target, name, "live", lambda_package("v0")).await?;
    }
    let key = "orders/BuildOutput/scale.zip".to_owned();
    accounts::put_artifact(&local.shared, &local.bucket, &key, build_artifact("lambda.zip", &lambda_package("scale")))
        .await?;
    let artifact = ArtifactLocation { bucket: local.bucket.clone(), key };
    let queue = |function: &str| {
        local.emulator.start_custom_job(NewCustomJob {
            provider: crossdeploy_pipeline_job::actions::LAMBDA_PROVIDER.to_owned(),
            pipeline_name: format!("orders-{function}"),
            stage: "Deploy-dev".to_owned(),
            action: "Deploy".to_owned(),
            configuration: [
                ("TargetRoleArn", accounts::target_role(TARGET_ACCOUNT)),
                ("FunctionName", function.to_owned()),
                ("Alias", "live".to_owned()),
                ("ArtifactPath", "lambda.zip".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            artifact: artifact.clone(),
            execution_id: None,
        })
    };
    let common = common_env(&local).await?;
    let host = LambdaHost::start().await?;
    let (mut worker_env, updater_env) = envs(&local, &common, &host);
    worker_env.push(("CROSSDEPLOY_JOBS_PER_RUN".into(), jobs.to_string()));
    for (name, env, instances) in
        [("pipeline-job-worker", &worker_env, 1), ("lambda-alias-updater", &updater_env, updaters.max(1))]
    {
        host.add(FunctionSpec {
            name: name.into(),
            binary: bin_dir.join(name),
            env: env.clone(),
            timeout: Duration::from_secs(300),
            max_instances: instances,
        })?;
    }
    let schedule = bytes::Bytes::from(
        serde_json::json!({"version": "0", "id": "bench", "detail-type": "Scheduled Event", "source": "aws.events",
                           "account": accounts::SHARED_ACCOUNT, "region": accounts::REGION, "detail": {}})
        .to_string(),
    );
    let run = |ids: Vec<String>| {
        let (host, local, schedule) = (&host, &local, schedule.clone());
        async move {
            let started = Instant::now();
            let (from, _) = (epoch_ms(), ());
            if let Invocation::FunctionError(kind, message) = host.invoke("pipeline-job-worker", schedule, None).await?
            {
                return Err(format!("the worker failed: {kind}: {message}").into());
            }
            let took = started.elapsed();
            let times = local.emulator.answer_times();
            let mut latencies = Vec::new();
            for id in &ids {
                match local.emulator.answers_of(id).as_slice() {
                    [Answer::Success { .. }] => {}
                    other => return Err(format!("job {id} was not answered once with success: {other:?}").into()),
                }
                if let Some((_, at)) = times.iter().find(|(j, _)| j == id) {
                    latencies.push(at.saturating_duration_since(started));
                }
            }
            Ok::<_, crossdeploy_local::Error>((took, latencies, (from, epoch_ms())))
        }
    };
    // A single job, three times (the first starts the processes; the median is warm).
    let mut single = Vec::new();
    for _ in 0..3 {
        let id = queue("scale-single");
        single.push(run(vec![id]).await?.0);
    }
    let single_ms = median_ms(&mut single);
    // The batch: all queued, one scheduled run polls them all.
    let ids: Vec<String> = names.iter().map(|n| queue(n)).collect();
    let moto_pid = local.moto.pid();
    let (moto_cpu, ours_cpu) = (cpu_secs(&[moto_pid]), cpu_secs(&host.pids("pipeline-job-worker")));
    let (took, mut latencies, (from, to)) = run(ids).await?;
    let ours: Vec<u32> = ["pipeline-job-worker", "lambda-alias-updater"].iter().flat_map(|f| host.pids(f)).collect();
    let (moto_cpu, ours_cpu) = (cpu_secs(&[moto_pid]) - moto_cpu, cpu_secs(&ours) - ours_cpu);
    let calls = calls_between(&access_log, from, to);
    let per_job = per_service(&calls, jobs);
    let moto_busy: f64 = calls.iter().map(|c| c.took_ms).sum();
    let wall_ms = took.as_secs_f64() * 1000.0;
    latencies.sort();
    let p95 = latencies.get(latencies.len() * 95 / 100).or(latencies.last()).copied().unwrap_or_default();
    println!("\nscale: one scheduled run polls {jobs} queued custom-action jobs, one target each ({updaters} updater processes at most)");
    println!("  single job (one run, one job; median of 3):     {single_ms:>9.1} ms");
    println!("  {jobs} jobs in one run:                          {wall_ms:>9.1} ms wall");
    println!("  jobs per second:                               {:>9.1}", jobs as f64 / took.as_secs_f64());
    let ratio = wall_ms / jobs as f64 / single_ms;
    let verdict = if ratio <= 1.2 { "met" } else { "MISSED" };
    println!(
        "  wall time per job / single job:                {ratio:>9.2}x  (at most 1.2x: {verdict}; {:.1} ms a job)",
        wall_ms / jobs as f64
    );
    println!(
        "  each job's own time, event -> answer:          median {:.0} ms, p95 {:.0} ms ({:.1}x and {:.1}x a single job)",
        median_ms(&mut latencies.clone()),
        p95.as_secs_f64() * 1000.0,
        median_ms(&mut latencies.clone()) / single_ms,
        p95.as_secs_f64() * 1000.0 / single_ms
    );
    println!("  calls per job: {}", describe(&per_job));
    println!(
        "  CPU during the run: moto {moto_cpu:.1} s, crossdeploy's worker and updaters {ours_cpu:.1} s, in {:.1} s wall; moto's answers took {:.1} s summed",
        took.as_secs_f64(),
        moto_busy / 1000.0
    );
    let _ = std::fs::remove_file(&access_log);
    Ok(())
}

/// CPU seconds (user and system) the processes have used so far (0 for one that is gone).
fn cpu_secs(pids: &[u32]) -> f64 {
    let ticks = |pid: &u32| -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
    };
    // Linux counts in clock ticks of 1/100 s.
    pids.iter().filter_map(ticks).sum::<f64>() / 100.0
}

/// A function's environment.
type Env = Vec<(String, String)>;

/// The environment every function gets, as in the shared services account (template.yaml
/// logs at info).
async fn common_env(local: &LocalAws) -> Result<Env> {
    let mut common = local.function_env().await?;
    common.retain(|(k, _)| k != "RUST_LOG");
    common.push(("RUST_LOG".into(), "info".into()));
    Ok(common)
}

/// The worker's and the Lambda updater's environments, under `host`.
fn envs(local: &LocalAws, common: &[(String, String)], host: &LambdaHost) -> (Env, Env) {
    let mut worker = common.to_vec();
    worker.push(("AWS_ENDPOINT_URL_LAMBDA".into(), host.endpoint.clone()));
    worker.push(("AWS_ENDPOINT_URL_CODEPIPELINE".into(), local.emulator.endpoint.clone()));
    worker.push(("CROSSDEPLOY_LAMBDA_UPDATER".into(), "lambda-alias-updater".into()));
    worker.push(("CROSSDEPLOY_LEDGER_TABLE".into(), local.ledger_table.clone()));
    let mut updater = common.to_vec();
    updater.push(("CROSSDEPLOY_ALLOWED_TARGET_ROLES".into(), accounts::target_role(TARGET_ACCOUNT)));
    updater.push(("CROSSDEPLOY_EXTERNAL_ID".into(), EXTERNAL_ID.into()));
    updater.push(("CROSSDEPLOY_LEDGER_TABLE".into(), local.ledger_table.clone()));
    (worker, updater)
}

fn job_id_of(event: &serde_json::Value) -> &str {
    event["CodePipeline.job"]["id"].as_str().unwrap_or_default()
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
