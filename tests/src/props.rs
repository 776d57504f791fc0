//! Property targets over every parser of outside input: valid inputs built by generators (they
//! must parse, and round-trip where a type writes itself back), and structure-aware mutations of
//! valid ones (wrong types, missing and extra keys, huge strings, unicode, deep nesting, numbers
//! out of range), which must never panic and must be refused with a named, non-empty error.
//!
//! Run by `tests/tests/properties.rs` (a bounded number of cases, in `cargo test`) and by
//! `crossdeploy-props` (`./scripts/fuzz`: at least 10⁶ cases in all, with figures). Both watch
//! allocation: no input makes a parser allocate more than [`ALLOC_BOUND`] for its size.

use crate::accounts::target_role;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// At most this many bytes allocated at once by one parse, per byte of input, plus 1 MiB.
pub const ALLOC_BOUND: usize = 64;

/// Peak bytes allocated while `f` runs, if the binary counts them (see [`CountingAlloc`]).
pub type Peak = fn(&mut dyn FnMut()) -> Option<usize>;

/// A global allocator that counts the bytes live and their peak since the last reset: install
/// it with `#[global_allocator]` in a binary to bound what parsers allocate.
pub struct CountingAlloc;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        // SAFETY: forwarded as is to the system allocator.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded as is to the system allocator.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// The peak bytes allocated (above what was live before) while `f` runs.
pub fn peak_of(f: &mut dyn FnMut()) -> Option<usize> {
    use std::sync::atomic::Ordering::Relaxed;
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    f();
    Some(PEAK.load(Relaxed).saturating_sub(base))
}

/// No counting: the allocator is not installed.
pub fn no_peak(f: &mut dyn FnMut()) -> Option<usize> {
    f();
    None
}

fn check_alloc(peak: Peak, input_len: usize, f: &mut dyn FnMut()) -> Result<(), TestCaseError> {
    if let Some(bytes) = peak(f) {
        let bound = input_len * ALLOC_BOUND + (1 << 20);
        prop_assert!(bytes <= bound, "a parse allocated {bytes} bytes for {input_len} bytes of input");
    }
    Ok(())
}

/// Arbitrary JSON, up to `depth` levels, with unicode and long strings and extreme numbers.
pub fn arb_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        arb_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(arb_text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Text of every kind: short names, unicode (including control characters and the private
/// use area), and now and then a long one.
pub fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-z0-9_:/.@=,+-]{0,24}",
        3 => any::<String>(),
        1 => (any::<char>(), 1000usize..70_000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// One structural change to a JSON value.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Remove the key (or array element) at the path's end.
    Remove,
    /// Replace the value at the path with another of any type.
    Replace(Value),
    /// Add a key to the object at the path.
    Extra(String, Value),
    /// Bury the value at the path `n` arrays deep.
    Nest(u32),
    /// Replace the value with a number out of every sane range.
    Number(f64),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => Just(Mutation::Remove),
        3 => arb_json(2).prop_map(Mutation::Replace),
        2 => (arb_text(), arb_json(1)).prop_map(|(k, v)| Mutation::Extra(k, v)),
        1 => (1u32..400).prop_map(Mutation::Nest),
        1 => prop_oneof![Just(-1.0), Just(1e300), Just(-9.3e18), Just(1.8e19), Just(0.5)].prop_map(Mutation::Number),
    ]
}

/// Mutations, each at a path chosen by the numbers drawn with it.
pub fn arb_mutations() -> impl Strategy<Value = Vec<(Vec<usize>, Mutation)>> {
    prop::collection::vec((prop::collection::vec(any::<usize>(), 0..5), arb_mutation()), 1..4)
}

/// Applies each mutation at the node its numbers lead to (each number picks a child).
pub fn mutate(mut value: Value, mutations: &[(Vec<usize>, Mutation)]) -> Value {
    for (path, m) in mutations {
        apply(&mut value, path, m);
    }
    value
}

