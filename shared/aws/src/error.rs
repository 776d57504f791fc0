use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::fmt;

/// The AWS error code and message of a failed call, or the transport failure that stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// AWS's error code (`ResourceNotFoundException`, `AccessDenied`...); `None` when no service answered.
    pub code: Option<String>,
    pub message: String,
}

impl ErrorInfo {
    pub fn from_sdk<E, R>(err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        match err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                Self {
                    code: e.code().map(str::to_owned),
                    message: e.message().map(str::to_owned).unwrap_or_else(|| DisplayErrorContext(e).to_string()),
                }
            }
            other => Self { code: None, message: DisplayErrorContext(other).to_string() },
        }
    }

    /// AccessDenied in any of its spellings (STS `AccessDenied`, Lambda `AccessDeniedException`...).
    pub fn is_access_denied(&self) -> bool {
        self.code.as_deref().is_some_and(is_access_denied_code)
    }

    pub fn is_throttling(&self) -> bool {
        self.code.as_deref().is_some_and(is_throttling_code)
    }
}

/// Whether a failed call is worth another try: throttling, a 5xx or an internal error answered
/// by the service, a timeout, or a connection that failed or broke (the request may have been
/// applied with its answer lost: the caller's retry must recognise its own earlier work).
pub fn is_transient<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => !d.is_user(),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            is_throttling_code(code) || is_transient_code(code) || service.raw().status().as_u16() >= 500
        }
        _ => false,
    }
}

/// Error codes AWS uses for a fault on its side that a retry may not meet.
pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "InternalFailure"
            | "InternalError"
            | "InternalServerError"
            | "InternalServerErrorException"
            | "ServiceException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "TransactionInProgressException"
    )
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => write!(f, "no answer from AWS: {}", self.message),
        }
    }
}

/// Error codes AWS uses for a denied call. These are not modelled per operation, so the code is
/// the only typed thing to match (never the message text).
pub fn is_access_denied_code(code: &str) -> bool {
    matches!(code, "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError")
}

/// Error codes AWS uses for throttling.
pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "SlowDown"
            | "RequestThrottled"
            | "RequestThrottledException"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_code_then_the_message() {
        let e = ErrorInfo { code: Some("AccessDenied".into()), message: "not authorized".into() };
        assert_eq!(e.to_string(), "AccessDenied: not authorized");
        assert!(e.is_access_denied());
        assert!(!e.is_throttling());
        let t = ErrorInfo { code: None, message: "connection refused".into() };
        assert_eq!(t.to_string(), "no answer from AWS: connection refused");
    }
}
