//! Assuming a role in a target account, safely.
//!
//! - [`AllowList`]: `CROSSDEPLOY_ALLOWED_TARGET_ROLES`, checked before any STS call; unset or
//!   empty allows nothing.
//! - [`TargetSessions`]: `sts:AssumeRole` with the ExternalId (`CROSSDEPLOY_EXTERNAL_ID`), a
//!   session name and source identity derived from the pipeline execution, sessions cached per
//!   run across warm invocations and refreshed before they expire.
//! - [`preflight`]: the target role's policies simulated for every call a deployment will make.
//! - [`TargetCredentials`]: never shows a secret in `Debug` or `Display`.

mod allow_list;
mod preflight;
mod session;

pub use allow_list::AllowList;
pub use preflight::{preflight, simulate, MissingPermissions, Needed, Preflight, PREFLIGHT_BUDGET};
pub use session::{session_name, TargetCredentials, TargetSession, TargetSessions};

use crossdeploy_aws::ErrorInfo;
use crossdeploy_protocol::{FailureType, RoleArn};

/// Comma-separated role ARNs the updaters may assume (`*` allowed inside a segment).
pub const ALLOWED_TARGET_ROLES_ENV: &str = "CROSSDEPLOY_ALLOWED_TARGET_ROLES";
/// The ExternalId the target roles' trust policies require.
pub const EXTERNAL_ID_ENV: &str = "CROSSDEPLOY_EXTERNAL_ID";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("role {role} is not on crossdeploy's allow-list ({ALLOWED_TARGET_ROLES_ENV}); no role was assumed. Correct TargetRoleArn, or ask the platform team to allow the role")]
    NotAllowed { role: RoleArn },
    #[error("sts:AssumeRole on {role} was denied: {error}. Check that the role in account {} trusts this function's role and that the ExternalId ({EXTERNAL_ID_ENV}) matches its trust policy", role.account_id())]
    Denied { role: RoleArn, error: ErrorInfo },
    #[error("failed to assume role {role} in account {}: {error}", role.account_id())]
    Sts { role: RoleArn, error: ErrorInfo },
    #[error("sts:AssumeRole on {role} answered without credentials")]
    NoCredentials { role: RoleArn },
}

impl CredentialsError {
    pub fn failure_type(&self) -> FailureType {
        match self {
            CredentialsError::NotAllowed { .. } | CredentialsError::Denied { .. } => FailureType::PermissionError,
            CredentialsError::Sts { .. } | CredentialsError::NoCredentials { .. } => FailureType::JobFailed,
        }
    }
}
