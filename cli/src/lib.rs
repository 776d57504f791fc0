//! `crossdeploy`: the ledger's history and status, rollbacks through deploy-rollback, and
//! deployments run from here ([`deploy`]), from a terminal or a script.
//!
//! It finds AWS as every AWS tool does (profiles, `AWS_REGION`, `AWS_ENDPOINT_URL` and the
//! per-service `AWS_ENDPOINT_URL_<SERVICE>`), the ledger table from `--table` or
//! `CROSSDEPLOY_LEDGER_TABLE`, and deploy-rollback from `--function` or
//! `CROSSDEPLOY_ROLLBACK_FUNCTION`. Output is a table for people, `--output json` for scripts.
//! Exit codes: [`exit`].

pub mod deploy;
mod output;

use clap::{Parser, Subcommand, ValueEnum};
use crossdeploy_ledger::{DeploymentRecord, DeploymentStatus, Filter, Ledger, TargetKey, TargetParts};
use std::io::{BufRead, IsTerminal, Write};

/// Exit codes, by what went wrong.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The operation failed: an AWS call, or the rollback itself.
    pub const FAILED: u8 = 1;
    /// Bad usage (clap's own code).
    pub const USAGE: u8 = 2;
    /// The configuration is wrong: no ledger table, a target that is not one, nothing to act on.
    pub const CONFIGURATION: u8 = 3;
    /// AWS denied a call.
    pub const PERMISSION: u8 = 4;
    /// The rollback ran, and restored nothing (the target was left alone, or had nothing to restore).
    pub const NOTHING_RESTORED: u8 = 5;
}

