//! A local Lambda service for the soak: the Invoke API the worker calls its updaters through,
//! and the Runtime API the functions' real binaries poll, with what cargo-lambda's local runtime
//! does not give:
//!
//! - **real deadlines**: each invocation gets `Lambda-Runtime-Deadline-Ms` from the function's
//!   timeout, and a process still at work at its deadline is killed, as Lambda does ("Task
//!   timed out"): the caller gets a function error;
//! - **request ids chosen by the caller**, for asynchronous invocations retried as Lambda retries
//!   them: the same event, the same request id, up to twice;
//! - **concurrency**: a function runs as many processes as invocations arrive at once (up to a
//!   bound), each taking one invocation at a time;
//! - **kills**: any process can be killed mid-invocation (an out-of-memory kill, a crash); its
//!   invocation ends with a function error, and the next one starts a fresh process.
//!
//! Everything is killed when the host is dropped.

use crate::{log_file, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// A function the host runs.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub binary: PathBuf,
    /// Its environment (nothing else is inherited but `PATH`).
    pub env: Vec<(String, String)>,
    /// Its timeout: an invocation still running then is killed.
    pub timeout: Duration,
    /// Processes at most at once.
    pub max_instances: usize,
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// The function answered.
    Answered(Bytes),
    /// The function failed: its error document (`errorType`, `errorMessage`).
    FunctionError(String, String),
}

struct Pending {
    request_id: String,
    payload: Bytes,
    deadline_ms: u64,
    reply: oneshot::Sender<Invocation>,
}

struct Running {
    request_id: String,
    reply: oneshot::Sender<Invocation>,
}

struct Instance {
    id: u64,
    pid: Option<u32>,
    /// Waiting in `/next` for an invocation.
    idle: Option<oneshot::Sender<Pending>>,
    running: Option<Running>,
}

#[derive(Default)]
struct Function {
    spec: Option<FunctionSpec>,
    queue: VecDeque<Pending>,
    instances: BTreeMap<u64, Instance>,
    log: Option<PathBuf>,
}

#[derive(Default)]
struct Host {
    functions: BTreeMap<String, Function>,
    next_instance: u64,
    port: u16,
    /// Processes killed by [`LambdaHost::kill_one`] or by a timeout.
    kills: u64,
    timeouts: u64,
    children: Vec<u32>,
}

/// The host, serving on a free port of 127.0.0.1 until dropped.
pub struct LambdaHost {
    /// The Invoke API: point `AWS_ENDPOINT_URL_LAMBDA` here.
    pub endpoint: String,
    state: Arc<Mutex<Host>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        self.server.abort();
        let pids = self.lock().children.clone();
        for pid in pids {
            kill_pid(pid);
        }
    }
}

