use crossdeploy_aws::ErrorInfo;
use crossdeploy_credentials::CredentialsError;
use crossdeploy_protocol::{FailureType, Stands};

/// Everything that can stop a Lambda deployment. Each variant knows its CodePipeline failure type,
/// and its message says what failed, on which resource, in which account, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),

    /// The permissions preflight found calls the target role may not make.
    #[error(transparent)]
    Preflight(#[from] crossdeploy_credentials::MissingPermissions),
    /// The request does not come from the worker or deploy-rollback (or that could not be checked).
    #[error(transparent)]
    Origin(Box<crossdeploy_ledger::OriginError>),

    /// The action's configuration cannot work (wrong kind, function missing, package too large...).
    #[error("{0}")]
    Configuration(String),

    /// An AWS call failed.
    #[error("failed to {action} {resource}: {error}")]
    Aws {
        action: &'static str,
        /// e.g. "function orders-api in account 222222222222"
        resource: String,
        error: ErrorInfo,
        /// The resource does not exist: the configuration names the wrong thing.
        not_found: bool,
    },

    /// Lambda reported the code update as Failed.
    #[error("the code update of function {function} in account {account} failed: {reason}")]
    UpdateFailed { function: String, account: String, reason: String },

    /// A precondition (RevisionId, CodeSha256) did not hold: someone else changed the function.
    #[error("{what} of function {function} in account {account} changed while crossdeploy was deploying ({error}); another deployment is probably running: let it finish, then retry this action")]
    Changed { what: &'static str, function: String, account: String, error: ErrorInfo },

    /// The artifact could not be read, or the file in it not found.
    #[error(transparent)]
    Artifact(#[from] crossdeploy_artifact::ArtifactError),

    /// An alarm named in AlarmNames is missing, or could not be read.
    #[error(transparent)]
    Alarms(#[from] crossdeploy_alarms::AlarmError),

    /// An alarm went to ALARM while traffic was shifting: the alias was put back.
    #[error(transparent)]
    AlarmFired(Box<AlarmFired>),

    /// An alarm was in ALARM before anything changed.
    #[error("alarm {alarm} in account {account} is in ALARM already ({reason}); nothing was deployed to function {function}. Deploy once it is OK")]
    AlarmBeforeStart { alarm: String, reason: String, account: String, function: String },

    /// The package could not be kept in, or read back from, the function's ephemeral storage.
    #[error("{0}. Give the updater more ephemeral storage (EphemeralStorage in template.yaml) if it is full")]
    Spool(String),

    /// The update request itself is not one this updater understands.
    #[error("the updater could not read its request: {0}")]
    BadRequest(String),

    /// A failure once the alias had moved: what the alias serves now (put back, or not).
    #[error("{error}; {}", stands.detail)]
    LeftAs { error: Box<UpdaterError>, stands: Stands },
}

impl UpdaterError {
    /// `error`, with what the target serves after it.
    pub fn left(error: UpdaterError, stands: Stands) -> Self {
        UpdaterError::LeftAs { error: Box::new(error), stands }
    }
}

/// What an alarm stopped (what was put back follows it in [`UpdaterError::LeftAs`]).
#[derive(Debug, thiserror::Error)]
#[error("alarm {alarm} in account {account} is in ALARM ({reason}) while alias {alias} of function {function} shifted traffic to version {new}")]
pub struct AlarmFired {
    pub alarm: String,
    pub reason: String,
    pub account: String,
    pub function: String,
    pub alias: String,
    pub new: String,
}

impl crossdeploy_aws::UpdaterFailure for UpdaterError {
    fn stands(&self) -> Option<Stands> {
        match self {
            UpdaterError::LeftAs { stands, .. } => Some(stands.clone()),
            _ => None,
        }
    }

    fn failure_type(&self) -> FailureType {
        match self {
            UpdaterError::LeftAs { error, .. } => error.failure_type(),
            UpdaterError::Credentials(e) => e.failure_type(),
            UpdaterError::Preflight(_) => FailureType::PermissionError,
            UpdaterError::Origin(e) => match **e {
                crossdeploy_ledger::OriginError::Refused { .. } => FailureType::PermissionError,
                crossdeploy_ledger::OriginError::NoLedger { .. } => FailureType::ConfigurationError,
                crossdeploy_ledger::OriginError::Unreadable { .. } => FailureType::JobFailed,
            },
            UpdaterError::Artifact(e) => e.failure_type(),
            UpdaterError::Alarms(crossdeploy_alarms::AlarmError::Missing { .. }) => FailureType::ConfigurationError,
            UpdaterError::Alarms(crossdeploy_alarms::AlarmError::Read { error, .. }) if error.is_access_denied() => {
                FailureType::PermissionError
            }
            UpdaterError::Alarms(_) | UpdaterError::AlarmFired(_) | UpdaterError::AlarmBeforeStart { .. } => {
                FailureType::JobFailed
            }
            UpdaterError::Configuration(_) => FailureType::ConfigurationError,
            UpdaterError::Aws { error, .. } if error.is_access_denied() => FailureType::PermissionError,
            UpdaterError::Aws { not_found: true, .. } => FailureType::ConfigurationError,
            UpdaterError::Aws { .. }
            | UpdaterError::UpdateFailed { .. }
            | UpdaterError::Changed { .. }
            | UpdaterError::Spool(_)
            | UpdaterError::BadRequest(_) => FailureType::JobFailed,
        }
    }
}