#[derive(Debug, Parser)]
#[command(name = "crossdeploy", version, about = "crossdeploy's ledger, rollbacks and deployments, from anywhere")]
pub struct Cli {
    /// The ledger's DynamoDB table.
    #[arg(long, env = "CROSSDEPLOY_LEDGER_TABLE", global = true)]
    pub table: Option<String>,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Reads a command line (the program's name first), as the binary does.
    pub fn from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Cli as Parser>::try_parse_from(args)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The ledger's deployments, newest first: what stood before, what was deployed, how it
    /// ended, how long it took, and its rollback.
    History {
        /// A target (lambda/<account>/<region>/<function>/<alias> or
        /// ecs/<account>/<region>/<cluster>/<service>), or the start of one (lambda/222222222222).
        #[arg(long)]
        target: Option<String>,
        /// A pipeline's deployments only.
        #[arg(long)]
        pipeline: Option<String>,
        /// With --pipeline: one execution's deployments only.
        #[arg(long, requires = "pipeline")]
        execution: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Deployments in progress, the leases held and by whom, and the deployments waiting for
    /// their next continuation job.
    Status,
    /// Has deploy-rollback put a target back: on what stood before its latest successful
    /// deployment, or on the version or task definition given.
    Rollback {
        /// The target, as `history` shows it.
        #[arg(long)]
        target: String,
        /// The version (Lambda) or task definition ARN (ECS) to put back; absent: what stood
        /// before the target's latest successful deployment.
        #[arg(long)]
        to: Option<String>,
        /// Why, for the logs, the ledger and the alias description.
        #[arg(long)]
        reason: Option<String>,
        /// Do not ask for confirmation (required when there is no terminal to ask on).
        #[arg(long)]
        yes: bool,
        /// deploy-rollback's function name or ARN.
        #[arg(long, env = "CROSSDEPLOY_ROLLBACK_FUNCTION")]
        function: String,
        /// The target account's role; absent: the one the target's latest deployment used.
        #[arg(long)]
        role_arn: Option<String>,
    },
    /// Deploys from here, in this process, as a pipeline job would: the same ledger claim,
    /// lease, strategies, alarm gates and record. Progress on a terminal, plain lines otherwise.
    Deploy {
        #[command(subcommand)]
        kind: DeployKind,
    },
}

/// What `deploy` deploys, with the action's keys as flags (or from `--config`).
#[derive(Debug, Subcommand)]
pub enum DeployKind {
    /// A new version of a Lambda function behind an alias.
    Lambda {
        #[command(flatten)]
        common: DeployCommon,
        #[arg(long)]
        function_name: Option<String>,
        #[arg(long)]
        alias: Option<String>,
        /// The package's path inside a zip artifact; absent: the artifact is the package.
        #[arg(long)]
        artifact_path: Option<String>,
        /// Container-image functions: the file in the artifact naming the image.
        #[arg(long)]
        image_file: Option<String>,
        /// AllAtOnce, Canary<N>Percent<M>Minutes or Linear<N>PercentEvery<M>Minute(s).
        #[arg(long)]
        strategy: Option<String>,
    },
    /// New images for an ECS service.
    Ecs {
        #[command(flatten)]
        common: DeployCommon,
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        service: Option<String>,
        /// imagedefinitions.json (default) or an imageDetail.json.
        #[arg(long)]
        file_name: Option<String>,
        #[arg(long)]
        container_name: Option<String>,
        #[arg(long)]
        timeout_minutes: Option<u32>,
        /// Rolling, BlueGreen, Canary<N>Percent<M>Minutes or Linear<N>PercentEvery<M>Minute(s).
        #[arg(long)]
        strategy: Option<String>,
        #[arg(long)]
        bake_time_minutes: Option<u32>,
        /// Also set AlarmNames as the service's deployment alarms.
        #[arg(long)]
        ecs_alarms: bool,
    },
}

/// The keys and options both kinds take.
#[derive(Debug, clap::Args)]
pub struct DeployCommon {
    /// The artifact: a file (uploaded to --artifact-bucket first) or s3://bucket/key.
    #[arg(long)]
    pub artifact: String,
    /// Where a file artifact is uploaded.
    #[arg(long, env = "CROSSDEPLOY_ARTIFACT_BUCKET")]
    pub artifact_bucket: Option<String>,
    /// The action's keys as a JSON object (an Invoke action's UserParameters); flags override it.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    #[arg(long)]
    pub role_arn: Option<String>,
    /// Comma-separated alarms in the target account that gate the deployment.
    #[arg(long)]
    pub alarm_names: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// The name the ledger records as the deployment's pipeline.
    #[arg(long, default_value = "crossdeploy-cli")]
    pub pipeline: String,
}

/// Why a command failed, and its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Configuration(String),
    #[error("{0}")]
    Permission(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn code(&self) -> u8 {
        match self {
            CliError::Configuration(_) => exit::CONFIGURATION,
            CliError::Permission(_) => exit::PERMISSION,
            CliError::Failed(_) => exit::FAILED,
        }
    }

    fn aws(what: &str, code: Option<&str>, message: impl std::fmt::Display) -> Self {
        let text = format!("{what}: {}: {message}", code.unwrap_or("no answer from AWS"));
        match code {
            Some(c) if crossdeploy_aws::is_access_denied_code(c) => CliError::Permission(text),
            _ => CliError::Failed(text),
        }
    }

    fn ledger(e: crossdeploy_ledger::LedgerError) -> Self {
        let denied = e.error.code.as_deref().is_some_and(crossdeploy_aws::is_access_denied_code);
        if denied {
            CliError::Permission(e.to_string())
        } else {
            CliError::Failed(e.to_string())
        }
    }
}

/// Runs one command, with AWS found as every AWS tool finds it; writes its answer to `out` and
/// any error to `err`; returns the exit code.
pub async fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    run_with(cli, &config, out, err).await
}

/// [`run`] with the AWS configuration given.
pub async fn run_with(cli: Cli, config: &aws_config::SdkConfig, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match execute(&cli, config, out).await {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "crossdeploy: {e}");
            e.code()
        }
    }
}

