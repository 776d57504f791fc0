//! crossdeploy's soak (`./scripts/soak`): many deployments through the local AWS while faults are
//! injected at the wire (mitmproxy, `tests/localaws/faults.py`, in front of moto, the CodePipeline
//! emulator and the local Lambda service) and processes are killed mid-deployment; invariants
//! checked after every scenario; figures printed at the end.
//!
//! The functions run as their real binaries under the soak's own Lambda service
//! (`crossdeploy_local::lambda_host`): real deadlines, kills, and CodePipeline's asynchronous
//! invocations retried as Lambda retries them (same event, same request id, up to twice).
//!
//! Usage: crossdeploy-soak --bin-dir DIR [--jobs N] [--fault-rate R] [--kill-rate K] [--seed S]
//!                         [--concurrency C]
//! Exits 1 when an invariant breaks, naming the seed and the scenario that broke it.

use aws_config::SdkConfig;
use bytes::Bytes;
use crossdeploy_ledger::{now_secs, DeploymentStatus, Ledger, TargetKey};
use crossdeploy_local::accounts::{self, EXTERNAL_ID, OTHER_ACCOUNT, REGION, SHARED_ACCOUNT, TARGET_ACCOUNT};
use crossdeploy_local::fixtures::{aws_event, build_artifact, code_sha256, event_time, lambda_package, zip_of};
use crossdeploy_local::lambda_host::{FunctionSpec, LambdaHost};
use crossdeploy_local::{
    ecs, free_port, Answer, Emulator, EmulatorSettings, Moto, NewCustomJob, NewJob, Result, Status,
};
use crossdeploy_protocol::ArtifactLocation;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKER: &str = "pipeline-job-worker";
const LAMBDA_UPDATER: &str = "lambda-alias-updater";
const ECS_UPDATER: &str = "ecs-taskdef-updater";
const ROLLBACK: &str = "deploy-rollback";
const ALIAS: &str = "live";
/// Lambda's asynchronous retries, shortened (Lambda waits about 1 and 2 minutes).
const ASYNC_RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
/// How long after a job's continuation answer its next job is invoked (CodePipeline does not
/// document it; it is seconds to minutes in practice).
const CONTINUATION_PAUSE: Duration = Duration::from_millis(500);

/// A seeded generator (splitmix64): a seed replays the same scenarios.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    LambdaInvoke,
    LambdaCustom,
    Canary,
    CanaryAlarm,
    Linear,
    EcsRolling,
    EcsFailing,
    Duplicate,
    TwoPipelines,
    StageFailedAfter,
    StageFailedDuring,
    DirectRollback,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::LambdaInvoke => "Lambda AllAtOnce, Invoke",
            Kind::LambdaCustom => "Lambda AllAtOnce, custom action",
            Kind::Canary => "Lambda canary",
            Kind::CanaryAlarm => "Lambda canary, alarm fires",
            Kind::Linear => "Lambda linear",
            Kind::EcsRolling => "ECS rolling",
            Kind::EcsFailing => "ECS rollout that never completes",
            Kind::Duplicate => "job delivered twice",
            Kind::TwoPipelines => "two pipelines, one target",
            Kind::StageFailedAfter => "stage FAILED after deploying",
            Kind::StageFailedDuring => "stage FAILED while deploying",
            Kind::DirectRollback => "direct rollback after deploying",
        }
    }

    /// The mix: mostly plain deployments, every other case regularly.
    fn draw(rng: &mut Rng) -> Kind {
        match rng.below(100) {
            0..=31 => Kind::LambdaInvoke,
            32..=34 => Kind::StageFailedDuring,
            35..=49 => Kind::LambdaCustom,
            50..=54 => Kind::Canary,
            55..=57 => Kind::CanaryAlarm,
            58..=61 => Kind::Linear,
            62..=71 => Kind::EcsRolling,
            72..=74 => Kind::EcsFailing,
            75..=81 => Kind::Duplicate,
            82..=87 => Kind::TwoPipelines,
            88..=94 => Kind::StageFailedAfter,
            _ => Kind::DirectRollback,
        }
    }

    /// A failed job is what this scenario expects.
    fn expects_failure(self) -> bool {
        matches!(self, Kind::CanaryAlarm | Kind::EcsFailing | Kind::StageFailedDuring)
    }
}

struct Args {
    bin_dir: PathBuf,
    jobs: usize,
    fault_rate: f64,
    kill_rate: f64,
    seed: u64,
    concurrency: usize,
}

fn parse_args() -> Result<Args> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let bin_dir = PathBuf::from(arg("--bin-dir").ok_or("--bin-dir <dir of the functions' host binaries> is required")?);
    let seed = match arg("--seed") {
        Some(s) => s.parse()?,
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64,
    };
    Ok(Args {
        bin_dir,
        jobs: arg("--jobs").map(|v| v.parse()).transpose()?.unwrap_or(100),
        fault_rate: arg("--fault-rate").map(|v| v.parse()).transpose()?.unwrap_or(0.10),
        kill_rate: arg("--kill-rate").map(|v| v.parse()).transpose()?.unwrap_or(0.05),
        seed,
        concurrency: arg("--concurrency").map(|v| v.parse()).transpose()?.unwrap_or(8).max(1),
    })
}

/// Everything a scenario works with.
struct Soak {
    /// Kept alive for the soak's length.
    _moto: Moto,
    emulator: Emulator,
    host: LambdaHost,
    /// Direct to moto (the soak's own checks suffer no faults).
    shared: SdkConfig,
    target: SdkConfig,
    ledger: Ledger,
    bucket: String,
    /// Free Lambda functions and ECS services: a scenario owns its target while it runs.
    functions: Pool<String>,
    services: Pool<(String, String)>,
    stuck_services: Pool<(String, String)>,
    figures: Mutex<Figures>,
    kill_rate: f64,
}

