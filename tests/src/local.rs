use crate::accounts::{self, EXTERNAL_ID, OTHER_ACCOUNT, SHARED_ACCOUNT, TARGET_ACCOUNT};
use crate::{Answer, Emulator, InProcessUpdater, Moto, NewJob, Result};
use aws_config::SdkConfig;
use crossdeploy_protocol::ArtifactLocation;
use pipeline_job_worker::Worker;
use std::sync::Arc;

/// The local AWS of one test or demo: moto, the CodePipeline emulator, credentials acting in
/// the shared services account and both target accounts, and an artifact bucket.
pub struct LocalAws {
    pub moto: Moto,
    pub emulator: Emulator,
    pub shared: SdkConfig,
    pub target: SdkConfig,
    pub other: SdkConfig,
    pub bucket: String,
    /// The ledger table, in the shared services account.
    pub ledger_table: String,
}

impl LocalAws {
    pub async fn start() -> Result<LocalAws> {
        Self::start_with_moto_env(&[]).await
    }

    /// As [`LocalAws::start`], with extra environment for moto's server
    /// (`CROSSDEPLOY_MOTO_ACCESS_LOG`, say).
    pub async fn start_with_moto_env(env: &[(&str, &str)]) -> Result<LocalAws> {
        let moto = Moto::start_with_env(env).await?;
        let emulator = Emulator::start().await?;
        let shared = accounts::account_config(&moto.endpoint, SHARED_ACCOUNT).await?;
        let target = accounts::account_config(&moto.endpoint, TARGET_ACCOUNT).await?;
        let other = accounts::account_config(&moto.endpoint, OTHER_ACCOUNT).await?;
        let bucket = accounts::artifact_bucket(&shared).await?;
        let ledger_table = accounts::create_ledger_table(&shared).await?;
        Ok(LocalAws { moto, emulator, shared, target, other, bucket, ledger_table })
    }