async fn execute(cli: &Cli, config: &aws_config::SdkConfig, out: &mut dyn Write) -> Result<u8, CliError> {
    let ledger = || -> Result<Ledger, CliError> {
        let table = cli.table.as_deref().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            CliError::Configuration(
                "no ledger table: give --table or set CROSSDEPLOY_LEDGER_TABLE (template.yaml's LedgerTableName output)"
                    .to_owned(),
            )
        })?;
        Ok(Ledger::new(aws_sdk_dynamodb::Client::new(config), table))
    };
    match &cli.command {
        Command::History { target, pipeline, execution, limit } => {
            let filter = Filter { target: target.clone(), pipeline: pipeline.clone(), execution_id: execution.clone() };
            let records = ledger()?.history(&filter, *limit).await.map_err(CliError::ledger)?;
            output::history(out, cli.output, &records).map_err(io)?;
            Ok(exit::OK)
        }
        Command::Status => {
            let ledger = ledger()?;
            let status = Status::read(&ledger).await?;
            output::status(out, cli.output, &status).map_err(io)?;
            Ok(exit::OK)
        }
        Command::Rollback { target, to, reason, yes, function, role_arn } => {
            let key = TargetKey::parse(target).ok_or_else(|| {
                CliError::Configuration(format!(
                    "`{target}` is not a target: lambda/<account>/<region>/<function>/<alias> or ecs/<account>/<region>/<cluster>/<service>, as `crossdeploy history` shows them"
                ))
            })?;
            let role = match role_arn {
                Some(r) => r.clone(),
                None => latest(&ledger()?, &key).await?.map(|r| r.role_arn).ok_or_else(|| {
                    CliError::Configuration(format!(
                        "the ledger has no deployment of {target} to take its role from: give --role-arn"
                    ))
                })?,
            };
            let request = direct_request(&key, &role, to.as_deref(), reason.as_deref())?;
            if !yes {
                confirm(target, to.as_deref())?;
            }
            let report = invoke_rollback(config, function, &request).await?;
            output::rollback(out, cli.output, &report).map_err(io)?;
            Ok(rollback_code(&report))
        }
        Command::Deploy { kind } => {
            let (common, parameters) = parameters(kind)?;
            let run = deploy::run_length()?;
            let ledger = ledger()?;
            let table = cli.table.clone().unwrap_or_default();
            let artifact =
                deploy::artifact(config, &common.artifact, common.artifact_bucket.as_deref(), &mut std::io::stderr())
                    .await?;
            let deployment = deploy::LocalDeployment { parameters, artifact, pipeline: common.pipeline.clone() };
            let worker = std::sync::Arc::new(local_worker(config, ledger, &table));
            // On a terminal a spinner with the time gone and where the deployment stands (as of
            // its last continuation); elsewhere a plain line at each continuation.
            let terminal = std::io::stderr().is_terminal();
            let latest = std::sync::Arc::new(std::sync::Mutex::new("starting".to_owned()));
            let spinner = terminal.then(|| {
                let latest = latest.clone();
                tokio::spawn(async move {
                    const SPIN: [char; 4] = ['|', '/', '-', '\\'];
                    let started = std::time::Instant::now();
                    for n in 0usize.. {
                        let text = latest.lock().map(|t| t.clone()).unwrap_or_default();
                        let gone = started.elapsed().as_secs();
                        let _ = write!(
                            std::io::stderr(),
                            "\r\x1b[2K{} {:>2}m{:02}s  {text}",
                            SPIN[n % 4],
                            gone / 60,
                            gone % 60
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                })
            });
            let mut progress = |summary: &str, percent: Option<u8>| {
                let percent = percent.map(|p| format!("{p}%")).unwrap_or_else(|| "-".to_owned());
                if terminal {
                    if let Ok(mut t) = latest.lock() {
                        *t = format!("{percent:>4}  {summary}");
                    }
                } else {
                    // A closed stderr must not stop the deployment.
                    let _ = writeln!(std::io::stderr(), "in progress ({percent}): {summary}");
                }
            };
            let ended = deploy::run(worker, &deployment, run, &mut progress).await;
            if let Some(spinner) = spinner {
                spinner.abort();
                let _ = writeln!(std::io::stderr());
            }
            let ended = ended?;
            output::deployed(out, cli.output, &ended).map_err(io)?;
            Ok(match &ended.answer {
                crossdeploy_pipeline_job::JobAnswer::Success(_) => exit::OK,
                crossdeploy_pipeline_job::JobAnswer::Failure { failure_type, .. } => match failure_type {
                    crossdeploy_protocol::FailureType::ConfigurationError => exit::CONFIGURATION,
                    crossdeploy_protocol::FailureType::PermissionError => exit::PERMISSION,
                    crossdeploy_protocol::FailureType::JobFailed => exit::FAILED,
                },
            })
        }
    }
}

/// The action's keys: `--config`'s, with the flags set over them, and `Kind`.
fn parameters(kind: &DeployKind) -> Result<(&DeployCommon, serde_json::Value), CliError> {
    let (common, kind_name, keys): (&DeployCommon, &str, Vec<(&str, Option<String>)>) = match kind {
        DeployKind::Lambda { common, function_name, alias, artifact_path, image_file, strategy } => (
            common,
            "Lambda",
            vec![
                ("FunctionName", function_name.clone()),
                ("Alias", alias.clone()),
                ("ArtifactPath", artifact_path.clone()),
                ("ImageFile", image_file.clone()),
                ("DeploymentStrategy", strategy.clone()),
            ],
        ),
        DeployKind::Ecs {
            common,
            cluster,
            service,
            file_name,
            container_name,
            timeout_minutes,
            strategy,
            bake_time_minutes,
            ecs_alarms,
        } => (
            common,
            "Ecs",
            vec![
                ("ClusterName", cluster.clone()),
                ("ServiceName", service.clone()),
                ("FileName", file_name.clone()),
                ("ContainerName", container_name.clone()),
                ("TimeoutMinutes", timeout_minutes.map(|m| m.to_string())),
                ("DeploymentStrategy", strategy.clone()),
                ("BakeTimeMinutes", bake_time_minutes.map(|m| m.to_string())),
                ("EcsAlarms", ecs_alarms.then(|| "true".to_owned())),
            ],
        ),
    };
    let mut parameters = match &common.config {
        None => serde_json::json!({}),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Configuration(format!("cannot read {}: {e}", path.display())))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Configuration(format!("{} is not JSON: {e}", path.display())))?;
            if !value.is_object() {
                return Err(CliError::Configuration(format!(
                    "{} is not a JSON object of the action's keys",
                    path.display()
                )));
            }
            value
        }
    };
    parameters["Kind"] = serde_json::Value::String(kind_name.to_owned());
    let common_keys = [
        ("TargetRoleArn", common.role_arn.clone()),
        ("AlarmNames", common.alarm_names.clone()),
        ("Region", common.region.clone()),
    ];
    for (key, value) in common_keys.into_iter().chain(keys) {
        if let Some(v) = value {
            parameters[key] = serde_json::Value::String(v);
        }
    }
    Ok((common, parameters))
}