#[derive(Debug, Default)]
struct Figures {
    scenarios: BTreeMap<Kind, usize>,
    jobs: usize,
    answered_once: usize,
    lost: usize,
    answered_twice: usize,
    half_deploys: usize,
    ledger_disagreements: usize,
    leases_leaked: usize,
    unexpected_failures: usize,
    expected_failures: usize,
    failure_causes: BTreeMap<String, usize>,
    rollbacks: BTreeMap<String, usize>,
    violations: Vec<String>,
}

/// Targets a scenario takes for itself while it runs: one scenario per target at a time.
struct Pool<T> {
    items: Mutex<Vec<T>>,
    free: tokio::sync::Semaphore,
}

impl<T> Pool<T> {
    fn new(items: Vec<T>) -> Self {
        let n = items.len();
        Self { items: Mutex::new(items), free: tokio::sync::Semaphore::new(n) }
    }

    /// Waits for a free target and takes it.
    async fn take(&self) -> T {
        loop {
            if let Ok(permit) = self.free.acquire().await {
                permit.forget();
            }
            if let Some(item) = self.items.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                return item;
            }
        }
    }

    fn give(&self, item: T) {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).insert(0, item);
        self.free.add_permits(1);
    }
}

/// A scenario's verdict, added to the figures.
#[derive(Debug, Default)]
struct Verdict {
    violations: Vec<String>,
}

impl Verdict {
    fn fail(&mut self, what: String) {
        self.violations.push(what);
    }
}

/// How a chain of jobs (a job and its continuation jobs) ended.
#[derive(Debug, Clone)]
struct Chain {
    jobs: Vec<String>,
    last: Option<Answer>,
}

impl Chain {
    fn succeeded(&self) -> Option<&BTreeMap<String, String>> {
        match &self.last {
            Some(Answer::Success { continuation_token: None, output_variables, .. }) => Some(output_variables),
            _ => None,
        }
    }
    fn failure(&self) -> Option<(&str, &str)> {
        match &self.last {
            Some(Answer::Failure { failure_type, message, .. }) => Some((failure_type, message)),
            _ => None,
        }
    }
}

fn id(event: &Value) -> String {
    event["CodePipeline.job"]["id"].as_str().unwrap_or_default().to_owned()
}

fn cause(message: &str) -> String {
    let m = message.to_lowercase();
    let c = if m.contains("was condemned") {
        "condemned: an action of its stage failed (rolled back)"
    } else if m.contains("is in alarm") {
        "an alarm fired"
    } else if m.contains("did not complete within") {
        "ECS rollout timed out (TimeoutMinutes)"
    } else if m.contains("gave no outcome") {
        "the updater gave no outcome 3 times"
    } else if m.contains("ledger table") {
        "the ledger"
    } else if m.contains("rolled back") {
        "rolled back (stage failed while it ran)"
    } else if m.contains("changed while crossdeploy was deploying") {
        "the target changed meanwhile"
    } else if m.contains("is being deployed by") {
        "waited too long for another deployment"
    } else if m.contains("internal error (a panic)") || m.contains("ran out of time") {
        "the worker cut short"
    } else {
        return message.chars().take(90).collect();
    };
    c.to_owned()
}

impl Soak {
    async fn take_function(&self) -> String {
        self.functions.take().await
    }

    async fn give_function(&self, f: String) {
        self.functions.give(f)
    }

    async fn take_service(&self, stuck: bool) -> (String, String) {
        if stuck {
            self.stuck_services.take().await
        } else {
            self.services.take().await
        }
    }

    async fn give_service(&self, s: (String, String), stuck: bool) {
        if stuck {
            self.stuck_services.give(s)
        } else {
            self.services.give(s)
        }
    }

    async fn upload(&self, key: &str, bytes: Vec<u8>) -> Result<ArtifactLocation> {
        accounts::put_artifact(&self.shared, &self.bucket, key, bytes).await?;
        Ok(ArtifactLocation { bucket: self.bucket.clone(), key: key.to_owned() })
    }

