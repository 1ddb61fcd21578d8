//! The storage pools VM disks come from: those of the configuration file, and those clients
//! create through KVM_ResourcePoolConfigurationService.CreateChildResourcePool, which are
//! recorded in the database. Each is a directory of raw images.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use hypervisor_shim::storage::StoragePool;

use super::error::VmError;
use cimom::lock;
use cimom::store::{ProviderTable, Store};

/// Storage pools created through CIM: their directories (UTF-8), by pool name.
const POOLS_TABLE: ProviderTable = ProviderTable::new("pools");

/// One pool.
#[derive(Clone)]
struct Entry {
    name: String,
    pool: StoragePool,
    /// From the configuration file: it cannot be deleted through CIM.
    configured: bool,
}

/// The storage pools, by name.
pub struct StoragePools {
    store: Arc<Store>,
    pools: Mutex<Vec<Entry>>,
    /// The directories under which clients may create pools (`[storage] pool_roots`),
    /// absolute and free of links.
    roots: Vec<PathBuf>,
}

/// Where storage pools are.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// The pools of the configuration file, by name.
    pub configured: Vec<(String, PathBuf)>,
    /// The directories under which clients may create pools.
    pub roots: Vec<PathBuf>,
}

/// `dir` resolved (absolute, free of links as far as it exists), if it lies under one of
/// `roots`: a client's pool may not reach the rest of the host's files.
fn under_roots(dir: &Path, roots: &[PathBuf]) -> Result<PathBuf, VmError> {
    if !dir.is_absolute() {
        return Err(VmError::invalid(format!(
            "Path {} is not absolute",
            dir.display()
        )));
    }
    if dir.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(VmError::invalid(format!(
            "Path {} goes up with '..'",
            dir.display()
        )));
    }
    // The part that exists is resolved (links included); the rest is made below it.
    let mut existing = dir.to_path_buf();
    let mut missing = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = existing
        .canonicalize()
        .map_err(|e| VmError::failed(format!("{}: {e}", existing.display())))?;
    resolved.extend(missing.iter().rev());
    if roots.iter().any(|root| resolved.starts_with(root)) {
        return Ok(resolved);
    }
    let allowed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(VmError::forbidden(format!(
        "Path {} is not under a directory where pools may be created ([storage] pool_roots: {})",
        dir.display(),
        allowed.join(", ")
    )))
}

