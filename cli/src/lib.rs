//! `crossdeploy`: the ledger's history and status, and rollbacks through deploy-rollback, from a
//! terminal or a script.
//!
//! It finds AWS as every AWS tool does (profiles, `AWS_REGION`, `AWS_ENDPOINT_URL` and the
//! per-service `AWS_ENDPOINT_URL_<SERVICE>`), the ledger table from `--table` or
//! `CROSSDEPLOY_LEDGER_TABLE`, and deploy-rollback from `--function` or
//! `CROSSDEPLOY_ROLLBACK_FUNCTION`. Output is a table for people, `--output json` for scripts.
//! Exit codes: [`exit`].

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
#[command(name = "crossdeploy", version, about = "crossdeploy's ledger and rollbacks, for the people on call")]
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
            Some(c) if crossdeploy_aws_codes::is_access_denied(c) => CliError::Permission(text),
            _ => CliError::Failed(text),
        }
    }

    fn ledger(e: crossdeploy_ledger::LedgerError) -> Self {
        let denied = e.error.code.as_deref().is_some_and(crossdeploy_aws_codes::is_access_denied);
        if denied {
            CliError::Permission(e.to_string())
        } else {
            CliError::Failed(e.to_string())
        }
    }
}

/// AWS error codes that mean "denied".
mod crossdeploy_aws_codes {
    pub fn is_access_denied(code: &str) -> bool {
        matches!(
            code,
            "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "UnrecognizedClientException"
        )
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
    }
}

fn io(e: std::io::Error) -> CliError {
    CliError::Failed(format!("could not write the answer: {e}"))
}

async fn latest(ledger: &Ledger, key: &TargetKey) -> Result<Option<DeploymentRecord>, CliError> {
    Ok(ledger.deployments(key).await.map_err(CliError::ledger)?.into_iter().next())
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
    eprint!("Roll {target} back {what}? [y/N] ");
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
    let out = lambda
        .invoke()
        .function_name(function)
        .payload(aws_smithy_types::Blob::new(request.to_string()))
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
        return Err(CliError::Failed(format!("deploy-rollback ({function}) failed ({kind}): {text}")));
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