    /// A process of `function` killed a moment into the scenario, if the dice say so.
    fn maybe_kill(self: &Arc<Self>, rng: &mut Rng) {
        if !rng.chance(self.kill_rate) {
            return;
        }
        let victim = [WORKER, LAMBDA_UPDATER, ECS_UPDATER][rng.below(3) as usize];
        let after = Duration::from_millis(200 + rng.below(4000));
        let soak = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            soak.host.kill_one(victim);
        });
    }

    /// An Invoke action's job and its continuation jobs, each delivered to the worker as
    /// CodePipeline does (asynchronously, retried by Lambda with the same request id).
    async fn invoke_chain(self: &Arc<Self>, first: Value, rng: &mut Rng, duplicate: bool) -> Chain {
        let mut chain = Chain { jobs: vec![id(&first)], last: None };
        // Bounded by time, as CodePipeline bounds an action, not by a count of jobs: a chain
        // waiting through continuation behind a slow holder may take many jobs.
        let bound = Instant::now() + Duration::from_secs(900);
        while Instant::now() < bound {
            let job = chain.jobs.last().cloned().unwrap_or_default();
            let Some(event) = self.emulator.invoke_event_of(&job) else { break };
            let payload = Bytes::from(event.to_string());
            self.maybe_kill(rng);
            let deliveries = if duplicate && chain.jobs.len() == 1 { 2 } else { 1 };
            let mut runs = Vec::new();
            for _ in 0..deliveries {
                let (soak, payload) = (self.clone(), payload.clone());
                let request_id = format!("soak-{}", rng.next());
                runs.push(tokio::spawn(async move {
                    soak.host.invoke_async(WORKER, payload, request_id, &ASYNC_RETRIES).await
                }));
            }
            for run in runs {
                let _ = run.await;
            }
            let answers = self.emulator.answers_of(&job);
            match answers.first() {
                Some(Answer::Success { continuation_token: Some(_), .. }) => match self.emulator.next_of(&job) {
                    Some(next) => {
                        chain.jobs.push(next);
                        // CodePipeline invokes the continuation some time later, not at once.
                        tokio::time::sleep(CONTINUATION_PAUSE).await;
                    }
                    None => break,
                },
                Some(last) => {
                    chain.last = Some(last.clone());
                    break;
                }
                None => break,
            }
        }
        chain
    }

    /// A custom action's job and its continuation jobs: the STARTED event wakes the worker, the
    /// schedule (every few seconds, see `schedule`) is the safety net and picks continuations up.
    async fn custom_chain(self: &Arc<Self>, first: String, rng: &mut Rng) -> Chain {
        let started = json!({
            "version": "0", "id": format!("started-{first}"), "detail-type": "CodePipeline Action Execution State Change",
            "source": "aws.codepipeline", "account": SHARED_ACCOUNT, "region": REGION,
            "detail": {"pipeline": "soak", "execution-id": "x", "stage": "Deploy", "action": "Deploy", "state": "STARTED",
                       "type": {"owner": "Custom", "category": "Deploy", "provider": "CrossdeployLambda", "version": "1"}}
        });
        let soak = self.clone();
        let request_id = format!("soak-{}", rng.next());
        tokio::spawn(async move {
            soak.host.invoke_async(WORKER, Bytes::from(started.to_string()), request_id, &ASYNC_RETRIES).await
        });
        self.maybe_kill(rng);
        let mut chain = Chain { jobs: vec![first], last: None };
        let bound = Instant::now() + Duration::from_secs(900);
        while Instant::now() < bound {
            let job = chain.jobs.last().cloned().unwrap_or_default();
            if let Some(Status::Queued | Status::Dispatched | Status::InProgress) = self.emulator.status(&job) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            match self.emulator.answers_of(&job).first() {
                Some(Answer::Success { continuation_token: Some(_), .. }) => match self.emulator.next_of(&job) {
                    Some(next) => chain.jobs.push(next),
                    None => break,
                },
                Some(last) => {
                    chain.last = Some(last.clone());
                    break;
                }
                None => break, // timed out unanswered
            }
        }
        chain
    }

    /// Every job of the chain answered exactly once; none lost.
    fn check_answers(&self, chain: &Chain, verdict: &mut Verdict) {
        let mut f = self.figures.lock().unwrap_or_else(|p| p.into_inner());
        for job in &chain.jobs {
            f.jobs += 1;
            let n = self.emulator.answers_of(job).len();
            if n == 1 {
                f.answered_once += 1;
            } else {
                f.lost += 1;
                drop(f);
                verdict.fail(format!("job {job} got no answer (status {:?})", self.emulator.status(job)));
                f = self.figures.lock().unwrap_or_else(|p| p.into_inner());
            }
            if self.emulator.conflicting_answers().contains(job) {
                f.answered_twice += 1;
                drop(f);
                verdict.fail(format!("job {job} was sent two different answers"));
                f = self.figures.lock().unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    fn note_failure(&self, kind: Kind, chain: &Chain, verdict: &mut Verdict) {
        if let Some((_, message)) = chain.failure() {
            let mut f = self.figures.lock().unwrap_or_else(|p| p.into_inner());
            *f.failure_causes.entry(cause(message)).or_default() += 1;
            if kind.expects_failure() {
                f.expected_failures += 1;
            } else {
                f.unexpected_failures += 1;
            }
        }
        if chain.last.is_none() {
            verdict.fail("the chain ended without a final answer".into());
        }
    }

    /// The target serves what the answer says: the new version with no routing after a
    /// success, what stood before after a failure; the ledger agrees; no live lease is left.
    async fn check_lambda(&self, function: &str, before: &str, chain: &Chain, package: &[u8], verdict: &mut Verdict) {
        let Ok(mut state) = accounts::function_state(&self.target, function, ALIAS).await else {
            verdict.fail(format!("{function} could not be read"));
            return;
        };
        let left_changed = !(state.alias_routing.is_empty() && state.alias_version == before);
        if chain.succeeded().is_none()
            && chain.failure().is_some()
            && left_changed
            && self.finish_failed_action(chain, &format!("Deploy-{function}")).await
        {
            match accounts::function_state(&self.target, function, ALIAS).await {
                Ok(s) => state = s,
                Err(_) => {
                    verdict.fail(format!("{function} could not be read"));
                    return;
                }
            }
        }
        let routing_clear = state.alias_routing.is_empty();
        let half = match (chain.succeeded(), chain.failure()) {
            (Some(out), _) => {
                let version = out.get("FunctionVersion").map(String::as_str).unwrap_or_default();
                !(routing_clear && state.alias_version == version && state.alias_version_sha == code_sha256(package))
            }
            (None, Some(_)) => !(routing_clear && state.alias_version == before),
            _ => false,
        };
        if half {
            self.figures.lock().unwrap_or_else(|p| p.into_inner()).half_deploys += 1;
            verdict.fail(format!(
                "half deploy: {function} alias {ALIAS} on {} with routing {:?} after {:?} (before: {before})",
                state.alias_version, state.alias_routing, chain.last
            ));
        }
        self.check_ledger(
            &TargetKey::lambda(TARGET_ACCOUNT, REGION, function, ALIAS),
            chain,
            &state.alias_version,
            verdict,
        )
        .await;
    }

    async fn check_ledger(&self, target: &TargetKey, chain: &Chain, serving: &str, verdict: &mut Verdict) {
        match self.ledger.deployments(target).await {
            Ok(records) => {
                let latest = records.first();
                let agrees = match (latest, chain.succeeded(), chain.failure()) {
                    (Some(r), Some(_), _) => {
                        r.status == DeploymentStatus::Succeeded && r.deployed.as_deref() == Some(serving)
                    }
                    (Some(r), None, Some(_)) => r.status != DeploymentStatus::InProgress,
                    (None, None, Some(_)) => true, // refused before a deployment started
                    _ => chain.last.is_none(),
                };
                if !agrees {
                    self.figures.lock().unwrap_or_else(|p| p.into_inner()).ledger_disagreements += 1;
                    verdict.fail(format!(
                        "the ledger disagrees about {target}: {latest:?} vs {serving} after {:?}",
                        chain.last
                    ));
                }
            }
            Err(e) => verdict.fail(format!("the ledger could not be read: {e}")),
        }
        match self.ledger.lease_holder(target).await {
            Ok(Some(h)) if h.until >= now_secs() => {
                self.figures.lock().unwrap_or_else(|p| p.into_inner()).leases_leaked += 1;
                verdict.fail(format!("a lease on {target} outlived its job: held by {h} until {}", h.until));
            }
            Ok(_) => {}
            Err(e) => verdict.fail(format!("the lease could not be read: {e}")),
        }
    }

    fn lambda_params(function: &str, strategy: &str, alarm: bool) -> Value {
        let mut p = json!({
            "Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": function,
            "Alias": ALIAS, "ArtifactPath": "lambda.zip", "DeploymentStrategy": strategy,
        });
        if alarm {
            p["AlarmNames"] = json!(alarm_of(function));
        }
        p
    }

    fn invoke_job(&self, function: &str, params: &Value, artifact: ArtifactLocation, pipeline: &str) -> Value {
        self.emulator.start_invoke_job(NewJob {
            pipeline_name: pipeline.into(),
            stage: "Deploy".into(),
            action: format!("Deploy-{function}"),
            user_parameters: params.to_string(),
            artifact,
            execution_id: None,
        })
    }

    async fn alias_version(&self, function: &str) -> String {
        accounts::function_state(&self.target, function, ALIAS).await.map(|s| s.alias_version).unwrap_or_default()
    }

    /// One scenario, start to finish, its invariants checked.
    async fn scenario(self: Arc<Self>, n: usize, kind: Kind, mut rng: Rng) -> Verdict {
        let mut verdict = Verdict::default();
        *self.figures.lock().unwrap_or_else(|p| p.into_inner()).scenarios.entry(kind).or_default() += 1;
        match kind {
            Kind::EcsRolling | Kind::EcsFailing => self.ecs_scenario(n, kind, &mut rng, &mut verdict).await,
            Kind::TwoPipelines => self.two_pipelines(n, &mut rng, &mut verdict).await,
            _ => self.lambda_scenario(n, kind, &mut rng, &mut verdict).await,
        }
        verdict
    }

    async fn lambda_scenario(self: &Arc<Self>, n: usize, kind: Kind, rng: &mut Rng, verdict: &mut Verdict) {
        let function = self.take_function().await;
        let before = self.alias_version(&function).await;
        let package = lambda_package(&format!("{function}-{n}"));
        let artifact = match self.upload(&format!("soak/{n}.zip"), build_artifact("lambda.zip", &package)).await {
            Ok(a) => a,
            Err(e) => {
                verdict.fail(format!("upload: {e}"));
                self.give_function(function).await;
                return;
            }
        };
        let strategy = match kind {
            Kind::Canary | Kind::CanaryAlarm | Kind::StageFailedDuring => "Canary10Percent1Minutes",
            Kind::Linear => "Linear50PercentEvery1Minute",
            _ => "AllAtOnce",
        };
        let params = Self::lambda_params(&function, strategy, true);
        let mut alarm_firing = None;
        let chain = if kind == Kind::LambdaCustom {
            let mut configuration: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in params.as_object().into_iter().flatten() {
                if k != "Kind" {
                    configuration.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
                }
            }
            let job = self.emulator.start_custom_job(NewCustomJob {
                provider: "CrossdeployLambda".into(),
                pipeline_name: "soak".into(),
                stage: "Deploy".into(),
                action: format!("Deploy-{function}"),
                configuration,
                artifact,
                execution_id: None,
            });
            self.custom_chain(job, rng).await
        } else {
            let event = self.invoke_job(&function, &params, artifact, "soak");
            if kind == Kind::CanaryAlarm {
                // The alarm fires while traffic shifts; an alarm event reaches deploy-rollback too.
                // Only while the deployment runs: once it has ended, the alarm is put back to OK
                // (below), and an alarm firing after that would leak into the function's next scenario.
                let (soak, function) = (self.clone(), function.clone());
                let fire_after = Duration::from_secs(8 + rng.below(20));
                let (ended, mut ending) = tokio::sync::oneshot::channel::<()>();
                alarm_firing = Some((
                    ended,
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = tokio::time::sleep(fire_after) => {}
                            _ = &mut ending => return,
                        }
                        let alarm = alarm_of(&function);
                        let _ = accounts::set_alarm_state(
                            &soak.target,
                            &alarm,
                            aws_sdk_cloudwatch::types::StateValue::Alarm,
                            "soak",
                        )
                        .await;
                        let event = alarm_event(&alarm);
                        soak.host
                            .invoke_async(
                                ROLLBACK,
                                Bytes::from(event.to_string()),
                                format!("alarm-{alarm}"),
                                &ASYNC_RETRIES,
                            )
                            .await;
                    }),
                ));
            }
            if kind == Kind::StageFailedDuring {
                // Another action of the stage fails while this canary bakes: the deployment is
                // condemned in the ledger, and rolled back by its worker as it ends.
                let (soak, execution) = (self.clone(), self.emulator.execution_of(&id(&event)).unwrap_or_default());
                let after = Duration::from_secs(5 + rng.below(15));
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let failed = stage_failed(&execution);
                    soak.host
                        .invoke_async(
                            ROLLBACK,
                            Bytes::from(failed.to_string()),
                            format!("during-{execution}"),
                            &ASYNC_RETRIES,
                        )
                        .await;
                });
            }
            self.invoke_chain(event, rng, kind == Kind::Duplicate).await
        };
        // The deployment has ended: an alarm not fired yet never fires; one firing is let finish.
        if let Some((ended, firing)) = alarm_firing.take() {
            let _ = ended.send(());
            let _ = firing.await;
        }
        self.check_answers(&chain, verdict);
        self.note_failure(kind, &chain, verdict);
        self.check_lambda(&function, &before, &chain, &package, verdict).await;
        if kind == Kind::CanaryAlarm {
            let _ = accounts::set_alarm_state(
                &self.target,
                &alarm_of(&function),
                aws_sdk_cloudwatch::types::StateValue::Ok,
                "soak",
            )
            .await;
        }
        if chain.succeeded().is_some() && matches!(kind, Kind::StageFailedAfter | Kind::DirectRollback) {
            self.rollback_after(kind, &function, &before, &chain, verdict).await;
        }
        self.give_function(function).await;
    }

    /// A failed job that left its target changed (an updater killed over and over, say) says
    /// the ledger records what stands. CodePipeline then emits the action's FAILED event, and
    /// deploy-rollback, which EventBridge hands it to, finishes the job: delivered here as
    /// EventBridge does (asynchronously, retried). Returns whether it was delivered.
    async fn finish_failed_action(&self, chain: &Chain, action: &str) -> bool {
        let Some(execution) = chain.jobs.first().and_then(|j| self.emulator.execution_of(j)) else { return false };
        let event = action_failed(&execution, action);
        let ends = self
            .host
            .invoke_async(ROLLBACK, Bytes::from(event.to_string()), format!("failed-{}", chain.jobs[0]), &ASYNC_RETRIES)
            .await;
        let result = rollback_result(&ends);
        let mut f = self.figures.lock().unwrap_or_else(|p| p.into_inner());
        *f.rollbacks.entry(format!("{result} (a failed action's own)")).or_default() += 1;
        true
    }

    /// A deployment that succeeded is condemned: its stage failed, or someone asks directly.
    /// deploy-rollback puts back what stood before.
    async fn rollback_after(&self, kind: Kind, function: &str, before: &str, chain: &Chain, verdict: &mut Verdict) {
        let event = match kind {
            Kind::StageFailedAfter => {
                let Some(execution) = chain.jobs.first().and_then(|j| self.emulator.execution_of(j)) else { return };
                stage_failed(&execution)
            }
            _ => {
                json!({"Kind": "Lambda", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "FunctionName": function,
                        "Alias": ALIAS, "Reason": "soak: direct rollback"})
            }
        };
        let ends = self
            .host
            .invoke_async(ROLLBACK, Bytes::from(event.to_string()), format!("rb-{}", chain.jobs[0]), &ASYNC_RETRIES)
            .await;
        let result = rollback_result(&ends);
        *self.figures.lock().unwrap_or_else(|p| p.into_inner()).rollbacks.entry(result.clone()).or_default() += 1;
        let now = self.alias_version(function).await;
        if now != before {
            verdict.fail(format!("rollback ({}) left {function} on {now}, not {before}: {result}", kind.name()));
        }
    }

    async fn two_pipelines(self: &Arc<Self>, n: usize, rng: &mut Rng, verdict: &mut Verdict) {
        let function = self.take_function().await;
        let mut events = Vec::new();
        let mut packages = Vec::new();
        for (i, pipeline) in ["soak", "soak-other"].into_iter().enumerate() {
            let package = lambda_package(&format!("{function}-{n}-{i}"));
            let artifact = match self.upload(&format!("soak/{n}-{i}.zip"), build_artifact("lambda.zip", &package)).await
            {
                Ok(a) => a,
                Err(e) => {
                    verdict.fail(format!("upload: {e}"));
                    self.give_function(function).await;
                    return;
                }
            };
            events.push(self.invoke_job(
                &function,
                &Self::lambda_params(&function, "AllAtOnce", false),
                artifact,
                pipeline,
            ));
            packages.push(package);
        }
        let (a, b) = (events[0].clone(), events[1].clone());
        let (sa, sb) = (self.clone(), self.clone());
        let (mut ra, mut rb) = (Rng(rng.next()), Rng(rng.next()));
        let ta = tokio::spawn(async move { sa.invoke_chain(a, &mut ra, false).await });
        let tb = tokio::spawn(async move { sb.invoke_chain(b, &mut rb, false).await });
        let chains = [ta.await, tb.await];
        let mut last_success: Option<(u64, String, usize)> = None;
        for (i, chain) in chains.iter().enumerate() {
            let Ok(chain) = chain else {
                verdict.fail("a chain's task ended abnormally".into());
                continue;
            };
            self.check_answers(chain, verdict);
            self.note_failure(Kind::TwoPipelines, chain, verdict);
            if let Some(out) = chain.succeeded() {
                let v = out.get("FunctionVersion").cloned().unwrap_or_default();
                let order = v.parse::<u64>().unwrap_or(0);
                if last_success.as_ref().is_none_or(|(o, _, _)| order > *o) {
                    last_success = Some((order, v, i));
                }
            }
        }
        if let Some((_, version, i)) = last_success {
            // A failed action whose deployment left the alias elsewhere (an updater whose
            // answers were all lost after it had moved it): CodePipeline emits the action's
            // FAILED event, and deploy-rollback puts back what stood before it, as in the
            // single-pipeline scenarios.
            let moved = accounts::function_state(&self.target, &function, ALIAS)
                .await
                .is_ok_and(|s| s.alias_version != version || !s.alias_routing.is_empty());
            if moved {
                for chain in chains.iter().flatten() {
                    if chain.succeeded().is_none() && chain.failure().is_some() {
                        self.finish_failed_action(chain, &format!("Deploy-{function}")).await;
                    }
                }
            }
            let state = accounts::function_state(&self.target, &function, ALIAS).await;
            match state {
                Ok(s)
                    if s.alias_version == version
                        && s.alias_routing.is_empty()
                        && s.alias_version_sha == code_sha256(&packages[i]) => {}
                other => {
                    self.figures.lock().unwrap_or_else(|p| p.into_inner()).half_deploys += 1;
                    verdict.fail(format!(
                        "two pipelines on {function}: the later success was {version}, the alias is {other:?}"
                    ));
                }
            }
        }
        self.give_function(function).await;
    }

    async fn ecs_scenario(self: &Arc<Self>, n: usize, kind: Kind, rng: &mut Rng, verdict: &mut Verdict) {
        let stuck = kind == Kind::EcsFailing;
        let (cluster, service) = self.take_service(stuck).await;
        let before = ecs::running_task_definition(&self.target, &cluster, &service).await.unwrap_or_default();
        let image = format!("{}:{n}", ecs::OLD_IMAGE.trim_end_matches(":old"));
        let file = json!([{"name": "web", "imageUri": image}]).to_string();
        let artifact = match self
            .upload(&format!("soak/{n}-ecs.zip"), zip_of(&[("imagedefinitions.json", file.as_bytes())]))
            .await
        {
            Ok(a) => a,
            Err(e) => {
                verdict.fail(format!("upload: {e}"));
                self.give_service((cluster, service), stuck).await;
                return;
            }
        };
        let params = json!({
            "Kind": "Ecs", "TargetRoleArn": accounts::target_role(TARGET_ACCOUNT), "ClusterName": cluster,
            "ServiceName": service, "TimeoutMinutes": if stuck { "1" } else { "10" },
        });
        let event = self.emulator.start_invoke_job(NewJob {
            pipeline_name: "soak".into(),
            stage: "Deploy".into(),
            action: format!("Deploy-{service}"),
            user_parameters: params.to_string(),
            artifact,
            execution_id: None,
        });
        let chain = self.invoke_chain(event, rng, false).await;
        self.check_answers(&chain, verdict);
        self.note_failure(kind, &chain, verdict);
        let mut now = ecs::running_task_definition(&self.target, &cluster, &service).await.unwrap_or_default();
        if chain.succeeded().is_none()
            && chain.failure().is_some()
            && now != before
            && self.finish_failed_action(&chain, &format!("Deploy-{service}")).await
        {
            now = ecs::running_task_definition(&self.target, &cluster, &service).await.unwrap_or_default();
        }
        let half = match (chain.succeeded(), chain.failure()) {
            (Some(out), _) => out.get("TaskDefinitionArn") != Some(&now),
            (None, Some(_)) => now != before,
            _ => false,
        };
        if half {
            self.figures.lock().unwrap_or_else(|p| p.into_inner()).half_deploys += 1;
            verdict.fail(format!("half deploy: {service} runs {now} after {:?} (before: {before})", chain.last));
        }
        if stuck && chain.succeeded().is_some() {
            verdict.fail(format!("a rollout that never completes succeeded on {service}"));
        }
        self.check_ledger(&TargetKey::ecs(TARGET_ACCOUNT, REGION, &cluster, &service), &chain, &now, verdict).await;
        self.give_service((cluster, service), stuck).await;
    }
}