fn apply(v: &mut Value, path: &[usize], m: &Mutation) {
    // Walk down while the path leads somewhere; act on the last node reached.
    if let Some((first, rest)) = path.split_first() {
        let next = match v {
            Value::Object(map) if !map.is_empty() && !rest.is_empty() => {
                let key = map.keys().nth(first % map.len()).cloned();
                key.and_then(|k| map.get_mut(&k))
            }
            Value::Array(a) if !a.is_empty() && !rest.is_empty() => {
                let n = a.len();
                a.get_mut(first % n)
            }
            _ => None,
        };
        if let Some(child) = next {
            return apply(child, rest, m);
        }
        match (v, m) {
            (Value::Object(map), Mutation::Remove) if !map.is_empty() => {
                if let Some(k) = map.keys().nth(first % map.len()).cloned() {
                    map.remove(&k);
                }
                return;
            }
            (Value::Object(map), Mutation::Replace(new)) if !map.is_empty() => {
                if let Some(k) = map.keys().nth(first % map.len()).cloned() {
                    map.insert(k, new.clone());
                }
                return;
            }
            (Value::Array(a), Mutation::Remove) if !a.is_empty() => {
                let n = a.len();
                a.remove(first % n);
                return;
            }
            (v, m) => return apply_here(v, m),
        }
    }
    apply_here(v, m)
}

fn apply_here(v: &mut Value, m: &Mutation) {
    match m {
        Mutation::Remove => *v = Value::Null,
        Mutation::Replace(new) => *v = new.clone(),
        Mutation::Extra(k, extra) => match v {
            Value::Object(map) => {
                map.insert(k.clone(), extra.clone());
            }
            other => *other = json!({k.clone(): extra.clone()}),
        },
        Mutation::Nest(n) => {
            let mut inner = v.take();
            for _ in 0..*n {
                inner = Value::Array(vec![inner]);
            }
            *v = inner;
        }
        Mutation::Number(x) => *v = serde_json::Number::from_f64(*x).map(Value::Number).unwrap_or(Value::Null),
    }
}

/// A value as a Lambda runtime hands it over: written out, and read back with serde_json's own
/// limits (its recursion limit refuses the deepest nesting, as the runtime would).
fn through_the_wire(v: &Value) -> Option<Value> {
    serde_json::from_str(&v.to_string()).ok()
}

// ---------------------------------------------------------------------------------------------
// Valid inputs.

fn arb_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_-]{0,40}"
}

fn arb_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("AllAtOnce".to_owned()),
        (1u8..=99, 1u32..=600).prop_map(|(p, m)| format!("Canary{p}Percent{m}Minutes")),
        (1u8..=99, 1u32..=60).prop_map(|(p, m)| format!("Linear{p}PercentEvery{m}Minutes")),
        (1u8..=99).prop_map(|p| format!("Linear{p}PercentEvery1Minute")),
    ]
}

/// A valid Invoke action UserParameters object, Lambda or ECS.
pub fn arb_user_parameters() -> impl Strategy<Value = Value> {
    let lambda = (
        arb_name(),
        arb_name(),
        prop::option::of("[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}\\.zip"),
        arb_strategy(),
        prop::option::of(prop::collection::vec(arb_name(), 1..4)),
    )
        .prop_map(|(function, alias, path, strategy, alarms)| {
            let mut p = json!({"Kind": "Lambda", "TargetRoleArn": target_role("222222222222"), "FunctionName": function,
                               "Alias": alias, "DeploymentStrategy": strategy});
            match path {
                Some(path) => p["ArtifactPath"] = json!(path),
                // A container-image function, the other half of the time.
                None if function.len() % 2 == 0 => p["ImageFile"] = json!("imageDetail.json"),
                None => {}
            }
            if let Some(a) = alarms {
                p["AlarmNames"] = json!(a.join(","));
            }
            p
        });
    let ecs = (arb_name(), arb_name(), prop::option::of(1u32..=1440), any::<bool>()).prop_map(
        |(cluster, service, timeout, detail)| {
            let mut p = json!({"Kind": "Ecs", "TargetRoleArn": target_role("333333333333"), "ClusterName": cluster,
                           "ServiceName": service, "Region": "eu-west-1"});
            if let Some(t) = timeout {
                p["TimeoutMinutes"] = json!(t);
            }
            if detail {
                p["FileName"] = json!("imageDetail.json");
                p["ContainerName"] = json!("web");
            }
            p
        },
    );
    prop_oneof![lambda, ecs]
}

