use crate::{AllowList, CredentialsError, EXTERNAL_ID_ENV};
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use crossdeploy_aws::ErrorInfo;
use crossdeploy_protocol::RoleArn;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// How long a session is asked for. Lambda's own credentials come from a role, so this is role
/// chaining, which AWS caps at one hour.
const SESSION_SECONDS: i32 = 3600;
/// A cached session is renewed once less than this is left, so no deployment starts on
/// credentials about to expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// Credentials of an assumed role. `Debug` and `Display` show the access key id only.
#[derive(Clone)]
pub struct TargetCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: SystemTime,
}

impl TargetCredentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: impl Into<String>,
        expiration: SystemTime,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.into(),
            expiration,
        }
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn expiration(&self) -> SystemTime {
        self.expiration
    }

    fn fresh(&self, now: SystemTime) -> bool {
        self.expiration.duration_since(now).is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
    }

    fn to_sdk(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            Some(self.session_token.clone()),
            Some(self.expiration),
            "crossdeploy-assume-role",
        )
    }
}

impl fmt::Debug for TargetCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &"** redacted **")
            .field("expiration", &self.expiration)
            .finish()
    }
}

impl fmt::Display for TargetCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "credentials {} (secret redacted)", self.access_key_id)
    }
}

/// An assumed role, ready to build SDK clients for the target account.
#[derive(Clone)]
pub struct TargetSession {
    pub role: RoleArn,
    pub credentials: TargetCredentials,
    /// The base configuration (endpoints, HTTP client, retries) with the session's credentials
    /// and the target region: `aws_sdk_lambda::Client::new(&session.config)`.
    pub config: SdkConfig,
}

impl fmt::Debug for TargetSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetSession")
            .field("role", &self.role)
            .field("credentials", &self.credentials)
            .field("region", &self.config.region())
            .finish()
    }
}

/// Assumes target roles, allow-list first, and keeps the sessions across warm invocations.
pub struct TargetSessions {
    sts: aws_sdk_sts::Client,
    base: SdkConfig,
    allow: AllowList,
    external_id: Option<String>,
    /// Sessions by role, ExternalId and session name: a run's session is its own (CloudTrail in
    /// the target account names the run that acted), and its continuations reuse it.
    cache: Mutex<HashMap<SessionKey, TargetCredentials>>,
}

type SessionKey = (RoleArn, Option<String>, String);

/// Sessions kept at most; past it, the ones closest to expiry go first.
const MAX_CACHED_SESSIONS: usize = 64;

impl fmt::Debug for TargetSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetSessions")
            .field("allow", &self.allow)
            .field("external_id_set", &self.external_id.is_some())
            .finish_non_exhaustive()
    }
}

impl TargetSessions {
    /// `base` gives endpoints, HTTP client and default region to the target clients;
    /// `sts` is the client AssumeRole goes through (the function's own credentials).
    pub fn new(sts: aws_sdk_sts::Client, base: SdkConfig, allow: AllowList, external_id: Option<String>) -> Self {
        Self { sts, base, allow, external_id: external_id.filter(|e| !e.is_empty()), cache: Mutex::new(HashMap::new()) }
    }

    /// From the environment: the allow-list and `CROSSDEPLOY_EXTERNAL_ID`.
    pub fn from_env(base: &SdkConfig) -> Self {
        Self::new(
            aws_sdk_sts::Client::new(base),
            base.clone(),
            AllowList::from_env(),
            std::env::var(EXTERNAL_ID_ENV).ok(),
        )
    }

    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// Checks the allow-list (no STS call for a role off it), then returns the session of this
    /// role for `session_seed` if one is cached with more than 15 minutes left, else assumes the
    /// role. `session_seed` (the pipeline execution id, else the job id; a rollback's request id)
    /// names the session and is its source identity, so each run has its own: CloudTrail in the
    /// target account shows the run that acted, and continuations of one run reuse its session.
    /// STS's transient faults and throttling are retried until `deadline`.
    pub async fn assume(
        &self,
        role: &RoleArn,
        region: Option<&str>,
        session_seed: &str,
        deadline: crossdeploy_aws::Deadline,
    ) -> Result<TargetSession, CredentialsError> {
        if !self.allow.allows(role) {
            return Err(CredentialsError::NotAllowed { role: role.clone() });
        }
        let key = (role.clone(), self.external_id.clone(), session_name(session_seed));
        let mut cache = self.cache.lock().await;
        let now = SystemTime::now();
        let credentials = match cache.get(&key) {
            Some(c) if c.fresh(now) => {
                tracing::debug!(role = %role, session = %key.2, "reusing this run's session");
                c.clone()
            }
            _ => {
                let c = self.assume_role(role, session_seed, deadline).await?;
                cache.retain(|_, c| c.fresh(now));
                while cache.len() >= MAX_CACHED_SESSIONS {
                    let Some(oldest) = cache.iter().min_by_key(|(_, c)| c.expiration).map(|(k, _)| k.clone()) else {
                        break;
                    };
                    cache.remove(&oldest);
                }
                cache.insert(key, c.clone());
                c
            }
        };
        drop(cache);
        let mut config =
            self.base.to_builder().credentials_provider(SharedCredentialsProvider::new(credentials.to_sdk()));
        if let Some(region) = region {
            config = config.region(Region::new(region.to_owned()));
        }
        Ok(TargetSession { role: role.clone(), credentials, config: config.build() })
    }