/// What deploy-rollback's last invocation reported for its first rollback.
fn rollback_result(ends: &[crossdeploy_local::lambda_host::Invocation]) -> String {
    match ends.last() {
        Some(crossdeploy_local::lambda_host::Invocation::Answered(body)) => {
            let report: Value = serde_json::from_slice(body).unwrap_or_default();
            report["Rollbacks"][0]["Result"].as_str().unwrap_or("none").to_owned()
        }
        Some(crossdeploy_local::lambda_host::Invocation::FunctionError(t, m)) => format!("{t}: {}", cause(m)),
        None => "none".into(),
    }
}

/// "CodePipeline Action Execution State Change" FAILED, for an action `Tests` of the stage the
/// soak's jobs deploy in.
fn stage_failed(execution: &str) -> Value {
    action_failed(execution, "Tests")
}

/// "CodePipeline Action Execution State Change" FAILED for `action` of the soak's stage, as
/// CodePipeline emits for every action that fails (crossdeploy's own included).
fn action_failed(execution: &str, action: &str) -> Value {
    aws_event(
        "codepipeline-action-failed.json",
        &[
            ("/id", json!(format!("failed-{execution}-{action}"))),
            ("/time", json!(event_time(0))),
            ("/detail/pipeline", json!("soak")),
            ("/detail/execution-id", json!(execution)),
            ("/detail/stage", json!("Deploy")),
            ("/detail/action", json!(action)),
        ],
    )
    .unwrap_or_default()
}