fn kill_pid(pid: u32) {
    let _ =
        std::process::Command::new("kill").args(["-9", &pid.to_string()]).stderr(std::process::Stdio::null()).status();
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl LambdaHost {
    pub async fn start() -> Result<LambdaHost> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(Host { port, ..Host::default() }));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(serve(req, state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(LambdaHost { endpoint: format!("http://127.0.0.1:{port}"), state, server })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Host> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a function; its processes start with its first invocations. Returns its log's path.
    pub fn add(&self, spec: FunctionSpec) -> Result<PathBuf> {
        if !spec.binary.is_file() {
            return Err(format!("{} is not built", spec.binary.display()).into());
        }
        let (log, _) = log_file(&spec.name)?;
        let mut host = self.lock();
        let f = host.functions.entry(spec.name.clone()).or_default();
        f.spec = Some(spec);
        f.log = Some(log.clone());
        Ok(log)
    }

    /// Invokes `function` with `payload` as Lambda does a synchronous invocation, with this
    /// request id (`None`: a new one). Bounded by the function's timeout.
    pub async fn invoke(&self, function: &str, payload: Bytes, request_id: Option<String>) -> Result<Invocation> {
        invoke(&self.state, function, payload, request_id).await
    }

    /// An asynchronous invocation, as Lambda runs one: on a function error or a timeout it is
    /// tried again after each of `retry_after` (Lambda: 1 and 2 minutes), with the same event
    /// and the same request id. Returns each attempt's end.
    pub async fn invoke_async(
        &self,
        function: &str,
        payload: Bytes,
        request_id: String,
        retry_after: &[Duration],
    ) -> Vec<Invocation> {
        let mut attempts = Vec::new();
        for wait in std::iter::once(Duration::ZERO).chain(retry_after.iter().copied()) {
            tokio::time::sleep(wait).await;
            let ended = invoke(&self.state, function, payload.clone(), Some(request_id.clone()))
                .await
                .unwrap_or_else(|e| Invocation::FunctionError("Host".into(), e.to_string()));
            let failed = matches!(ended, Invocation::FunctionError(..));
            attempts.push(ended);
            if !failed {
                break;
            }
        }
        attempts
    }

    /// Kills one process of `function` that is at work on an invocation, if one is: its
    /// invocation ends with a function error. Returns whether one was killed.
    pub fn kill_one(&self, function: &str) -> bool {
        let pid = {
            let host = self.lock();
            host.functions
                .get(function)
                .and_then(|f| f.instances.values().find(|i| i.running.is_some()).and_then(|i| i.pid))
        };
        match pid {
            Some(pid) => {
                kill_pid(pid);
                self.lock().kills += 1;
                true
            }
            None => false,
        }
    }

    /// Processes killed by [`LambdaHost::kill_one`], and by timeouts.
    pub fn kills(&self) -> (u64, u64) {
        let host = self.lock();
        (host.kills, host.timeouts)
    }

    /// The process ids of a function's running processes.
    pub fn pids(&self, function: &str) -> Vec<u32> {
        let host = self.lock();
        host.functions.get(function).map(|f| f.instances.values().filter_map(|i| i.pid).collect()).unwrap_or_default()
    }

    /// Each function's log.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.lock().functions.values().filter_map(|f| f.log.clone()).collect()
    }
}

async fn invoke(
    state: &Arc<Mutex<Host>>,
    function: &str,
    payload: Bytes,
    request_id: Option<String>,
) -> Result<Invocation> {
    let (tx, rx) = oneshot::channel();
    let timeout = {
        let mut host = state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(spec) = host.functions.get(function).and_then(|f| f.spec.clone()) else {
            return Err(format!("Function not found: {function}").into());
        };
        let pending = Pending {
            request_id: request_id.unwrap_or_else(crate::emulator::new_id),
            payload,
            deadline_ms: now_ms() + spec.timeout.as_millis() as u64,
            reply: tx,
        };
        dispatch(&mut host, state, function, pending);
        spec.timeout
    };
    // The deadline is the process's: the watchdog in `assign` kills it then. This bound only
    // guards the caller against a host bug.
    match tokio::time::timeout(timeout + Duration::from_secs(30), rx).await {
        Ok(Ok(ended)) => Ok(ended),
        Ok(Err(_)) => Ok(Invocation::FunctionError("Runtime.Unknown".into(), "the invocation was dropped".into())),
        Err(_) => Ok(Invocation::FunctionError("Sandbox.Timedout".into(), "no end was seen".into())),
    }
}

/// Hands `pending` to an idle process of `function`, or queues it (starting a process if all
/// are busy and the function may have more).
fn dispatch(host: &mut Host, state: &Arc<Mutex<Host>>, function: &str, mut pending: Pending) {
    let Some(f) = host.functions.get_mut(function) else { return };
    let idle: Vec<u64> = f.instances.iter().filter(|(_, i)| i.idle.is_some()).map(|(id, _)| *id).collect();
    for id in idle {
        if let Some(waiter) = f.instances.get_mut(&id).and_then(|i| i.idle.take()) {
            match waiter.send(pending) {
                Ok(()) => return,
                Err(back) => pending = back, // the process went away while idle
            }
        }
    }
    f.queue.push_back(pending);
    let max = f.spec.as_ref().map(|s| s.max_instances).unwrap_or(1);
    let busy_or_starting = f.instances.len();
    if busy_or_starting < max.max(1) {
        start_instance(host, state, function);
    }
}

fn start_instance(host: &mut Host, state: &Arc<Mutex<Host>>, function: &str) {
    let id = host.next_instance;
    host.next_instance += 1;
    let port = host.port;
    let Some(f) = host.functions.get_mut(function) else { return };
    let (Some(spec), Some(log)) = (f.spec.clone(), f.log.clone()) else { return };
    let file = std::fs::OpenOptions::new().append(true).create(true).open(&log);
    let (out, err) = match file.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(files) => files,
        Err(_) => return,
    };
    let child = tokio::process::Command::new(&spec.binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/rt/{function}/{id}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("instance-{id}"))
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else { return };
    let pid = child.id();
    f.instances.insert(id, Instance { id, pid, idle: None, running: None });
    if let Some(pid) = pid {
        host.children.push(pid);
    }
    // When the process ends (killed, crashed, timed out): its invocation fails, and queued
    // invocations get a fresh process.
    let (state, function) = (state.clone(), function.to_owned());
    tokio::spawn(async move {
        let status = child.wait().await;
        let mut host = state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = host.functions.get_mut(&function) else { return };
        let Some(instance) = f.instances.remove(&id) else { return };
        if let Some(running) = instance.running {
            let why = match status {
                Ok(s) => format!("RequestId: {} Error: Runtime exited ({s})", running.request_id),
                Err(e) => format!("RequestId: {} Error: {e}", running.request_id),
            };
            let _ = running.reply.send(Invocation::FunctionError("Runtime.ExitError".into(), why));
        }
        if !f.queue.is_empty() && f.instances.values().all(|i| i.running.is_some()) {
            start_instance(&mut host, &state, &function);
        }
    });
}

