//! OVF packages (DSP0243): importing the virtual systems of a `.ovf` (its files beside it)
//! or an `.ova` (read in place) as VMs, and exporting a VM as a package VMware, VirtualBox
//! and cimvirt import. Nothing here knows CIM: the management service's
//! ImportSystemDefinition and ExportSystemDefinition are built on it.

pub mod descriptor;
pub mod export;
pub mod import;
pub mod manifest;
pub mod package;
pub mod plan;
pub mod units;
pub mod writer;

#[cfg(test)]
mod tests;

/// Why a package cannot be imported or exported.
#[derive(Debug, thiserror::Error)]
pub enum OvfError {
    /// The file is not an OVF descriptor or package.
    #[error("not an OVF package: {0}")]
    NotOvf(String),
    /// An OVF version this host does not read.
    #[error("{0}")]
    UnsupportedVersion(String),
    /// The descriptor contradicts itself or the package (a missing File, a bad number).
    #[error("{0}")]
    Invalid(String),
    /// Something the package requires that this host cannot provide.
    #[error("{0}")]
    Unsupported(String),
    /// A file's digest differs from the manifest's.
    #[error("{0}")]
    Digest(String),
    /// A disk could not be converted.
    #[error("{0}")]
    Convert(String),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Wraps an I/O error with what was being done.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> OvfError {
    let context = context.into();
    move |source| OvfError::Io { context, source }
}