    /// As [`LocalAws::start`], with moto writing one JSON line per request it serves to the
    /// returned file (its access log: see [`assume_role_calls`]).
    pub async fn start_with_access_log(tag: &str) -> Result<(LocalAws, std::path::PathBuf)> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let log = std::env::temp_dir().join(format!("crossdeploy-{tag}-{}-{nanos}.jsonl", std::process::id()));
        let local = Self::start_with_moto_env(&[("CROSSDEPLOY_MOTO_ACCESS_LOG", &log.to_string_lossy())]).await?;
        Ok((local, log))
    }

    /// The roles the updaters may assume here: the crossdeploy role of both target accounts.
    pub fn allowed_roles() -> String {
        format!("{},{}", accounts::target_role(TARGET_ACCOUNT), accounts::target_role(OTHER_ACCOUNT))
    }

    /// The worker with both updaters in process, answering jobs through the emulator.
    pub fn worker(&self) -> Arc<Worker<InProcessUpdater>> {
        Arc::new(self.worker_with(InProcessUpdater::with_allow_list(
            &self.shared,
            &Self::allowed_roles(),
            EXTERNAL_ID,
            &self.ledger_table,
        )))
    }

    /// The worker with another way to reach the updaters (a fake, in tests of the worker itself).
    pub fn worker_with<I: pipeline_job_worker::Invoke>(&self, invoker: I) -> Worker<I> {
        Worker {
            codepipeline: self.codepipeline(),
            invoker,
            updaters: InProcessUpdater::updaters(),
            ledger: self.ledger(),
            settings: pipeline_job_worker::Settings::new(accounts::REGION),
        }
    }

    /// The rollback function, with both updaters in process.
    pub fn rollback(&self) -> deploy_rollback::Rollback<InProcessUpdater> {
        deploy_rollback::Rollback {
            ledger: self.ledger(),
            invoker: InProcessUpdater::with_allow_list(
                &self.shared,
                &Self::allowed_roles(),
                EXTERNAL_ID,
                &self.ledger_table,
            ),
            updaters: InProcessUpdater::updaters(),
            settings: deploy_rollback::Settings::new(accounts::REGION),
        }
    }

    /// A CodePipeline client (shared services account) talking to the emulator.
    pub fn codepipeline(&self) -> aws_sdk_codepipeline::Client {
        aws_sdk_codepipeline::Client::from_conf(
            aws_sdk_codepipeline::config::Builder::from(&self.shared).endpoint_url(&self.emulator.endpoint).build(),
        )
    }

    /// The ledger, in the shared services account.
    pub fn ledger(&self) -> crossdeploy_ledger::Ledger {
        crossdeploy_ledger::Ledger::new(aws_sdk_dynamodb::Client::new(&self.shared), &self.ledger_table)
    }

    /// Puts a build output into the artifact bucket.
    pub async fn upload(&self, key: &str, bytes: Vec<u8>) -> Result<ArtifactLocation> {
        accounts::put_artifact(&self.shared, &self.bucket, key, bytes).await?;
        Ok(ArtifactLocation { bucket: self.bucket.clone(), key: key.to_owned() })
    }

    /// Starts an Invoke-action job of pipeline `orders` and returns its event.
    pub fn job(&self, action: &str, user_parameters: &str, artifact: ArtifactLocation) -> serde_json::Value {
        self.emulator.start_invoke_job(NewJob {
            pipeline_name: "orders".into(),
            stage: "Deploy-dev".into(),
            action: action.into(),
            user_parameters: user_parameters.to_owned(),
            artifact,
            execution_id: None,
        })
    }

    /// The answers the emulator received for a job's event.
    pub fn answers_for(&self, event: &serde_json::Value) -> Vec<Answer> {
        let id = event["CodePipeline.job"]["id"].as_str().unwrap_or_default();
        self.emulator.answers().into_iter().filter(|a| a.job_id() == id).collect()
    }

    /// Environment for a function binary acting with the shared services account's credentials
    /// against this local AWS.
    pub async fn function_env(&self) -> Result<Vec<(String, String)>> {
        use aws_credential_types::provider::ProvideCredentials;
        let creds = self.shared.credentials_provider().ok_or("no credentials")?.provide_credentials().await?;
        Ok(vec![
            ("AWS_REGION".to_owned(), accounts::REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID".to_owned(), creds.access_key_id().to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), creds.secret_access_key().to_owned()),
            ("AWS_SESSION_TOKEN".to_owned(), creds.session_token().unwrap_or_default().to_owned()),
            ("AWS_ENDPOINT_URL".to_owned(), self.moto.endpoint.clone()),
            ("RUST_LOG".to_owned(), "debug".to_owned()),
        ])
    }

    /// The four functions under cargo-lambda's local runtime, with the environment they would
    /// have in the shared services account. Returns the runtime and each function's log.
    pub async fn run_functions(&self) -> Result<(crate::LocalLambda, Vec<std::path::PathBuf>)> {
        let mut lambda = crate::LocalLambda::start().await?;
        let common = self.function_env().await?;
        let mut updater_env = common.clone();
        updater_env.push(("CROSSDEPLOY_ALLOWED_TARGET_ROLES".into(), Self::allowed_roles()));
        updater_env.push(("CROSSDEPLOY_EXTERNAL_ID".into(), EXTERNAL_ID.into()));
        updater_env.push(("CROSSDEPLOY_LEDGER_TABLE".into(), self.ledger_table.clone()));
        let mut worker_env = common;
        worker_env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), lambda.endpoint.clone()));
        worker_env.push(("AWS_ENDPOINT_URL_CODEPIPELINE".into(), self.emulator.endpoint.clone()));
        worker_env.push(("CROSSDEPLOY_LAMBDA_UPDATER".into(), crate::LAMBDA_UPDATER.into()));
        worker_env.push(("CROSSDEPLOY_ECS_UPDATER".into(), crate::ECS_UPDATER.into()));
        worker_env.push(("CROSSDEPLOY_LEDGER_TABLE".into(), self.ledger_table.clone()));
        // deploy-rollback: the worker's environment but CodePipeline, which it never calls.
        let rollback_env: Vec<_> =
            worker_env.iter().filter(|(k, _)| k != "AWS_ENDPOINT_URL_CODEPIPELINE").cloned().collect();
        let logs = vec![
            lambda.run_function(crate::LAMBDA_UPDATER, &updater_env)?,
            lambda.run_function(crate::ECS_UPDATER, &updater_env)?,
            lambda.run_function("pipeline-job-worker", &worker_env)?,
            lambda.run_function("deploy-rollback", &rollback_env)?,
        ];
        Ok((lambda, logs))
    }
}

/// The AssumeRole calls moto's access log holds so far.
pub fn assume_role_calls(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|a| a["action"] == "AssumeRole")
        .count()
}
