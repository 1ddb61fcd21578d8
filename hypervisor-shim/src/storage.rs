//! Storage pools: a directory of raw disk images (volumes). A volume is created sparse, so it
//! takes space only as the guest writes; it can grow, be deleted when no VM uses it, and be
//! imported from another format with `qemu-img convert` (Debian's qemu-utils), which only
//! converts files and never runs a guest.
//!
//! A volume is an image cimvirt made, imported or was told to adopt: each has a marker in
//! the pool's `.cimvirt-volumes/` directory, so that other files in the directory are never
//! listed, resized or deleted as volumes. Markers are files of their own, so the server and
//! the `cimvirtd storage` command can work on one pool at once.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unit volume sizes are counted in: the disk's sector.
pub const SECTOR: u64 = 512;

/// What went wrong with a pool or a volume.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The name cannot name a volume.
    #[error(
        "{0:?} is not a volume name: use letters, digits, '.', '-' and '_', not starting with '.'"
    )]
    InvalidName(String),
    /// A size that is zero or not whole sectors.
    #[error("{0} bytes: a volume's size is a positive multiple of {SECTOR} bytes")]
    InvalidSize(u64),
    /// The volume exists already.
    #[error("volume {0} exists already")]
    Exists(String),
    /// No such volume.
    #[error("no volume {0} in the pool")]
    NotFound(String),
    /// A running VM holds the image.
    #[error("volume {0} is in use by a running VM")]
    InUse(String),
    /// A resize to a smaller size, which would cut the guest's data.
    #[error("volume {name} holds {current} bytes; shrinking it to {requested} would cut the guest's data")]
    Shrink {
        /// The volume.
        name: String,
        /// Its size.
        current: u64,
        /// The size asked for.
        requested: u64,
    },
    /// `qemu-img` failed or is missing.
    #[error("converting {0}")]
    Convert(String),
    /// A file system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

/// One image in a pool.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Volume {
    /// Its file name.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// The disk's size, in bytes.
    pub capacity: u64,
    /// The bytes the file system holds for it (less than the capacity while sparse).
    pub allocation: u64,
}

/// The space of the file system a pool lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PoolSpace {
    /// Its size, in bytes.
    pub capacity: u64,
    /// The bytes still free for unprivileged use.
    pub available: u64,
}

/// A directory of raw images.
#[derive(Clone, Debug)]
pub struct StoragePool {
    dir: PathBuf,
}

fn check_name(name: &str) -> Result<(), StorageError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(StorageError::InvalidName(name.to_owned()))
    }
}

fn check_size(bytes: u64) -> Result<(), StorageError> {
    if bytes == 0 || !bytes.is_multiple_of(SECTOR) {
        return Err(StorageError::InvalidSize(bytes));
    }
    Ok(())
}

/// Fails when a VM process holds the image's lock (virtio-blk locks every image it opens).
fn check_unused(name: &str, file: &File) -> Result<(), StorageError> {
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(())
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::InUse(name.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(format!("locking {name}"))(e)),
    }
}

/// The directory of a pool's volume markers.
const MARKERS: &str = ".cimvirt-volumes";

impl StoragePool {
    fn marker(&self, name: &str) -> PathBuf {
        self.dir.join(MARKERS).join(name)
    }

    fn is_volume(&self, name: &str) -> bool {
        self.marker(name).is_file()
    }