/// A valid `CodePipeline.job` event of an Invoke action.
pub fn arb_invoke_event() -> impl Strategy<Value = Value> {
    ("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}", arb_user_parameters(), prop::collection::vec(("[a-z0-9-]{3,20}", "[A-Za-z0-9/._-]{1,60}"), 1..3), prop::option::of("crossdeploy:v1:[a-z0-9-]{1,40}"))
        .prop_map(|(id, params, artifacts, token)| {
            let artifacts: Vec<Value> = artifacts
                .into_iter()
                .map(|(bucket, key)| json!({"name": "BuildOutput", "revision": null, "location": {"type": "S3", "s3Location": {"bucketName": bucket, "objectKey": key}}}))
                .collect();
            json!({"CodePipeline.job": {"id": id, "accountId": "111111111111", "data": {
                "actionConfiguration": {"configuration": {"FunctionName": "pipeline-job-worker", "UserParameters": params.to_string()}},
                "inputArtifacts": artifacts, "outputArtifacts": [],
                "artifactCredentials": {"accessKeyId": "ASIAKEY", "secretAccessKey": "SECRET-never-shown", "sessionToken": "TOKEN-never-shown"},
                "continuationToken": token,
            }}})
        })
}

fn event_file(name: &str) -> Value {
    crate::fixtures::aws_event(name, &[]).unwrap_or(Value::Null)
}

/// Valid events and requests deploy-rollback takes.
pub fn arb_rollback_event() -> impl Strategy<Value = Value> {
    let failed = event_file("codepipeline-action-failed.json");
    let alarm = event_file("cloudwatch-alarm-state-change.json");
    let ecs = event_file("ecs-deployment-failed.json");
    let direct_lambda = || {
        (arb_name(), arb_name(), prop::option::of("[0-9]{1,4}")).prop_map(|(f, a, v)| {
        let mut r = json!({"Kind": "Lambda", "TargetRoleArn": target_role("222222222222"), "FunctionName": f, "Alias": a, "Reason": "test"});
        if let Some(v) = v {
            r["RestoreVersion"] = json!(v);
        }
        r
    })
    };
    let direct_ecs = (arb_name(), arb_name()).prop_map(|(c, s)| {
        json!({"Kind": "Ecs", "TargetRoleArn": target_role("333333333333"), "ClusterName": c, "ServiceName": s})
    });
    // A direct request through the function URL: the body as text (or base64), the signer's ARN.
    let url = event_file("function-url-direct.json");
    let through_url = (direct_lambda(), any::<bool>(), "[A-Za-z0-9+=,.@_-]{1,32}").prop_map(move |(r, b64, who)| {
        use base64::Engine as _;
        let mut e = url.clone();
        let body = r.to_string();
        e["body"] = json!(if b64 { base64::engine::general_purpose::STANDARD.encode(&body) } else { body });
        e["isBase64Encoded"] = json!(b64);
        e["requestContext"]["authorizer"]["iam"]["userArn"] =
            json!(format!("arn:aws:sts::111111111111:assumed-role/{who}/s"));
        e
    });
    prop_oneof![Just(failed), Just(alarm), Just(ecs), direct_lambda(), direct_ecs, through_url]
}

/// Valid events the worker takes (its triggers).
pub fn arb_worker_event() -> impl Strategy<Value = Value> {
    let started = ("CrossdeployLambda|CrossdeployEcs|Other", "STARTED|FAILED|SUCCEEDED").prop_map(|(provider, state)| {
        json!({"version": "0", "id": "e", "detail-type": "CodePipeline Action Execution State Change", "source": "aws.codepipeline",
               "account": "111111111111", "region": "us-east-1",
               "detail": {"pipeline": "p", "execution-id": "x", "stage": "s", "action": "a", "state": state,
                          "type": {"owner": "Custom", "category": "Deploy", "provider": provider, "version": "1"}}})
    });
    let schedule = Just(
        json!({"version": "0", "id": "s", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}),
    );
    prop_oneof![arb_invoke_event(), started, schedule]
}