/// Whether `name` can name a pool (`DiskPool/NAME`): letters, digits, `.`, `_`, `-`.
fn check_name(name: &str) -> Result<(), VmError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(VmError::invalid(format!(
            "'{name}' cannot name a pool: use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn open(name: &str, dir: &Path) -> Result<StoragePool, VmError> {
    StoragePool::open(dir)
        .map_err(|e| VmError::failed(format!("storage pool {name} ({}): {e}", dir.display())))
}

impl StoragePools {
    /// The configured pools (each directory created if missing) and those recorded in
    /// `store`. A recorded pool whose name the configuration now uses gives way to it.
    pub fn load(settings: PoolSettings, store: Arc<Store>) -> Result<Self, VmError> {
        let mut pools = Vec::new();
        let mut roots = Vec::new();
        for root in &settings.roots {
            std::fs::create_dir_all(root)
                .and_then(|()| root.canonicalize())
                .map(|r| roots.push(r))
                .map_err(|e| VmError::failed(format!("pool root {}: {e}", root.display())))?;
        }
        for (name, dir) in settings.configured {
            pools.push(Entry {
                pool: open(&name, &dir)?,
                name,
                configured: true,
            });
        }
        let recorded = store
            .records(POOLS_TABLE)
            .map_err(|e| VmError::failed(format!("reading the storage pools: {e}")))?;
        for (name, dir) in recorded {
            if pools.iter().any(|e| e.name == name) {
                tracing::warn!(pool = name, "a pool created through CIM has the name of a configured one; the configured one is used");
                continue;
            }
            let dir = PathBuf::from(String::from_utf8_lossy(&dir).into_owned());
            match StoragePool::open(&dir) {
                Ok(pool) => pools.push(Entry {
                    name,
                    pool,
                    configured: false,
                }),
                Err(e) => {
                    tracing::warn!(pool = name, dir = %dir.display(), "storage pool unusable: {e}")
                }
            }
        }
        Ok(StoragePools {
            store,
            pools: Mutex::new(pools),
            roots,
        })
    }

    /// Every pool, by name.
    pub fn list(&self) -> Vec<(String, StoragePool)> {
        lock(&self.pools)
            .iter()
            .map(|e| (e.name.clone(), e.pool.clone()))
            .collect()
    }

    /// Whether `path` is a volume of one of the pools.
    pub fn is_volume(&self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let Ok(dir) = dir.canonicalize() else {
            return false;
        };
        let name = name.to_string_lossy();
        lock(&self.pools)
            .iter()
            .any(|e| e.pool.dir() == dir && e.pool.volume(&name).is_ok())
    }

    /// Pool `name`.
    pub fn get(&self, name: &str) -> Result<StoragePool, VmError> {
        lock(&self.pools)
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.pool.clone())
            .ok_or_else(|| VmError::not_found(format!("no storage pool DiskPool/{name}")))
    }

    /// Creates pool `name` over the absolute directory `dir` (made if missing) under one of
    /// the pool roots, and records it. Names and directories are each used once.
    pub fn create(&self, name: &str, dir: &Path) -> Result<(), VmError> {
        check_name(name)?;
        let dir = &under_roots(dir, &self.roots)?;
        let mut pools = lock(&self.pools);
        if pools.iter().any(|e| e.name == name) {
            return Err(VmError::exists(format!(
                "storage pool DiskPool/{name} exists"
            )));
        }
        let pool = open(name, dir)?;
        if let Some(other) = pools.iter().find(|e| same_dir(e.pool.dir(), pool.dir())) {
            return Err(VmError::exists(format!(
                "{} is already storage pool DiskPool/{}",
                dir.display(),
                other.name
            )));
        }
        let text = dir
            .to_str()
            .ok_or_else(|| VmError::invalid(format!("Path {} is not UTF-8", dir.display())))?;
        self.store
            .put_record(POOLS_TABLE, name, text.as_bytes())
            .map_err(|e| VmError::failed(format!("recording storage pool {name}: {e}")))?;
        pools.push(Entry {
            name: name.to_owned(),
            pool,
            configured: false,
        });
        Ok(())
    }

    /// Forgets pool `name`, created through CIM; its directory and images stay.
    pub fn delete(&self, name: &str) -> Result<(), VmError> {
        let mut pools = lock(&self.pools);
        let position = pools
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| VmError::not_found(format!("no storage pool DiskPool/{name}")))?;
        if pools[position].configured {
            return Err(VmError::failed(format!(
                "storage pool DiskPool/{name} is in the configuration file: remove it there"
            )));
        }
        self.store
            .delete_record(POOLS_TABLE, name)
            .map_err(|e| VmError::failed(format!("forgetting storage pool {name}: {e}")))?;
        pools.remove(position);
        Ok(())
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::VmErrorKind;

    #[test]
    fn pools_are_created_recorded_reloaded_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let images = dir.path().join("images");
        let settings = PoolSettings {
            configured: vec![("default".to_owned(), images.clone())],
            roots: vec![images.clone()],
        };
        let pools = StoragePools::load(settings.clone(), store.clone()).unwrap();
        let fast = images.join("fast");
        pools.create("fast", &fast).unwrap();
        assert!(fast.is_dir(), "the directory is made");
        for (name, path, code) in [
            ("fast", images.join("other"), VmErrorKind::Exists),
            ("again", fast.clone(), VmErrorKind::Exists),
            ("a/b", images.join("x"), VmErrorKind::Invalid),
            ("rel", PathBuf::from("images"), VmErrorKind::Invalid),
        ] {
            assert_eq!(pools.create(name, &path).unwrap_err().kind, code, "{name}");
        }
        drop(pools);
        let pools = StoragePools::load(settings, store).unwrap();
        let names: Vec<String> = pools.list().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["default", "fast"]);
        assert_eq!(
            pools.delete("default").unwrap_err().kind,
            VmErrorKind::Failed
        );
        pools.delete("fast").unwrap();
        assert!(fast.is_dir(), "the images stay");
        assert_eq!(pools.get("fast").unwrap_err().kind, VmErrorKind::NotFound);
    }

    #[test]
    fn pools_are_created_under_the_pool_roots_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let root = dir.path().join("pools");
        let pools = StoragePools::load(
            PoolSettings {
                configured: vec![],
                roots: vec![root.clone()],
            },
            store,
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        for (name, path, code) in [
            ("etc", PathBuf::from("/etc"), VmErrorKind::Forbidden),
            ("beside", dir.path().join("beside"), VmErrorKind::Forbidden),
            ("up", root.join("../up"), VmErrorKind::Invalid),
            ("link", root.join("etc/cimvirt"), VmErrorKind::Forbidden),
        ] {
            assert_eq!(pools.create(name, &path).unwrap_err().kind, code, "{name}");
        }
        assert!(!dir.path().join("beside").exists());
        pools.create("deep", &root.join("a/b")).unwrap();
        assert!(root.join("a/b").is_dir());
    }
}