    fn mark(&self, name: &str) -> Result<(), StorageError> {
        let dir = self.dir.join(MARKERS);
        std::fs::create_dir_all(&dir).map_err(io(format!("{}", dir.display())))?;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.marker(name))
            .map(|_| ())
            .map_err(io(format!("marking {name} as a volume")))
    }

    /// Makes the existing image `name` in the pool's directory a volume (one copied there by
    /// hand, or made before volumes were marked).
    pub fn adopt(&self, name: &str) -> Result<Volume, StorageError> {
        let path = self.path_of(name)?;
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(StorageError::NotFound(name.to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(name.to_owned()))
            }
            Err(e) => return Err(io(format!("volume {name}"))(e)),
        }
        self.mark(name)?;
        self.volume(name)
    }
    /// The pool in `dir`, created if missing. Its path is made absolute and free of links,
    /// as the volume paths VMs are given are.
    pub fn open(dir: &Path) -> Result<StoragePool, StorageError> {
        let context = format!("pool {}", dir.display());
        std::fs::create_dir_all(dir).map_err(io(&context))?;
        Ok(StoragePool {
            dir: dir.canonicalize().map_err(io(context))?,
        })
    }

    /// The pool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where volume `name` lives.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, StorageError> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Every volume, by name: the marked images that are still there.
    pub fn volumes(&self) -> Result<Vec<Volume>, StorageError> {
        let markers = self.dir.join(MARKERS);
        let context = format!("listing {}", markers.display());
        let entries = match std::fs::read_dir(&markers) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(context)(e)),
        };
        let mut volumes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&context))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_err() {
                continue;
            }
            match self.volume(&name) {
                Ok(v) => volumes.push(v),
                // The image went without cimvirt (removed by hand): so does its marker.
                Err(StorageError::NotFound(_)) => {
                    let _ = std::fs::remove_file(entry.path());
                }
                Err(e) => return Err(e),
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Volume `name` (a file of that name that is not a volume is not found).
    pub fn volume(&self, name: &str) -> Result<Volume, StorageError> {
        let path = self.path_of(name)?;
        if !self.is_volume(name) {
            return Err(StorageError::NotFound(name.to_owned()));
        }
        let meta = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Err(StorageError::NotFound(name.to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(name.to_owned()))
            }
            Err(e) => return Err(io(format!("volume {name}"))(e)),
        };
        Ok(Volume {
            name: name.to_owned(),
            path,
            capacity: meta.len(),
            allocation: meta.blocks() * 512,
        })
    }

    /// Creates volume `name` of `bytes`, sparse.
    pub fn create_volume(&self, name: &str, bytes: u64) -> Result<Volume, StorageError> {
        check_size(bytes)?;
        let path = self.path_of(name)?;
        let file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StorageError::Exists(name.to_owned()))
            }
            Err(e) => return Err(io(format!("creating {name}"))(e)),
        };
        if let Err(e) = file.set_len(bytes).map_err(io(format!("sizing {name}"))) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if let Err(e) = self.mark(name) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.volume(name)
    }

    /// Grows volume `name` to `bytes` (new space reads as zeros). A VM using it sees the new
    /// size when it next starts.
    pub fn resize_volume(&self, name: &str, bytes: u64) -> Result<Volume, StorageError> {
        check_size(bytes)?;
        let current = self.volume(name)?;
        if bytes < current.capacity {
            return Err(StorageError::Shrink {
                name: name.to_owned(),
                current: current.capacity,
                requested: bytes,
            });
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&current.path)
            .map_err(io(format!("opening {name}")))?;
        file.set_len(bytes)
            .map_err(io(format!("resizing {name}")))?;
        self.volume(name)
    }

    /// Deletes volume `name`, unless a running VM uses it.
    pub fn delete_volume(&self, name: &str) -> Result<(), StorageError> {
        let volume = self.volume(name)?;
        let file = File::open(&volume.path).map_err(io(format!("opening {name}")))?;
        check_unused(name, &file)?;
        std::fs::remove_file(&volume.path).map_err(io(format!("deleting {name}")))?;
        let _ = std::fs::remove_file(self.marker(name));
        Ok(())
    }

    /// Converts `source` (qcow2, vmdk, vdi, raw ...) into a new raw volume `name`.
    pub fn import(&self, name: &str, source: &Path) -> Result<Volume, StorageError> {
        self.import_with(name, &mut |partial| {
            let output = Command::new("qemu-img")
                .args(["convert", "-O", "raw"])
                .arg(source)
                .arg(partial)
                .output()
                .map_err(|e| {
                    format!(
                        "{}: qemu-img (Debian package qemu-utils) could not run: {e}",
                        source.display()
                    )
                })?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{}: {}",
                    source.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        })
    }

    /// Makes a new volume `name` from what `write` puts in the file it is given (a hidden
    /// file in the pool's directory, which becomes the volume only once `write` succeeds;
    /// it is removed otherwise).
    pub fn import_with(
        &self,
        name: &str,
        write: &mut dyn FnMut(&Path) -> Result<(), String>,
    ) -> Result<Volume, StorageError> {
        let path = self.path_of(name)?;
        if path.exists() {
            return Err(StorageError::Exists(name.to_owned()));
        }
        let partial = self.dir.join(format!(".{name}.importing"));
        if let Err(e) = write(&partial) {
            let _ = std::fs::remove_file(&partial);
            return Err(StorageError::Convert(e));
        }
        if let Err(e) = std::fs::rename(&partial, &path) {
            let _ = std::fs::remove_file(&partial);
            return Err(io(format!("placing {name}"))(e));
        }
        self.mark(name)?;
        self.volume(name)
    }

    /// The size and free space of the pool's file system.
    pub fn space(&self) -> Result<PoolSpace, StorageError> {
        let context = format!("statvfs {}", self.dir.display());
        let path = CString::new(self.dir.as_os_str().as_bytes())
            .map_err(|e| io(&context)(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        // SAFETY: statvfs is plain old data; all zeros is a valid value of it.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `stat` is a valid statvfs, both live across
        // the call.
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
            return Err(io(context)(std::io::Error::last_os_error()));
        }
        let fragment = stat.f_frsize;
        Ok(PoolSpace {
            capacity: stat.f_blocks * fragment,
            available: stat.f_bavail * fragment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume_names(pool: &StoragePool) -> Vec<String> {
        pool.volumes()
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect()
    }

    #[test]
    fn volumes_are_created_sparse_grown_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let pool = StoragePool::open(&dir.path().join("pool")).unwrap();
        let volume = pool.create_volume("a.img", 1 << 30).unwrap();
        assert_eq!(volume.capacity, 1 << 30);
        assert!(volume.allocation < 1 << 20, "sparse: {}", volume.allocation);
        assert!(matches!(
            pool.create_volume("a.img", 4096),
            Err(StorageError::Exists(_))
        ));
        pool.create_volume("b.img", 4096).unwrap();
        std::fs::write(pool.dir().join(".hidden"), b"").unwrap();
        std::fs::create_dir(pool.dir().join("subdir")).unwrap();
        let names = volume_names(&pool);
        assert_eq!(names, ["a.img", "b.img"]);

        assert_eq!(pool.resize_volume("b.img", 8192).unwrap().capacity, 8192);
        assert!(matches!(
            pool.resize_volume("b.img", 4096),
            Err(StorageError::Shrink { current: 8192, .. })
        ));
        pool.delete_volume("b.img").unwrap();
        assert!(matches!(
            pool.volume("b.img"),
            Err(StorageError::NotFound(_))
        ));
        let space = pool.space().unwrap();
        assert!(space.capacity > 0 && space.available <= space.capacity);
    }

    #[test]
    fn a_qcow2_image_is_imported_as_a_raw_volume() {
        if Command::new("qemu-img").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "qemu-img (qemu-utils) is missing on a CI machine"
            );
            eprintln!("NOT RUN: qemu-img (Debian package qemu-utils) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.qcow2");
        let created = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&source)
            .arg("3M")
            .status()
            .unwrap();
        assert!(created.success());
        let pool = StoragePool::open(&dir.path().join("pool")).unwrap();
        let volume = pool.import("imported.img", &source).unwrap();
        assert_eq!(volume.capacity, 3 << 20, "a raw image of the virtual size");
        assert!(matches!(
            pool.import("imported.img", &source),
            Err(StorageError::Exists(_))
        ));
        let err = pool
            .import("other.img", &dir.path().join("missing"))
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(pool.volume("other.img").is_err(), "nothing left behind");
        assert_eq!(pool.volumes().unwrap().len(), 1);
    }

    #[test]
    fn only_images_cimvirt_made_imported_or_adopted_are_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let pool = StoragePool::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not an image").unwrap();
        pool.create_volume("made.img", 1 << 20).unwrap();
        let names = volume_names(&pool);
        assert_eq!(names, ["made.img"]);
        assert!(matches!(
            pool.delete_volume("notes.txt"),
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(
            pool.resize_volume("notes.txt", 1 << 20),
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(
            pool.create_volume("notes.txt", 1 << 20),
            Err(StorageError::Exists(_))
        ));
        assert_eq!(
            std::fs::read(dir.path().join("notes.txt")).unwrap(),
            b"not an image"
        );
        pool.adopt("notes.txt").unwrap();
        assert_eq!(pool.volumes().unwrap().len(), 2);
        pool.delete_volume("notes.txt").unwrap();
        // An image removed by hand is no longer a volume.
        std::fs::remove_file(dir.path().join("made.img")).unwrap();
        assert!(pool.volumes().unwrap().is_empty());
        assert!(matches!(
            pool.adopt("gone.img"),
            Err(StorageError::NotFound(_))
        ));
    }

    #[test]
    fn bad_names_sizes_and_images_in_use_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pool = StoragePool::open(dir.path()).unwrap();
        for name in ["", ".x", "../x", "a/b", "a b"] {
            assert!(
                matches!(
                    pool.create_volume(name, 4096),
                    Err(StorageError::InvalidName(_))
                ),
                "{name:?}"
            );
        }
        for size in [0, 1000] {
            assert!(matches!(
                pool.create_volume("x", size),
                Err(StorageError::InvalidSize(_))
            ));
        }
        let volume = pool.create_volume("busy.img", 4096).unwrap();
        let holder = File::open(&volume.path).unwrap();
        holder.try_lock().unwrap();
        assert!(matches!(
            pool.delete_volume("busy.img"),
            Err(StorageError::InUse(_))
        ));
        drop(holder);
        pool.delete_volume("busy.img").unwrap();
    }
}