fn alarm_of(function: &str) -> String {
    format!("{function}-errors")
}

fn alarm_event(alarm: &str) -> Value {
    json!({
        "version": "0", "id": format!("alarm-{alarm}-{}", now_secs()), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": TARGET_ACCOUNT, "time": event_time(0), "region": REGION,
        "resources": [format!("arn:aws:cloudwatch:{REGION}:{TARGET_ACCOUNT}:alarm:{alarm}")],
        "detail": {"alarmName": alarm, "state": {"value": "ALARM", "reason": "soak", "timestamp": event_time(0)},
                   "previousState": {"value": "OK"}, "configuration": {}}
    })
}

/// mitmdump in reverse mode in front of each upstream, with the fault addon. Returns the
/// process and each upstream's proxy endpoint, in order.
fn start_proxy(
    args: &Args,
    upstreams: &[&str],
    fault_log: &std::path::Path,
) -> Result<(std::process::Child, Vec<String>)> {
    let mitmdump = crossdeploy_local::soak_venv_bin("mitmdump")?;
    let addon = crossdeploy_local::workspace_root().join("tests/localaws/faults.py");
    let confdir = std::env::temp_dir().join(format!("crossdeploy-mitm-{}", std::process::id()));
    std::fs::create_dir_all(&confdir)?;
    let mut cmd = std::process::Command::new(mitmdump);
    let mut endpoints = Vec::new();
    for upstream in upstreams {
        let port = free_port()?;
        cmd.args(["--mode", &format!("reverse:{upstream}@{port}")]);
        endpoints.push(format!("http://127.0.0.1:{port}"));
    }
    let (log, file) = crossdeploy_local::open_log("mitmdump")?;
    cmd.args(["-s", &addon.to_string_lossy()])
        .args(["--set", &format!("confdir={}", confdir.display())])
        .args(["--set", "keep_host_header=true"])
        .args(["--set", "flow_detail=0"])
        .args(["--set", "termlog_verbosity=warn"])
        .args(["--set", &format!("fault_rate={}", args.fault_rate)])
        .args(["--set", &format!("fault_seed={}", args.seed)])
        .args(["--set", &format!("fault_log={}", fault_log.display())])
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let child = cmd.spawn().map_err(|e| format!("mitmdump: {e} (log {})", log.display()))?;
    Ok((child, endpoints))
}