fn respond(status: StatusCode, body: Bytes, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(v) {
            if let Ok(k) = hyper::header::HeaderName::from_bytes(k.as_bytes()) {
                resp.headers_mut().insert(k, v);
            }
        }
    }
    resp
}

async fn serve(req: Request<Incoming>, state: Arc<Mutex<Host>>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let invocation_type = req
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_owned();
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return respond(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}"), &[]);
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        // The Invoke API.
        ["2015-03-31", "functions", name, "invocations"] => {
            let name = crate::percent_decode(name);
            if invocation_type != "RequestResponse" {
                return respond(
                    StatusCode::BAD_REQUEST,
                    Bytes::from(json!({"Type": "User", "message": "only RequestResponse is served here"}).to_string()),
                    &[("x-amzn-errortype", "InvalidParameterValueException".into())],
                );
            }
            match invoke(&state, &name, body, None).await {
                Err(e) => respond(
                    StatusCode::NOT_FOUND,
                    Bytes::from(json!({"Type": "User", "message": e.to_string()}).to_string()),
                    &[("x-amzn-errortype", "ResourceNotFoundException".into())],
                ),
                Ok(Invocation::Answered(payload)) => {
                    respond(StatusCode::OK, payload, &[("x-amz-executed-version", "$LATEST".into())])
                }
                Ok(Invocation::FunctionError(kind, message)) => respond(
                    StatusCode::OK,
                    Bytes::from(json!({"errorType": kind, "errorMessage": message}).to_string()),
                    &[("x-amz-function-error", "Unhandled".into()), ("x-amz-executed-version", "$LATEST".into())],
                ),
            }
        }
        // The Runtime API, per process: rt/<function>/<instance>/2018-06-01/runtime/...
        ["rt", function, instance, "2018-06-01", "runtime", rest @ ..] => {
            let (function, Ok(instance)) = (function.to_string(), instance.parse::<u64>()) else {
                return respond(StatusCode::NOT_FOUND, Bytes::new(), &[]);
            };
            runtime(&state, &function, instance, rest, body).await
        }
        _ => respond(StatusCode::NOT_FOUND, Bytes::new(), &[]),
    }
}

