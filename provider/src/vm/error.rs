//! Why an operation on the VMs was refused or failed, in the domain's own terms: the CIM
//! mapping above turns a [`VmError`] into a CIM error and a [`ChangeError`] into a method's
//! return code.

use hypervisor_shim::protocol::ErrorKind;
use hypervisor_shim::storage::StorageError;
use hypervisor_shim::supervisor::SupervisorError;
use serde::{Deserialize, Serialize};

/// What kind of refusal or failure a [`VmError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmErrorKind {
    /// What was asked for is not a valid request: a bad name, size, file or setting.
    Invalid,
    /// The VM, pool, volume or resource named does not exist.
    NotFound,
    /// The name or UUID is taken.
    Exists,
    /// The caller may not do this (give a VM host files other than pool volumes).
    Forbidden,
    /// This host cannot do it.
    Unsupported,
    /// It was tried and failed, or the VM's state does not allow it now.
    Failed,
}

/// A refused or failed operation, with what happened for a person.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VmError {
    /// Its kind.
    pub kind: VmErrorKind,
    /// What happened.
    pub message: String,
}

impl VmError {
    /// An error of `kind`.
    pub fn new(kind: VmErrorKind, message: impl Into<String>) -> Self {
        VmError {
            kind,
            message: message.into(),
        }
    }

    /// An invalid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(VmErrorKind::Invalid, message)
    }

    /// Something named that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(VmErrorKind::NotFound, message)
    }

    /// A name or UUID that is taken.
    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(VmErrorKind::Exists, message)
    }

    /// What the caller may not do.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(VmErrorKind::Forbidden, message)
    }

    /// What this host cannot do.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(VmErrorKind::Unsupported, message)
    }

    /// A failure.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(VmErrorKind::Failed, message)
    }

    /// VM `name` is not defined (libvirt-cim's wording, which its clients' scripts match).
    pub fn not_defined(name: &str) -> Self {
        Self::not_found(format!("Referenced domain `{name}' does not exist"))
    }
}

impl From<StorageError> for VmError {
    fn from(e: StorageError) -> Self {
        let kind = match &e {
            StorageError::InvalidName(_)
            | StorageError::InvalidSize(_)
            | StorageError::Shrink { .. } => VmErrorKind::Invalid,
            StorageError::Exists(_) => VmErrorKind::Exists,
            StorageError::NotFound(_) => VmErrorKind::NotFound,
            StorageError::InUse(_) | StorageError::Convert(_) | StorageError::Io { .. } => {
                VmErrorKind::Failed
            }
        };
        VmError::new(kind, e.to_string())
    }
}

/// Why a state change (or a job) was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeError {
    /// The VM's state does not allow it.
    InvalidTransition(String),
    /// Another state change of this VM is in progress.
    Busy,
    /// The guest did not finish in time.
    Timeout(String),
    /// The change failed.
    Failed(String),
    /// A client cancelled the job doing it.
    Cancelled,
}

impl ChangeError {
    /// What happened, for a person.
    pub fn describe(&self) -> String {
        match self {
            ChangeError::InvalidTransition(m)
            | ChangeError::Timeout(m)
            | ChangeError::Failed(m) => m.clone(),
            ChangeError::Busy => "another state change of the VM is in progress".into(),
            ChangeError::Cancelled => "cancelled by a client".into(),
        }
    }
}

impl From<SupervisorError> for ChangeError {
    fn from(e: SupervisorError) -> Self {
        match e {
            SupervisorError::Vm {
                kind: ErrorKind::InvalidState,
                message,
            } => ChangeError::InvalidTransition(message),
            SupervisorError::Vm {
                kind: ErrorKind::Timeout,
                message,
            } => ChangeError::Timeout(message),
            SupervisorError::Vm {
                kind: ErrorKind::Cancelled,
                ..
            } => ChangeError::Cancelled,
            other => ChangeError::Failed(other.to_string()),
        }
    }
}

/// A definition that could not be stored fails the change it belongs to.
impl From<VmError> for ChangeError {
    fn from(e: VmError) -> Self {
        ChangeError::Failed(e.message)
    }
}
