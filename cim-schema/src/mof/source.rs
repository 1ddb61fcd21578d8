//! Where MOF text comes from: the file system, or files embedded in a binary.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// Reads MOF files for the compiler, so that includes resolve the same way from disk or
/// from memory.
pub trait SourceProvider {
    /// The text of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Whether a file exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// A stable identity for `path`, to detect include cycles.
    fn identity(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileSystem;

impl SourceProvider for FileSystem {
    fn read(&self, path: &Path) -> io::Result<String> {
        let bytes = std::fs::read(path)?;
        String::from_utf8(bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "not UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })
    }

    fn exists(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn identity(&self, path: &Path) -> PathBuf {
        path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Files held in memory, keyed by relative path (for MOF embedded with `include_str!`).
#[derive(Clone, Debug, Default)]
pub struct Embedded {
    files: HashMap<PathBuf, &'static str>,
}

impl Embedded {
    /// A set of `(path, text)` files.
    pub fn new(files: &[(&str, &'static str)]) -> Self {
        Embedded {
            files: files
                .iter()
                .map(|(p, t)| (normalize(Path::new(p)), *t))
                .collect(),
        }
    }
}

/// Removes `.` and resolves `..` lexically, since embedded files have no real directories.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

impl SourceProvider for Embedded {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(&normalize(path))
            .map(|s| s.to_string())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such embedded file"))
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(&normalize(path))
    }

    fn identity(&self, path: &Path) -> PathBuf {
        normalize(path)
    }
}