/// A valid image file: imagedefinitions.json or an ECR source's imageDetail.json.
pub fn arb_image_file() -> impl Strategy<Value = (Value, bool)> {
    let defs = prop::collection::btree_map(arb_name(), "[a-z0-9./-]{1,40}(:[a-z0-9]{1,10})?", 1..5)
        .prop_map(|m| (Value::Array(m.into_iter().map(|(n, i)| json!({"name": n, "imageUri": i})).collect()), false));
    let detail = ("[0-9]{12}\\.dkr\\.ecr\\.[a-z]{2}-[a-z]+-[0-9]\\.amazonaws\\.com/[a-z]{1,10}", "[0-9a-f]{64}")
        .prop_map(|(repository, hex)| {
            (
                json!({"ImageSizeInBytes": "1", "ImageDigest": format!("sha256:{hex}"),
                       "ImageURI": format!("{repository}@sha256:{hex}"), "ImageTags": ["latest"]}),
                true,
            )
        });
    prop_oneof![defs, detail]
}

// ---------------------------------------------------------------------------------------------
// The targets.

/// One property target: a name, and how to run `cases` cases of it.
pub struct Target {
    pub name: &'static str,
    pub run: fn(u32, Peak) -> Result<(), String>,
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, max_shrink_iters: 2_000, ..Config::default() })
}

fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) -> Result<(), String>
where
    S::Value: std::fmt::Debug,
{
    runner(cases).run(&strategy, test).map_err(|e| e.to_string())
}

fn no_secret(text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !text.contains("SECRET-never-shown") && !text.contains("TOKEN-never-shown"),
        "a credential shows: {text}"
    );
    Ok(())
}

fn invoke_event(cases: u32, peak: Peak) -> Result<(), String> {
    use crossdeploy_pipeline_job::{Job, JobError};
    run(cases, (arb_invoke_event(), arb_mutations(), any::<bool>()), |(valid, mutations, mutated)| {
        let event = if mutated { mutate(valid.clone(), &mutations) } else { valid.clone() };
        let Some(event) = through_the_wire(&event) else { return Ok(()) };
        let mut parsed = None;
        check_alloc(peak, event.to_string().len(), &mut || parsed = Some(Job::from_invoke_event(&event)))?;
        match parsed.unwrap_or(Err(JobError::NotAJob)) {
            Ok(job) => {
                no_secret(&format!("{job:?}"))?;
                if !mutated {
                    prop_assert_eq!(Some(job.id.as_str()), valid["CodePipeline.job"]["id"].as_str());
                    prop_assert_eq!(
                        job.input_artifacts.len(),
                        valid["CodePipeline.job"]["data"]["inputArtifacts"].as_array().map_or(0, Vec::len)
                    );
                }
            }
            Err(e) => {
                prop_assert!(mutated, "a valid event was refused: {e}");
                prop_assert!(!e.to_string().is_empty());
                no_secret(&e.to_string())?;
            }
        }
        Ok(())
    })
}