async fn wait_for_port(endpoint: &str, limit: Duration) -> Result<()> {
    let addr = endpoint.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        if started.elapsed() > limit {
            return Err(format!("{endpoint} did not listen within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let started = Instant::now();
    println!(
        "crossdeploy soak: {} scenarios, fault rate {:.0}%, kill rate {:.0}%, seed {}, concurrency {}",
        args.jobs,
        args.fault_rate * 100.0,
        args.kill_rate * 100.0,
        args.seed,
        args.concurrency
    );

    // The local AWS, direct.
    let moto = Moto::start_with_env(&[("MOTO_ECS_SERVICE_RUNNING", "1")]).await?;
    let emulator = Emulator::start_with(EmulatorSettings {
        job_timeout: Duration::from_secs(300),
        ack_timeout: Duration::from_secs(60),
        ..EmulatorSettings::default()
    })
    .await?;
    let shared = accounts::account_config(&moto.endpoint, SHARED_ACCOUNT).await?;
    let target = accounts::account_config(&moto.endpoint, TARGET_ACCOUNT).await?;
    let bucket = accounts::artifact_bucket(&shared).await?;
    let table = accounts::create_ledger_table(&shared).await?;
    let codepipeline = aws_sdk_codepipeline::Client::from_conf(
        aws_sdk_codepipeline::config::Builder::from(&shared).endpoint_url(&emulator.endpoint).build(),
    );
    crossdeploy_local::templates::create_custom_action_types(&codepipeline, REGION).await?;
    let mut functions = Vec::new();
    for i in 0..(args.concurrency * 2).max(4) {
        let name = format!("soak-fn-{i}");
        accounts::create_function(&target, &name, ALIAS, lambda_package(&format!("{name}-v1"))).await?;
        accounts::create_alarm(&target, &alarm_of(&name)).await?;
        functions.push(name);
    }
    let mut services = Vec::new();
    let mut stuck = Vec::new();
    for i in 0..args.concurrency.div_ceil(2).max(2) {
        let (c, s) = (format!("soak-{i}"), format!("svc-{i}"));
        ecs::create_plain_service(&target, &c, &s, 1).await?;
        services.push((c, s));
    }
    for i in 0..2 {
        let (c, s) = (format!("soak-stuck-{i}"), format!("stuck-{i}"));
        ecs::create_plain_service(&target, &c, &s, 3).await?;
        stuck.push((c, s));
    }

    // Faults at the wire, in front of everything the functions call.
    let fault_log = std::env::temp_dir().join(format!("crossdeploy-faults-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&fault_log);
    let host = LambdaHost::start().await?;
    let (mut proxy, endpoints) = start_proxy(&args, &[&moto.endpoint, &emulator.endpoint, &host.endpoint], &fault_log)?;
    for e in &endpoints {
        wait_for_port(e, Duration::from_secs(60)).await?;
    }
    // Through the proxy to moto's own API (never faulted): the proxy and its addon are up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(status) = proxy.try_wait()? {
        return Err(format!(
            "mitmdump exited at start ({status}); see its log in {}",
            std::env::temp_dir().join("crossdeploy-local").display()
        )
        .into());
    }
    let (aws, cp, lambda) = (endpoints[0].clone(), endpoints[1].clone(), endpoints[2].clone());

    // The functions, as they run in the shared services account, through the faults.
    use aws_credential_types::provider::ProvideCredentials;
    let creds = shared.credentials_provider().ok_or("no credentials")?.provide_credentials().await?;
    let secret = creds.secret_access_key().to_owned();
    let common = vec![
        ("AWS_REGION".to_owned(), REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), creds.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), secret.clone()),
        ("AWS_SESSION_TOKEN".to_owned(), creds.session_token().unwrap_or_default().to_owned()),
        ("AWS_ENDPOINT_URL".to_owned(), aws.clone()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    let allowed = format!("{},{}", accounts::target_role(TARGET_ACCOUNT), accounts::target_role(OTHER_ACCOUNT));
    let mut updater_env = common.clone();
    updater_env.push(("CROSSDEPLOY_ALLOWED_TARGET_ROLES".into(), allowed));
    updater_env.push(("CROSSDEPLOY_EXTERNAL_ID".into(), EXTERNAL_ID.into()));
    updater_env.push(("CROSSDEPLOY_LEDGER_TABLE".into(), table.clone()));
    let mut worker_env = common;
    worker_env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), lambda.clone()));
    worker_env.push(("AWS_ENDPOINT_URL_CODEPIPELINE".into(), cp.clone()));
    worker_env.push(("CROSSDEPLOY_LAMBDA_UPDATER".into(), LAMBDA_UPDATER.into()));
    worker_env.push(("CROSSDEPLOY_ECS_UPDATER".into(), ECS_UPDATER.into()));
    worker_env.push(("CROSSDEPLOY_LEDGER_TABLE".into(), table.clone()));
    worker_env.push(("CROSSDEPLOY_UPDATER_SLICE_SECONDS".into(), "30".into()));
    let rollback_env: Vec<_> =
        worker_env.iter().filter(|(k, _)| k != "AWS_ENDPOINT_URL_CODEPIPELINE").cloned().collect();
    let instances = args.concurrency * 2 + 4;
    for (name, env, timeout) in [
        (WORKER, &worker_env, 90),
        (LAMBDA_UPDATER, &updater_env, 90),
        (ECS_UPDATER, &updater_env, 90),
        (ROLLBACK, &rollback_env, 60),
    ] {
        host.add(FunctionSpec {
            name: name.into(),
            binary: args.bin_dir.join(name),
            env: env.clone(),
            timeout: Duration::from_secs(timeout),
            max_instances: instances,
        })?;
    }

    let soak = Arc::new(Soak {
        ledger: Ledger::new(aws_sdk_dynamodb::Client::new(&shared), &table),
        _moto: moto,
        emulator,
        host,
        shared,
        target,
        bucket,
        functions: Pool::new(functions),
        services: Pool::new(services),
        stuck_services: Pool::new(stuck),
        figures: Mutex::new(Figures::default()),
        kill_rate: args.kill_rate,
    });

    // The schedule: every few seconds the worker polls the custom actions (the safety net).
    let schedule = {
        let soak = soak.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                n += 1;
                let event = json!({"version": "0", "id": format!("schedule-{n}"), "detail-type": "Scheduled Event",
                                   "source": "aws.events", "account": SHARED_ACCOUNT, "region": REGION, "detail": {}});
                let soak = soak.clone();
                tokio::spawn(async move {
                    soak.host
                        .invoke_async(WORKER, Bytes::from(event.to_string()), format!("schedule-{n}"), &ASYNC_RETRIES)
                        .await
                });
            }
        })
    };

    // The scenarios, `concurrency` at a time.
    let mut rng = Rng(args.seed);
    let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.jobs {
        let kind = Kind::draw(&mut rng);
        let scenario_rng = Rng(rng.next());
        let (soak, limit) = (soak.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let verdict = soak.clone().scenario(n, kind, scenario_rng).await;
            (n, kind, verdict)
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        done += 1;
        match joined {
            Ok((n, kind, verdict)) => {
                for v in verdict.violations {
                    let line = format!("scenario {n} ({}): {v}", kind.name());
                    eprintln!("INVARIANT BROKEN: {line}");
                    soak.figures.lock().unwrap_or_else(|p| p.into_inner()).violations.push(line);
                }
            }
            Err(e) => soak
                .figures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .violations
                .push(format!("a scenario's task: {e}")),
        }
        if done % 10 == 0 {
            eprintln!("soak: {done}/{} scenarios done ({:.0} s)", args.jobs, started.elapsed().as_secs_f64());
        }
    }
    schedule.abort();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // No credential in any log.
    let mut leaks = Vec::new();
    for log in soak.host.logs() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for needle in ["ARTIFACT-SECRET", "ARTIFACT-SESSION-TOKEN", secret.as_str()] {
            if !needle.is_empty() && text.contains(needle) {
                leaks.push(format!("{} holds a credential", log.display()));
            }
        }
    }
    let _ = proxy.kill();
    let _ = proxy.wait();

    let faults = read_faults(&fault_log);
    let (kills, timeouts) = soak.host.kills();
    let mut f = std::mem::take(&mut *soak.figures.lock().unwrap_or_else(|p| p.into_inner()));
    f.violations.extend(leaks.iter().cloned());
    print_report(&args, &f, &faults, kills, timeouts, leaks.len(), started.elapsed());
    if !f.violations.is_empty() {
        println!("\nFAILED: {} invariant(s) broken. Replay with: ./scripts/soak --jobs {} --fault-rate {} --kill-rate {} --seed {}", f.violations.len(), args.jobs, args.fault_rate, args.kill_rate, args.seed);
        for v in f.violations.iter().take(20) {
            println!("  {v}");
        }
        std::process::exit(1);
    }
    Ok(())
}

