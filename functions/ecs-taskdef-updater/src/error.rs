use crossdeploy_aws::ErrorInfo;
use crossdeploy_credentials::CredentialsError;
use crossdeploy_protocol::{FailureType, Stands};

/// Everything that can stop an ECS deployment; each knows its CodePipeline failure type.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The permissions preflight found calls the target role may not make.
    #[error(transparent)]
    Preflight(#[from] crossdeploy_credentials::MissingPermissions),
    /// The request does not come from the worker or deploy-rollback (or that could not be checked).
    #[error(transparent)]
    Origin(Box<crossdeploy_ledger::OriginError>),
    #[error(transparent)]
    Artifact(#[from] crossdeploy_artifact::ArtifactError),
    /// The configuration cannot work: service or cluster missing, unknown container, bad image file.
    #[error("{0}")]
    Configuration(String),
    /// An AWS call failed.
    #[error("failed to {action} {resource}: {error}")]
    Aws { action: &'static str, resource: String, error: ErrorInfo },
    /// The rollout failed, was rolled back, or did not finish in time.
    #[error("{0}")]
    Rollout(String),
    /// An alarm named in AlarmNames is missing, or could not be read.
    #[error(transparent)]
    Alarms(#[from] crossdeploy_alarms::AlarmError),
    #[error("the updater could not read its request: {0}")]
    BadRequest(String),
    /// A failure once the service was updated: what it runs now (put back, or not).
    #[error("{error}; {}", stands.detail)]
    LeftAs { error: Box<EcsError>, stands: Stands },
}

impl EcsError {
    /// `error`, with what the service runs after it.
    pub fn left(error: EcsError, stands: Stands) -> Self {
        EcsError::LeftAs { error: Box::new(error), stands }
    }
}

impl crossdeploy_aws::UpdaterFailure for EcsError {
    fn stands(&self) -> Option<Stands> {
        match self {
            EcsError::LeftAs { stands, .. } => Some(stands.clone()),
            _ => None,
        }
    }

    fn failure_type(&self) -> FailureType {
        match self {
            EcsError::LeftAs { error, .. } => error.failure_type(),
            EcsError::Credentials(e) => e.failure_type(),
            EcsError::Preflight(_) => FailureType::PermissionError,
            EcsError::Origin(e) => match **e {
                crossdeploy_ledger::OriginError::Refused { .. } => FailureType::PermissionError,
                crossdeploy_ledger::OriginError::NoLedger { .. } => FailureType::ConfigurationError,
                crossdeploy_ledger::OriginError::Unreadable { .. } => FailureType::JobFailed,
            },
            EcsError::Artifact(e) => e.failure_type(),
            EcsError::Configuration(_) => FailureType::ConfigurationError,
            EcsError::Alarms(crossdeploy_alarms::AlarmError::Missing { .. }) => FailureType::ConfigurationError,
            EcsError::Alarms(_) => FailureType::JobFailed,
            EcsError::Aws { error, .. } if error.is_access_denied() => FailureType::PermissionError,
            EcsError::Aws { .. } | EcsError::Rollout(_) | EcsError::BadRequest(_) => FailureType::JobFailed,
        }
    }
}