/// The worker, local: both updaters in this process, answers recorded and never sent. The
/// updaters find their allow-list and ExternalId where the functions do
/// (`CROSSDEPLOY_ALLOWED_TARGET_ROLES`, `CROSSDEPLOY_EXTERNAL_ID`), and the deploy policy too
/// (`CROSSDEPLOY_DEPLOY_POLICY`).
fn local_worker(
    config: &aws_config::SdkConfig,
    ledger: Ledger,
    table: &str,
) -> pipeline_job_worker::Worker<deploy::InProcessUpdaters> {
    let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_owned());
    let mut settings = pipeline_job_worker::Settings::new(region);
    settings.local = true;
    settings.policy = match crossdeploy_pipeline_job::policy::DeployPolicy::from_env() {
        Ok(None) => pipeline_job_worker::Policy::None,
        Ok(Some(policy)) => pipeline_job_worker::Policy::Enforced(std::sync::Arc::new(policy)),
        Err(e) => pipeline_job_worker::Policy::Broken(e),
    };
    pipeline_job_worker::Worker {
        codepipeline: aws_sdk_codepipeline::Client::new(config),
        invoker: deploy::InProcessUpdaters::new(
            config,
            || crossdeploy_credentials::TargetSessions::from_env(config),
            table,
        ),
        updaters: deploy::InProcessUpdaters::updaters(),
        ledger,
        settings,
    }
}