async fn runtime(
    state: &Arc<Mutex<Host>>,
    function: &str,
    instance: u64,
    rest: &[&str],
    body: Bytes,
) -> Response<Full<Bytes>> {
    match rest {
        ["invocation", "next"] => {
            let rx = {
                let mut host = state.lock().unwrap_or_else(|p| p.into_inner());
                let Some(f) = host.functions.get_mut(function) else {
                    return respond(StatusCode::NOT_FOUND, Bytes::new(), &[]);
                };
                let queued = f.queue.pop_front();
                let Some(i) = f.instances.get_mut(&instance) else {
                    return respond(StatusCode::GONE, Bytes::new(), &[]);
                };
                match queued {
                    Some(p) => return assign(state, function, i, p),
                    None => {
                        let (tx, rx) = oneshot::channel();
                        i.idle = Some(tx);
                        rx
                    }
                }
            };
            let Ok(pending) = rx.await else { return respond(StatusCode::GONE, Bytes::new(), &[]) };
            let mut host = state.lock().unwrap_or_else(|p| p.into_inner());
            match host.functions.get_mut(function).and_then(|f| f.instances.get_mut(&instance)) {
                Some(i) => assign(state, function, i, pending),
                None => respond(StatusCode::GONE, Bytes::new(), &[]),
            }
        }
        ["invocation", request_id, outcome @ ("response" | "error")] => {
            let mut host = state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(i) = host.functions.get_mut(function).and_then(|f| f.instances.get_mut(&instance)) else {
                return respond(StatusCode::GONE, Bytes::new(), &[]);
            };
            match i.running.take() {
                Some(r) if r.request_id == *request_id => {
                    let ended = if *outcome == "response" {
                        Invocation::Answered(body)
                    } else {
                        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        Invocation::FunctionError(
                            doc["errorType"].as_str().unwrap_or("Unhandled").to_owned(),
                            doc["errorMessage"].as_str().unwrap_or_default().to_owned(),
                        )
                    };
                    let _ = r.reply.send(ended);
                    respond(StatusCode::ACCEPTED, Bytes::from_static(b"{}"), &[])
                }
                other => {
                    i.running = other;
                    respond(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}"), &[])
                }
            }
        }
        ["init", "error"] => respond(StatusCode::ACCEPTED, Bytes::from_static(b"{}"), &[]),
        _ => respond(StatusCode::NOT_FOUND, Bytes::new(), &[]),
    }
}

/// Starts `pending` on the process `i`: its deadline is enforced by killing the process.
fn assign(state: &Arc<Mutex<Host>>, function: &str, i: &mut Instance, pending: Pending) -> Response<Full<Bytes>> {
    let Pending { request_id, payload, deadline_ms, reply } = pending;
    i.running = Some(Running { request_id: request_id.clone(), reply });
    let (watched, name, id, pid, rid) = (state.clone(), function.to_owned(), i.id, i.pid, request_id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(deadline_ms.saturating_sub(now_ms()))).await;
        let still = {
            let host = watched.lock().unwrap_or_else(|p| p.into_inner());
            host.functions
                .get(&name)
                .and_then(|f| f.instances.get(&id))
                .and_then(|i| i.running.as_ref())
                .is_some_and(|r| r.request_id == rid)
        };
        if still {
            if let Some(pid) = pid {
                kill_pid(pid);
                watched.lock().unwrap_or_else(|p| p.into_inner()).timeouts += 1;
            }
        }
    });
    respond(
        StatusCode::OK,
        payload,
        &[
            ("lambda-runtime-aws-request-id", request_id),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                format!("arn:aws:lambda:us-east-1:111111111111:function:{function}"),
            ),
            ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".into()),
            ("content-type", "application/json".into()),
        ],
    )
}
