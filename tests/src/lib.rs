//! The local AWS that crossdeploy's tests, demo and benchmark run against:
//!
//! - [`Moto`]: moto's server (from the project venv, see `scripts/setup`) on a free loopback port,
//!   ready and configured before it is handed out, killed when dropped (also when a test fails);
//! - [`Emulator`]: crossdeploy's own CodePipeline job API emulator, speaking the real awsJson1.1
//!   protocol to the real SDK client, recording every answer;
//! - [`LocalLambda`]: cargo-lambda's local Lambda runtime and Invoke API, running the functions'
//!   real binaries;
//! - [`accounts`]: credentials acting in the shared services account and the target accounts,
//!   and the target resources the scenarios deploy to.

pub mod accounts;
pub mod bench;
pub mod cargo_lambda;
pub mod ecs;
mod emulator;
pub mod fixtures;
mod http;
mod in_process;
pub mod lambda_host;
mod local;
mod moto;
pub mod props;
pub mod templates;

pub use cargo_lambda::LocalLambda;
pub use emulator::{Answer, Emulator, EmulatorSettings, NewCustomJob, NewJob, Status};
pub use in_process::{InProcessUpdater, ECS_UPDATER, LAMBDA_UPDATER};
pub use local::{assume_role_calls, LocalAws};
pub use moto::Moto;

use std::path::PathBuf;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// A tool installed by `scripts/setup` into the project venv (`CROSSDEPLOY_VENV`, default `.venv`).
pub fn venv_bin(name: &str) -> Result<PathBuf> {
    let venv =
        std::env::var_os("CROSSDEPLOY_VENV").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".venv"));
    let path = venv.join("bin").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run ./scripts/setup first (it installs moto, cargo-lambda and the AWS CLI into {})",
            path.display(),
            venv.display()
        )
        .into())
    }
}

/// A tool installed by `scripts/setup` into the infra venv (`CROSSDEPLOY_INFRA_VENV`, default
/// `.venv-infra`): cfn-lint, the SAM CLI and translator, checkov.
pub fn infra_venv_bin(name: &str) -> Result<PathBuf> {
    let venv = std::env::var_os("CROSSDEPLOY_INFRA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv-infra"));
    let path = venv.join("bin").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} is missing: run ./scripts/setup first", path.display()).into())
    }
}

/// A tool installed by `scripts/setup` into the soak's venv (`CROSSDEPLOY_SOAK_VENV`, default
/// `.venv-soak`): mitmproxy.
pub fn soak_venv_bin(name: &str) -> Result<PathBuf> {
    let venv = std::env::var_os("CROSSDEPLOY_SOAK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv-soak"));
    let path = venv.join("bin").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} is missing: run ./scripts/setup first", path.display()).into())
    }
}

/// A fresh log file for a child process (see [`log_file`]).
pub fn open_log(name: &str) -> Result<(PathBuf, std::fs::File)> {
    log_file(name)
}

/// `%XX` escapes decoded (a URL path segment, a policy document in a query string); anything
/// that is not a valid escape is kept as it is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if bytes[i] == b'%' => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh file for a child process's output, in the system temp folder.
pub(crate) fn log_file(name: &str) -> Result<(PathBuf, std::fs::File)> {
    let dir = std::env::temp_dir().join("crossdeploy-local");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}-{}-{}.log", std::process::id(), unique()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

/// A number unique within this process.
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The CloudWatch embedded-metric-format lines in a function's log (its stdout), as CloudWatch
/// Logs would read them: JSON objects with an `_aws.CloudWatchMetrics` directive. Each is checked
/// as CloudWatch checks it: every dimension and metric the directive names has a value in the
/// line, the namespace is crossdeploy's, and the timestamp is a number.
pub fn emf_lines(log: &std::path::Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(log)?;
    let mut found = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(directives) = v["_aws"]["CloudWatchMetrics"].as_array() else { continue };
        if !v["_aws"]["Timestamp"].is_u64() {
            return Err(format!("an EMF line without a numeric Timestamp: {line}").into());
        }
        for d in directives {
            if d["Namespace"] != crossdeploy_aws::metrics::NAMESPACE {
                return Err(format!("an EMF line in another namespace: {line}").into());
            }
            for set in d["Dimensions"].as_array().into_iter().flatten() {
                for name in set.as_array().into_iter().flatten() {
                    if !v[name.as_str().unwrap_or_default()].is_string() {
                        return Err(format!("EMF dimension {name} has no value: {line}").into());
                    }
                }
            }
            for m in d["Metrics"].as_array().into_iter().flatten() {
                if !v[m["Name"].as_str().unwrap_or_default()].is_number() {
                    return Err(format!("EMF metric {} has no value: {line}", m["Name"]).into());
                }
            }
        }
        found.push(v);
    }
    Ok(found)
}