fn io(e: std::io::Error) -> CliError {
    CliError::Failed(format!("could not write the answer: {e}"))
}

/// The target's latest successful deployment (what deploy-rollback restores from).
async fn latest(ledger: &Ledger, key: &TargetKey) -> Result<Option<DeploymentRecord>, CliError> {
    Ok(ledger
        .deployments(key)
        .await
        .map_err(CliError::ledger)?
        .into_iter()
        .find(|r| r.status == DeploymentStatus::Succeeded))
}

/// What `status` shows.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    pub in_progress: Vec<DeploymentRecord>,
    pub leases: Vec<Lease>,
    pub waiting: Vec<Waiting>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Lease {
    pub target: String,
    pub deployment_id: String,
    pub pipeline: Option<String>,
    pub execution_id: Option<String>,
    pub job_id: Option<String>,
    /// Seconds since the epoch.
    pub since: u64,
    pub until: u64,
}

/// A deployment waiting for its next continuation job, and what its target serves meanwhile.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Waiting {
    pub deployment_id: String,
    pub target: String,
    pub serving: Option<String>,
    pub detail: Option<String>,
}

impl Status {
    async fn read(ledger: &Ledger) -> Result<Status, CliError> {
        let now = crossdeploy_ledger::now_secs();
        let in_progress: Vec<DeploymentRecord> = ledger
            .history(&Filter::default(), usize::MAX)
            .await
            .map_err(CliError::ledger)?
            .into_iter()
            .filter(|r| r.status == DeploymentStatus::InProgress)
            .collect();
        let leases = ledger
            .leases()
            .await
            .map_err(CliError::ledger)?
            .into_iter()
            .filter(|l| l.holder.until > now)
            .map(|l| Lease {
                target: l.target,
                deployment_id: l.holder.deployment_id,
                pipeline: l.holder.pipeline,
                execution_id: l.holder.execution_id,
                job_id: l.holder.job_id,
                since: l.holder.since,
                until: l.holder.until,
            })
            .collect();
        let continuations = ledger.continuations().await.map_err(CliError::ledger)?;
        let waiting = in_progress
            .iter()
            .filter_map(|r| {
                let c = continuations.iter().find(|c| c.deployment_id == r.deployment_id)?;
                Some(Waiting {
                    deployment_id: r.deployment_id.clone(),
                    target: r.target.as_str().to_owned(),
                    serving: c.stands.as_ref().map(|s| s.serving.as_str().to_owned()),
                    detail: c.stands.as_ref().map(|s| s.detail.clone()),
                })
            })
            .collect();
        Ok(Status { in_progress, leases, waiting })
    }
}