fn read_faults(path: &std::path::Path) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_default();
        let key = (v["kind"].as_str().unwrap_or("?").to_owned(), v["service"].as_str().unwrap_or("?").to_owned());
        *out.entry(key).or_default() += 1;
    }
    out
}

fn print_report(
    args: &Args,
    f: &Figures,
    faults: &BTreeMap<(String, String), usize>,
    kills: u64,
    timeouts: u64,
    credential_leaks: usize,
    wall: Duration,
) {
    println!("\nscenarios by kind");
    for (kind, n) in &f.scenarios {
        println!("  {:<36} {n:>6}", kind.name());
    }
    let total: usize = faults.values().sum();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_service: BTreeMap<&str, usize> = BTreeMap::new();
    for ((kind, service), n) in faults {
        *by_kind.entry(kind).or_default() += n;
        *by_service.entry(service).or_default() += n;
    }
    println!("\nfaults injected at the wire: {total}");
    for (k, n) in &by_kind {
        println!("  {k:<36} {n:>6}");
    }
    println!("  by service: {}", by_service.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", "));
    println!("processes killed: {kills} mid-invocation, {timeouts} at their deadline");
    println!("\njobs (each continuation job counted)          {:>6}", f.jobs);
    println!("  answered exactly once                        {:>6}", f.answered_once);
    println!("  lost (no answer)                             {:>6}", f.lost);
    println!("  answered twice                               {:>6}", f.answered_twice);
    println!("half deploys                                   {:>6}", f.half_deploys);
    println!("ledger disagreements                           {:>6}", f.ledger_disagreements);
    println!("leases leaked                                  {:>6}", f.leases_leaked);
    println!("credentials in logs                            {:>6}", credential_leaks);
    let scenarios = args.jobs.max(1);
    println!(
        "failed deployments: {} expected (alarm, rollout that never completes), {} unexpected ({:.1}% of scenarios)",
        f.expected_failures,
        f.unexpected_failures,
        f.unexpected_failures as f64 * 100.0 / scenarios as f64
    );
    for (c, n) in &f.failure_causes {
        println!("  {c:<60} {n:>5}");
    }
    if !f.rollbacks.is_empty() {
        println!("rollbacks: {}", f.rollbacks.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", "));
    }
    println!("wall time {:.0} s", wall.as_secs_f64());
}
