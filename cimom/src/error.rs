//! CIM status codes (DSP0200 table 2 / DSP0201 ERROR) and the error every operation returns.

use std::fmt;

/// A CIM status code, 1 to 28 (`CIM_ERR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)] // the names are the standard's
pub enum StatusCode {
    Failed = 1,
    AccessDenied = 2,
    InvalidNamespace = 3,
    InvalidParameter = 4,
    InvalidClass = 5,
    NotFound = 6,
    NotSupported = 7,
    ClassHasChildren = 8,
    ClassHasInstances = 9,
    InvalidSuperclass = 10,
    AlreadyExists = 11,
    NoSuchProperty = 12,
    TypeMismatch = 13,
    QueryLanguageNotSupported = 14,
    InvalidQuery = 15,
    MethodNotAvailable = 16,
    MethodNotFound = 17,
    NamespaceNotEmpty = 20,
    InvalidEnumerationContext = 21,
    InvalidOperationTimeout = 22,
    PullHasBeenAbandoned = 23,
    PullCannotBeAbandoned = 24,
    FilteredEnumerationNotSupported = 25,
    ContinuationOnErrorNotSupported = 26,
    ServerLimitsExceeded = 27,
    ServerIsShuttingDown = 28,
}

impl StatusCode {
    /// The numeric code sent in `ERROR CODE=` and the `CIMStatusCode` trailer.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The standard name, e.g. `CIM_ERR_NOT_FOUND`.
    pub fn name(self) -> &'static str {
        use StatusCode::*;
        match self {
            Failed => "CIM_ERR_FAILED",
            AccessDenied => "CIM_ERR_ACCESS_DENIED",
            InvalidNamespace => "CIM_ERR_INVALID_NAMESPACE",
            InvalidParameter => "CIM_ERR_INVALID_PARAMETER",
            InvalidClass => "CIM_ERR_INVALID_CLASS",
            NotFound => "CIM_ERR_NOT_FOUND",
            NotSupported => "CIM_ERR_NOT_SUPPORTED",
            ClassHasChildren => "CIM_ERR_CLASS_HAS_CHILDREN",
            ClassHasInstances => "CIM_ERR_CLASS_HAS_INSTANCES",
            InvalidSuperclass => "CIM_ERR_INVALID_SUPERCLASS",
            AlreadyExists => "CIM_ERR_ALREADY_EXISTS",
            NoSuchProperty => "CIM_ERR_NO_SUCH_PROPERTY",
            TypeMismatch => "CIM_ERR_TYPE_MISMATCH",
            QueryLanguageNotSupported => "CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED",
            InvalidQuery => "CIM_ERR_INVALID_QUERY",
            MethodNotAvailable => "CIM_ERR_METHOD_NOT_AVAILABLE",
            MethodNotFound => "CIM_ERR_METHOD_NOT_FOUND",
            NamespaceNotEmpty => "CIM_ERR_NAMESPACE_NOT_EMPTY",
            InvalidEnumerationContext => "CIM_ERR_INVALID_ENUMERATION_CONTEXT",
            InvalidOperationTimeout => "CIM_ERR_INVALID_OPERATION_TIMEOUT",
            PullHasBeenAbandoned => "CIM_ERR_PULL_HAS_BEEN_ABANDONED",
            PullCannotBeAbandoned => "CIM_ERR_PULL_CANNOT_BE_ABANDONED",
            FilteredEnumerationNotSupported => "CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED",
            ContinuationOnErrorNotSupported => "CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED",
            ServerLimitsExceeded => "CIM_ERR_SERVER_LIMITS_EXCEEDED",
            ServerIsShuttingDown => "CIM_ERR_SERVER_IS_SHUTTING_DOWN",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// A failed CIM operation: a status code and a description a person can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct CimError {
    /// The status code.
    pub code: StatusCode,
    /// What went wrong, naming the element concerned.
    pub description: String,
}

/// The result of a CIM operation.
pub type CimResult<T> = Result<T, CimError>;

impl CimError {
    /// An error with `code` and `description`.
    pub fn new(code: StatusCode, description: impl Into<String>) -> Self {
        CimError {
            code,
            description: description.into(),
        }
    }

    /// CIM_ERR_FAILED.
    pub fn failed(description: impl Into<String>) -> Self {
        Self::new(StatusCode::Failed, description)
    }

    /// CIM_ERR_INVALID_PARAMETER.
    pub fn invalid_parameter(description: impl Into<String>) -> Self {
        Self::new(StatusCode::InvalidParameter, description)
    }

    /// CIM_ERR_NOT_SUPPORTED.
    pub fn not_supported(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NotSupported, description)
    }

    /// CIM_ERR_NOT_FOUND.
    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NotFound, description)
    }

    /// CIM_ERR_INVALID_CLASS for a class that does not exist in `namespace`.
    pub fn invalid_class(class: &str, namespace: &str) -> Self {
        Self::new(
            StatusCode::InvalidClass,
            format!("class '{class}' does not exist in namespace '{namespace}'"),
        )
    }

    /// CIM_ERR_INVALID_NAMESPACE.
    pub fn invalid_namespace(namespace: &str) -> Self {
        Self::new(
            StatusCode::InvalidNamespace,
            format!("namespace '{namespace}' does not exist"),
        )
    }
}

impl From<cim_schema::Error> for CimError {
    fn from(e: cim_schema::Error) -> Self {
        use cim_schema::Error as E;
        let code = match &e {
            E::NamespaceNotFound(_) => StatusCode::InvalidNamespace,
            E::ClassNotFound(_) | E::AbstractInstance(_) => StatusCode::InvalidClass,
            E::SuperclassNotFound { .. } => StatusCode::InvalidSuperclass,
            E::ClassAlreadyExists(_) | E::InstanceAlreadyExists(_) => StatusCode::AlreadyExists,
            E::NoSuchProperty { .. } => StatusCode::NoSuchProperty,
            E::ValueType { .. } => StatusCode::TypeMismatch,
            _ => StatusCode::InvalidParameter,
        };
        CimError::new(code, e.to_string())
    }
}