    async fn assume_role(
        &self,
        role: &RoleArn,
        session_seed: &str,
        deadline: crossdeploy_aws::Deadline,
    ) -> Result<TargetCredentials, CredentialsError> {
        let name = session_name(session_seed);
        // A retry whose first answer was lost only makes another session: nothing changes.
        let out = crossdeploy_aws::retry(
            "AssumeRole",
            crossdeploy_aws::Backoff::CONTROL_PLANE,
            deadline,
            |e: &aws_sdk_sts::error::SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>| {
                crossdeploy_aws::is_transient(e)
            },
            || {
                self.sts
                    .assume_role()
                    .role_arn(role.as_str())
                    .role_session_name(&name)
                    .source_identity(&name)
                    .set_external_id(self.external_id.clone())
                    .duration_seconds(SESSION_SECONDS)
                    .send()
            },
        )
        .await
        .map_err(|e| {
            let error = ErrorInfo::from_sdk(&e);
            if error.is_access_denied() {
                CredentialsError::Denied { role: role.clone(), error }
            } else {
                CredentialsError::Sts { role: role.clone(), error }
            }
        })?;
        let c = out.credentials.ok_or_else(|| CredentialsError::NoCredentials { role: role.clone() })?;
        let expiration = SystemTime::try_from(c.expiration).unwrap_or_else(|_| SystemTime::now());
        tracing::info!(role = %role, session = %name, "assumed target role");
        Ok(TargetCredentials::new(c.access_key_id, c.secret_access_key, c.session_token, expiration))
    }
}

/// A session name STS accepts (`[\w+=,.@-]`, 2 to 64 characters), from the pipeline execution
/// or job id, so CloudTrail in the target account shows which run acted.
pub fn session_name(seed: &str) -> String {
    const PREFIX: &str = "crossdeploy-";
    let cleaned: String = seed
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' })
        .take(64 - PREFIX.len())
        .collect();
    let cleaned = if cleaned.is_empty() { "job".to_owned() } else { cleaned };
    format!("{PREFIX}{cleaned}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_keep_to_stss_rules() {
        assert_eq!(
            session_name("4f1e5c1a-2b3c-4d5e-8f90-123456789abc"),
            "crossdeploy-4f1e5c1a-2b3c-4d5e-8f90-123456789abc"
        );
        assert_eq!(session_name("a b/c:d"), "crossdeploy-a-b-c-d");
        assert_eq!(session_name(""), "crossdeploy-job");
        let long = session_name(&"x".repeat(500));
        assert_eq!(long.len(), 64);
        let unicode = session_name("déploiement✓");
        assert!(unicode.len() <= 64);
        assert!(unicode.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
    }

    #[test]
    fn credentials_never_show_their_secrets() {
        let c = TargetCredentials::new(
            "ASIAEXAMPLEKEY",
            "wJalrXUtnFEMI-secret-value",
            "FwoGZXIvYXdzE-session-token",
            SystemTime::now(),
        );
        for shown in [format!("{c:?}"), format!("{c}"), format!("{c:#?}")] {
            assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
            assert!(!shown.contains("FwoGZXIvYXdzE"), "{shown}");
            assert!(shown.contains("ASIAEXAMPLEKEY"), "{shown}");
        }
    }
}
