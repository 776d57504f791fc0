use crate::{free_port, http, log_file, venv_bin, Result};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto's server on a free port of 127.0.0.1, killed when dropped. Started through
/// `tests/localaws/moto_server.py`, which adds to moto the one thing crossdeploy's flows need and
/// moto lacks: an ECS rollout after UpdateService (see that file). Services created with a
/// desired count of at most `MOTO_ECS_SERVICE_RUNNING` (1 unless a test sets it) complete their
/// rollouts; larger ones stay IN_PROGRESS.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub log: PathBuf,
}

impl Moto {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts moto, waits until it answers (at most 30 s), and switches Lambda to its
    /// docker-less backend before anything is created (the switch drops existing functions).
    pub async fn start() -> Result<Moto> {
        Self::start_with_env(&[]).await
    }

    /// As [`Moto::start`], with extra environment for the server (e.g. `MOTO_ECS_SERVICE_RUNNING`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Result<Moto> {
        let python = venv_bin("python")?;
        let launcher = crate::workspace_root().join("tests/localaws/moto_server.py");
        let port = free_port()?;
        let (log, file) = log_file("moto")?;
        let child = Command::new(python)
            .arg(launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ECS_SERVICE_RUNNING", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        let mut moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}"), log };
        moto.wait_ready(Duration::from_secs(30)).await?;
        let (status, body) = http::request(
            "POST",
            &format!("{}/moto-api/config", moto.endpoint),
            "application/json",
            br#"{"lambda":{"use_docker":false}}"#,
            Duration::from_secs(10),
        )
        .await?;
        let applied: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !(200..300).contains(&status) || applied["lambda"]["use_docker"] != false {
            return Err(format!(
                "moto did not take its configuration: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok(moto)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("moto exited at start ({status}); its log: {}", self.log.display()).into());
            }
            let probe = http::request(
                "GET",
                &format!("{}/moto-api/", self.endpoint),
                "text/plain",
                b"",
                Duration::from_secs(2),
            )
            .await;
            if matches!(probe, Ok((200, _))) {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!("moto did not answer within {limit:?}; its log: {}", self.log.display()).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