/// deploy-rollback's direct request for `key`.
fn direct_request(
    key: &TargetKey,
    role: &str,
    to: Option<&str>,
    reason: Option<&str>,
) -> Result<serde_json::Value, CliError> {
    let reason =
        reason.map(str::to_owned).unwrap_or_else(|| "rolled back with the crossdeploy command line".to_owned());
    let mut request = match key.parts() {
        Some(TargetParts::Lambda { region, function, alias, .. }) => serde_json::json!({
            "Kind": "Lambda", "TargetRoleArn": role, "FunctionName": function, "Alias": alias, "Region": region,
            "Reason": reason,
        }),
        Some(TargetParts::Ecs { region, cluster, service, .. }) => serde_json::json!({
            "Kind": "Ecs", "TargetRoleArn": role, "ClusterName": cluster, "ServiceName": service, "Region": region,
            "Reason": reason,
        }),
        None => return Err(CliError::Configuration(format!("`{key}` is not a target"))),
    };
    if let Some(to) = to {
        let field = if key.as_str().starts_with("lambda/") { "RestoreVersion" } else { "RestoreTaskDefinition" };
        request[field] = serde_json::Value::String(to.to_owned());
    }
    Ok(request)
}

/// Asks on the terminal; refuses where there is none to ask on.
fn confirm(target: &str, to: Option<&str>) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Configuration(
            "no terminal to ask for confirmation on: pass --yes to roll back".to_owned(),
        ));
    }
    let what = to.map(|t| format!("to {t}")).unwrap_or_else(|| "to what stood before its latest deployment".to_owned());
    let _ = write!(std::io::stderr(), "Roll {target} back {what}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(format!("could not read the answer: {e}")))?;
    match answer.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => Err(CliError::Configuration("not confirmed: nothing was done".to_owned())),
    }
}

/// deploy-rollback's report (its return value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub trigger: String,
    pub rollbacks: Vec<TargetReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetReport {
    pub deployment_id: String,
    pub target: String,
    pub result: String,
    pub message: String,
}

async fn invoke_rollback(
    config: &aws_config::SdkConfig,
    function: &str,
    request: &serde_json::Value,
) -> Result<Report, CliError> {
    let lambda = aws_sdk_lambda::Client::new(config);
    // Lambda runs a function for at most 15 minutes: an answer later than that will not come.
    let timeouts = aws_sdk_lambda::config::timeout::TimeoutConfig::builder()
        .operation_timeout(std::time::Duration::from_secs(16 * 60))
        .build();
    let out = lambda
        .invoke()
        .function_name(function)
        .payload(aws_smithy_types::Blob::new(request.to_string()))
        .customize()
        .config_override(aws_sdk_lambda::config::Config::builder().timeout_config(timeouts))
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_lambda::error::ProvideErrorMetadata;
            CliError::aws(
                &format!("failed to invoke deploy-rollback ({function})"),
                e.code(),
                e.message().unwrap_or(&e.to_string()),
            )
        })?;
    let body = out.payload.map(|p| p.into_inner()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if let Some(kind) = out.function_error {
        // deploy-rollback names its errors (`errorType`): a refused caller, nothing recorded to
        // restore, a request it cannot read.
        let error_type = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errorType"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let message = format!("deploy-rollback ({function}) failed ({kind}): {text}");
        return Err(match error_type.as_str() {
            "crossdeploy.NotAllowed" => CliError::Permission(message),
            "crossdeploy.NothingRecorded" | "crossdeploy.BadEvent" => CliError::Configuration(message),
            _ => CliError::Failed(message),
        });
    }
    serde_json::from_slice(&body).map_err(|e| {
        CliError::Failed(format!("deploy-rollback ({function}) answered what is not its report ({e}): {text}"))
    })
}

/// The exit code of a rollback's report.
pub fn rollback_code(report: &Report) -> u8 {
    let results: Vec<&str> = report.rollbacks.iter().map(|r| r.result.as_str()).collect();
    if results.is_empty() {
        return exit::NOTHING_RESTORED;
    }
    if results.contains(&"Failed") {
        return exit::FAILED;
    }
    if results.iter().all(|r| matches!(*r, "Restored" | "AlreadyRestored" | "HandledBefore" | "RolledBackByEcs")) {
        exit::OK
    } else {
        exit::NOTHING_RESTORED
    }
}
