//! The CIM errors of the VM domain's refusals and failures.

use crate::vm::{VmError, VmErrorKind};
use cimom::error::{CimError, StatusCode};

impl From<VmError> for CimError {
    fn from(e: VmError) -> Self {
        let code = match e.kind {
            VmErrorKind::Invalid => StatusCode::InvalidParameter,
            VmErrorKind::NotFound => StatusCode::NotFound,
            VmErrorKind::Exists => StatusCode::AlreadyExists,
            VmErrorKind::Forbidden => StatusCode::AccessDenied,
            VmErrorKind::Unsupported => StatusCode::NotSupported,
            VmErrorKind::Failed => StatusCode::Failed,
        };
        CimError::new(code, e.message)
    }
}