fn polled_job(cases: u32, _: Peak) -> Result<(), String> {
    use aws_sdk_codepipeline::types as cp;
    let artifact = (prop::option::of(arb_text()), prop::option::of(arb_text()));
    let strategy = (
        prop::option::of(arb_text()),
        prop::option::of(arb_text()),
        any::<bool>(),
        prop::collection::btree_map(arb_text(), arb_text(), 0..6),
        prop::collection::vec(artifact, 0..3),
    );
    run(cases, strategy, |(id, nonce, data, configuration, artifacts)| {
        let inputs: Vec<cp::Artifact> = artifacts
            .iter()
            .map(|(bucket, key)| {
                let mut s3 = cp::S3ArtifactLocation::builder();
                if let Some(b) = bucket {
                    s3 = s3.bucket_name(b);
                }
                if let Some(k) = key {
                    s3 = s3.object_key(k);
                }
                let location = s3.build().ok().map(|l| cp::ArtifactLocation::builder().s3_location(l).build());
                cp::Artifact::builder().set_location(location).build()
            })
            .collect();
        let job_data = cp::JobData::builder()
            .action_configuration(
                cp::ActionConfiguration::builder()
                    .set_configuration(Some(configuration.clone().into_iter().collect()))
                    .build(),
            )
            .set_input_artifacts(Some(inputs))
            .build();
        let job =
            cp::Job::builder().set_id(id.clone()).set_nonce(nonce.clone()).set_data(data.then_some(job_data)).build();
        match crossdeploy_pipeline_job::Job::from_polled(&job, "CrossdeployLambda") {
            Ok(j) => {
                prop_assert!(id.as_deref().is_some_and(|i| !i.is_empty()) && nonce.is_some() && data);
                prop_assert_eq!(j.configuration, configuration);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    })
}

fn user_parameters(cases: u32, peak: Peak) -> Result<(), String> {
    use crossdeploy_pipeline_job::parse_user_parameters;
    run(cases, (arb_user_parameters(), arb_mutations(), 0u8..3, arb_text()), |(valid, mutations, how, raw)| {
        let text = match how {
            0 => valid.to_string(),
            1 => mutate(valid.clone(), &mutations).to_string(),
            _ => raw,
        };
        let mut parsed = None;
        check_alloc(peak, text.len(), &mut || parsed = Some(parse_user_parameters(Some(&text))))?;
        match parsed {
            // Round trip: what the contract says is what the request carries.
            Some(Ok(config)) if how == 0 => {
                let kind = valid["Kind"].as_str().unwrap_or_default();
                match (&config.spec, kind) {
                    (crossdeploy_protocol::DeploySpec::Lambda(l), "Lambda") => {
                        prop_assert_eq!(Some(l.function_name.as_str()), valid["FunctionName"].as_str());
                        let asked: crossdeploy_protocol::DeploymentStrategy = valid["DeploymentStrategy"]
                            .as_str()
                            .unwrap_or_default()
                            .parse()
                            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                        prop_assert_eq!(l.strategy, asked);
                    }
                    (crossdeploy_protocol::DeploySpec::Ecs(e), "Ecs") => {
                        prop_assert_eq!(Some(e.service_name.as_str()), valid["ServiceName"].as_str());
                    }
                    (spec, kind) => prop_assert!(false, "{kind} parsed as {spec:?}"),
                }
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => {
                prop_assert!(how != 0, "a valid configuration was refused: {e}");
                prop_assert!(!e.key.is_empty() && !e.problem.is_empty(), "an error names its key: {e:?}");
            }
        }
        Ok(())
    })
}

fn custom_configuration(cases: u32, _: Peak) -> Result<(), String> {
    use crossdeploy_pipeline_job::{parse_configuration, Kind};
    let keys = prop_oneof![
        Just("TargetRoleArn".to_owned()),
        Just("FunctionName".to_owned()),
        Just("Alias".to_owned()),
        Just("ClusterName".to_owned()),
        Just("ServiceName".to_owned()),
        Just("TimeoutMinutes".to_owned()),
        Just("DeploymentStrategy".to_owned()),
        Just("AlarmNames".to_owned()),
        Just("Region".to_owned()),
        Just("FileName".to_owned()),
        Just("ContainerName".to_owned()),
        Just("ArtifactPath".to_owned()),
        arb_text(),
    ];
    run(cases, (prop::collection::btree_map(keys, arb_text(), 0..9), any::<bool>()), |(map, lambda)| {
        let map: BTreeMap<String, Value> = map.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        if let Err(e) = parse_configuration(if lambda { Kind::Lambda } else { Kind::Ecs }, &map) {
            prop_assert!(!e.key.is_empty() && !e.problem.is_empty());
        }
        Ok(())
    })
}

fn image_file(cases: u32, peak: Peak) -> Result<(), String> {
    use ecs_taskdef_updater::images::parse_image_file;
    run(
        cases,
        (arb_image_file(), arb_mutations(), 0u8..3, prop::collection::vec(any::<u8>(), 0..512)),
        |((valid, detail), mutations, how, raw)| {
            let bytes = match how {
                0 => valid.to_string().into_bytes(),
                1 => mutate(valid.clone(), &mutations).to_string().into_bytes(),
                _ => raw,
            };
            let container = detail.then_some("web");
            let mut parsed = None;
            check_alloc(peak, bytes.len(), &mut || {
                parsed = Some(parse_image_file(&bytes, "imagedefinitions.json", container))
            })?;
            // The Lambda updater's reading of the same file (container-image functions).
            let mut for_lambda = None;
            check_alloc(peak, bytes.len(), &mut || {
                for_lambda = Some(lambda_alias_updater::parse_image_file(&bytes, "imageDetail.json"))
            })?;
            match for_lambda {
                Some(Ok(image)) => {
                    prop_assert!(image.digest_hex.len() == 64 && image.repository.contains(".dkr.ecr."));
                    if how == 0 {
                        let uri = image.uri();
                        prop_assert_eq!(Some(uri.as_str()), valid["ImageURI"].as_str());
                    }
                }
                Some(Err(e)) => {
                    prop_assert!(!(how == 0 && detail), "a valid imageDetail.json was refused: {e}");
                    prop_assert!(!e.is_empty());
                }
                None => {}
            }
            match parsed {
                Some(Ok(changes)) => {
                    if how == 0 && !detail {
                        prop_assert_eq!(changes.len(), valid.as_array().map_or(0, Vec::len));
                    }
                    prop_assert!(changes.iter().all(|c| !c.container.is_empty() && !c.image.is_empty()));
                }
                Some(Err(e)) => {
                    prop_assert!(how != 0, "a valid image file was refused: {e}");
                    prop_assert!(!e.is_empty());
                }
                None => {}
            }
            Ok(())
        },
    )
}

fn task_definition(cases: u32, _: Peak) -> Result<(), String> {
    use aws_sdk_ecs::types::ContainerDefinition;
    use ecs_taskdef_updater::images::ImageChange;
    use ecs_taskdef_updater::taskdef::{replace_images, runs_images};
    let containers = prop::collection::vec((prop::option::of(arb_text()), prop::option::of(arb_text())), 0..5);
    let changes = prop::collection::vec((arb_text(), arb_text()), 0..4);
    run(cases, (containers, changes), |(containers, changes)| {
        let containers: Vec<ContainerDefinition> = containers
            .iter()
            .map(|(n, i)| ContainerDefinition::builder().set_name(n.clone()).set_image(i.clone()).build())
            .collect();
        let changes: Vec<ImageChange> =
            changes.into_iter().map(|(container, image)| ImageChange { container, image }).collect();
        match replace_images(&containers, &changes) {
            Ok(new) => {
                prop_assert_eq!(new.len(), containers.len());
                // Every container keeps its name; only the named ones change their image.
                for (old, new) in containers.iter().zip(&new) {
                    prop_assert_eq!(old.name(), new.name());
                    if !changes.iter().any(|c| Some(c.container.as_str()) == old.name()) {
                        prop_assert_eq!(old.image(), new.image());
                    }
                }
                let distinct: std::collections::BTreeSet<&str> = changes.iter().map(|c| c.container.as_str()).collect();
                if distinct.len() == changes.len() {
                    prop_assert!(runs_images(&new, &changes), "the new revision runs the images asked for");
                }
            }
            Err(e) => prop_assert!(e.contains("is not in the service's task definition")),
        }
        Ok(())
    })
}

fn worker_event(cases: u32, peak: Peak) -> Result<(), String> {
    run(cases, (arb_worker_event(), arb_mutations(), any::<bool>(), arb_json(3)), |(valid, mutations, mutated, any)| {
        for event in [if mutated { mutate(valid.clone(), &mutations) } else { valid.clone() }, any.clone()] {
            let Some(event) = through_the_wire(&event) else { continue };
            let mut trigger = None;
            check_alloc(peak, event.to_string().len(), &mut || trigger = Some(pipeline_job_worker::classify(&event)))?;
            if let Some(pipeline_job_worker::Trigger::Ignored { why }) = trigger {
                prop_assert!(!why.is_empty());
            }
        }
        Ok(())
    })
}

fn rollback_event(cases: u32, peak: Peak) -> Result<(), String> {
    run(
        cases,
        (arb_rollback_event(), arb_mutations(), any::<bool>(), arb_json(3)),
        |(valid, mutations, mutated, any)| {
            for (event, must_parse) in [
                (if mutated { mutate(valid.clone(), &mutations) } else { valid.clone() }, !mutated),
                (any.clone(), false),
            ] {
                let Some(event) = through_the_wire(&event) else { continue };
                let mut read = None;
                check_alloc(peak, event.to_string().len(), &mut || {
                    read = Some(deploy_rollback::read_event(&event, "us-east-1", "request-1"))
                })?;
                match read {
                    Some(Ok(trigger)) => {
                        if let deploy_rollback::Trigger::Direct { target, .. } = &trigger {
                            // A target read from a request can be read back into its parts.
                            prop_assert!(
                                target.parts().is_some(),
                                "direct request names an unreadable target {target}"
                            );
                        }
                        prop_assert!(!trigger.describe().is_empty());
                    }
                    Some(Err(e)) => {
                        prop_assert!(!must_parse, "a valid event was refused: {e}");
                        prop_assert!(!e.to_string().is_empty());
                    }
                    None => {}
                }
            }
            Ok(())
        },
    )
}

/// Reads a value of `T` from JSON, and if it parses, writes it back and reads the same value.
fn round_trips<T>(v: &Value) -> Result<bool, TestCaseError>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    match serde_json::from_value::<T>(v.clone()) {
        Ok(t) => {
            let back: T =
                serde_json::from_value(serde_json::to_value(&t).map_err(|e| TestCaseError::fail(e.to_string()))?)
                    .map_err(|e| TestCaseError::fail(format!("written back, it does not read: {e}")))?;
            prop_assert_eq!(back, t);
            Ok(true)
        }
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            Ok(false)
        }
    }
}

/// What crossdeploy writes and reads back: requests and outcomes between the functions, the
/// states an updater resumes from, the ledger's continuations, records, lease holders and
/// recorded answers.
pub fn arb_written() -> impl Strategy<Value = (&'static str, Value)> {
    let request = json!({"Action": "Deploy", "RequestId": "job-1", "Pipeline": {"JobId": "job-1", "PipelineName": "orders"},
        "Target": {"RoleArn": target_role("222222222222"), "Region": "eu-west-1"}, "Artifact": {"Bucket": "b", "Key": "k"},
        "Spec": {"Kind": "Lambda", "FunctionName": "f", "Alias": "live", "Strategy": "Canary10Percent5Minutes"},
        "AlarmNames": ["a"], "Resume": {"Phase": "WaitingForUpdate", "CodeSha256": "x", "AliasVersion": "1", "AliasRevisionId": "r"},
        "DeploymentId": "job-0", "DeadlineMs": 1_700_000_000_000u64});
    let rollback = json!({"Action": "Rollback", "RequestId": "rollback-1", "Target": {"RoleArn": target_role("333333333333")},
        "Spec": {"Kind": "Ecs", "ClusterName": "c", "ServiceName": "s", "RestoreTaskDefinition": "a:1", "DeployedTaskDefinition": "a:2"},
        "Reason": "r", "DeadlineMs": 5});
    let outcome = json!({"Status": "Failed", "FailureType": "JobFailed", "Message": "m",
        "Stands": {"Previous": "1", "Deployed": "2", "Serving": "Shifting", "Detail": "d"}});
    let in_progress =
        json!({"Status": "InProgress", "Summary": "s", "PercentComplete": 40, "State": {"Phase": "Shifting"}});
    let lambda_state = json!({"Phase": "Shifting", "CodeSha256": "x", "NewVersion": "2", "PreviousVersion": "1", "Step": 0,
        "StepStartedAt": 5, "AliasRevisionId": "r", "AliasArn": "arn"});
    let ecs_state = json!({"Phase": "FollowingRollout", "TaskDefinitionArn": "a:2", "PreviousTaskDefinitionArn": "a:1", "StartedAt": 1, "DeploymentId": "ecs-svc/1"});
    let continuation =
        json!({"DeploymentId": "d", "StartedAt": 1, "Phase": {"Phase": "Updating", "State": null}, "Silent": 1});
    let record = json!({"DeploymentId": "d", "Target": "lambda/222222222222/us-east-1/f/live", "RoleArn": target_role("222222222222"),
        "Pipeline": {"JobId": "j"}, "StartedAt": 1, "FinishedAt": 2, "Status": "Failed", "Previous": "1", "Deployed": "2",
        "Serving": "Unknown", "Outputs": {}, "Message": null, "AlarmNames": []});
    let holder =
        json!({"DeploymentId": "d", "Pipeline": "p", "ExecutionId": "e", "JobId": "j", "Since": 1, "Until": 2});
    let answer = json!({"Success": {"summary": "s", "external_execution_id": "j", "percent_complete": 99,
        "output_variables": {}, "continuation_token": "crossdeploy:v1:j"}});
    prop_oneof![
        Just(("UpdaterRequest", request)),
        Just(("UpdaterRequest", rollback)),
        Just(("Outcome", outcome)),
        Just(("Outcome", in_progress)),
        Just(("LambdaState", lambda_state)),
        Just(("EcsState", ecs_state)),
        Just(("Continuation", continuation)),
        Just(("DeploymentRecord", record)),
        Just(("LeaseHolder", holder)),
        Just(("JobAnswer", answer)),
    ]
}

fn written(cases: u32, peak: Peak) -> Result<(), String> {
    run(cases, (arb_written(), arb_mutations(), any::<bool>()), |((kind, valid), mutations, mutated)| {
        let v = if mutated { mutate(valid.clone(), &mutations) } else { valid.clone() };
        let Some(v) = through_the_wire(&v) else { return Ok(()) };
        let mut read = Ok(true);
        check_alloc(peak, v.to_string().len(), &mut || {
            read = match kind {
                "UpdaterRequest" => round_trips::<crossdeploy_protocol::UpdaterRequest>(&v),
                "Outcome" => round_trips::<crossdeploy_protocol::Outcome>(&v),
                "LambdaState" => round_trips::<lambda_alias_updater::LambdaState>(&v),
                "EcsState" => round_trips::<ecs_taskdef_updater::EcsState>(&v),
                "Continuation" => round_trips::<crossdeploy_ledger::Continuation>(&v),
                "DeploymentRecord" => round_trips::<crossdeploy_ledger::DeploymentRecord>(&v),
                "LeaseHolder" => round_trips::<crossdeploy_ledger::LeaseHolder>(&v),
                _ => round_trips::<crossdeploy_pipeline_job::JobAnswer>(&v),
            }
        })?;
        let parsed = read?;
        prop_assert!(parsed || mutated, "{kind} written by crossdeploy does not read back");
        Ok(())
    })
}

fn names(cases: u32, _: Peak) -> Result<(), String> {
    use crossdeploy_protocol::{DeploymentStrategy, RoleArn};
    run(cases, (arb_text(), arb_strategy(), arb_text()), |(any, strategy, seed)| {
        // Strategies: any text parses or is refused naming itself; valid ones print back.
        match any.parse::<DeploymentStrategy>() {
            Ok(s) => prop_assert_eq!(s.to_string().parse::<DeploymentStrategy>().ok(), Some(s)),
            Err(e) => {
                let named = format!("`{any}`");
                prop_assert!(e.to_string().contains(&named), "{e}");
            }
        }
        let s: DeploymentStrategy = strategy.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(s.to_string().parse::<DeploymentStrategy>().ok(), Some(s));
        // Role ARNs and target keys: never a panic; what parses prints back.
        if let Ok(r) = any.parse::<RoleArn>() {
            prop_assert_eq!(r.as_str().parse::<RoleArn>().ok(), Some(r.clone()));
        }
        let key = crossdeploy_ledger::TargetKey::lambda("222222222222", "us-east-1", &any, "live");
        let _ = key.parts();
        // Session names keep to STS's rules, whatever they are made from.
        let name = crossdeploy_credentials::session_name(&seed);
        prop_assert!(
            (2..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        );
        // The allow-list never lets a bare `*` or a pattern of another account through.
        let list = crossdeploy_credentials::AllowList::parse(&any);
        let role: RoleArn = target_role("222222222222").parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        if list.allows(&role) {
            prop_assert!(
                any.split(',').any(|p| p.trim().contains("222222222222") || p.trim().starts_with("arn:aws:iam::*")),
                "{any}"
            );
        }
        Ok(())
    })
}

/// Every target, in the order they are run.
pub fn targets() -> Vec<Target> {
    vec![
        Target { name: "Invoke job event", run: invoke_event },
        Target { name: "PollForJobs job", run: polled_job },
        Target { name: "UserParameters", run: user_parameters },
        Target { name: "custom action configuration", run: custom_configuration },
        Target { name: "imagedefinitions / imageDetail (ECS and Lambda)", run: image_file },
        Target { name: "task definition read back", run: task_definition },
        Target { name: "worker events", run: worker_event },
        Target { name: "rollback events and requests", run: rollback_event },
        Target { name: "written and read back", run: written },
        Target { name: "strategies, ARNs, names", run: names },
    ]
}
