use crate::{free_port, log_file, venv_bin, workspace_root, Result};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// cargo-lambda's local Lambda (`cargo lambda watch --only-lambda-apis`): its Runtime API serves
/// the functions' real binaries, started here, and its Invoke API takes the SDK's Invoke calls.
/// Everything is killed when dropped.
pub struct LocalLambda {
    watch: Child,
    functions: Vec<(String, Child, PathBuf)>,
    /// The Invoke API: point `AWS_ENDPOINT_URL_LAMBDA` (or a client's endpoint) here.
    pub endpoint: String,
    port: u16,
}

impl LocalLambda {
    pub async fn start() -> Result<LocalLambda> {
        let bin = venv_bin("cargo-lambda")?;
        let port = free_port()?;
        let (_, file) = log_file("cargo-lambda")?;
        let watch = Command::new(bin)
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        let mut local =
            LocalLambda { watch, functions: Vec::new(), endpoint: format!("http://127.0.0.1:{port}"), port };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = local.watch.try_wait()? {
                return Err(format!("cargo lambda watch exited at start: {status}").into());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err("cargo lambda watch did not listen within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(local)
    }

    /// Starts the function's binary (built by `cargo test --workspace` or `cargo build`) against
    /// the local Runtime API, with exactly this environment (nothing inherited but `PATH`).
    /// Returns the path of its log.
    pub fn run_function(&mut self, name: &str, env: &[(String, String)]) -> Result<PathBuf> {
        self.run_binary(name, &binary_dir().join(name), env)
    }

    /// As [`LocalLambda::run_function`], with the binary at `binary` (a release build, say).
    pub fn run_binary(&mut self, name: &str, binary: &std::path::Path, env: &[(String, String)]) -> Result<PathBuf> {
        if !binary.is_file() {
            return Err(format!(
                "{} is not built: run `cargo test --workspace` (it builds the functions' binaries) or `cargo build -p {name}`",
                binary.display()
            )
            .into());
        }
        let (log, file) = log_file(name)?;
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{}/.rt/{name}", self.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        self.functions.push((name.to_owned(), child, log.clone()));
        Ok(log)
    }
}

impl LocalLambda {
    /// Invokes a function through the local Invoke API, as the Lambda service would, bounded by
    /// `limit`; fails at once with the function's log if its process has died.
    pub async fn invoke(
        &mut self,
        sdk: &aws_config::SdkConfig,
        function: &str,
        payload: &[u8],
        limit: Duration,
    ) -> Result<(Option<String>, Vec<u8>)> {
        self.ensure_running()?;
        let client = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(sdk).endpoint_url(&self.endpoint).build(),
        );
        let call = client
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_vec()))
            .send();
        let out = match tokio::time::timeout(limit, call).await {
            Ok(out) => out?,
            Err(_) => {
                self.ensure_running()?;
                return Err(format!("{function} did not answer within {limit:?}").into());
            }
        };
        let body = out.payload.map(|p| p.into_inner()).unwrap_or_default();
        Ok((out.function_error, body))
    }

    /// The process id of a running function.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.functions.iter().find(|(n, _, _)| n == name).map(|(_, c, _)| c.id())
    }

    /// An error naming the function and its log if one of the functions' processes has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        for (name, child, log) in &mut self.functions {
            if let Some(status) = child.try_wait()? {
                let tail = std::fs::read_to_string(&*log).unwrap_or_default();
                let tail: String =
                    tail.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                return Err(format!("{name} exited ({status}); the end of {}:\n{tail}", log.display()).into());
            }
        }
        Ok(())
    }
}

/// Where cargo put this test's binaries: `<target>/<profile>/` (tests run from `<profile>/deps/`).
pub fn binary_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let dir = exe.parent()?;
            Some(if dir.ends_with("deps") { dir.parent()?.to_path_buf() } else { dir.to_path_buf() })
        })
        .unwrap_or_else(|| PathBuf::from("target/debug"))
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.functions {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.watch.kill();
        let _ = self.watch.wait();
    }
}
