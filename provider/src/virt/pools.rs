//! The storage pools VM disks come from: those of the configuration file, and those clients
//! create through KVM_ResourcePoolConfigurationService.CreateChildResourcePool, which are
//! recorded in the database. Each is a directory of raw images.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hypervisor_shim::storage::StoragePool;

use super::lock;
use crate::error::{CimError, CimResult, StatusCode};
use crate::store::Store;

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
}

/// Whether `name` can name a pool (`DiskPool/NAME`): letters, digits, `.`, `_`, `-`.
fn check_name(name: &str) -> CimResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(CimError::invalid_parameter(format!(
            "'{name}' cannot name a pool: use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn open(name: &str, dir: &Path) -> CimResult<StoragePool> {
    StoragePool::open(dir)
        .map_err(|e| CimError::failed(format!("storage pool {name} ({}): {e}", dir.display())))
}

impl StoragePools {
    /// The configured pools (each directory created if missing) and those recorded in
    /// `store`. A recorded pool whose name the configuration now uses gives way to it.
    pub fn load(configured: Vec<(String, PathBuf)>, store: Arc<Store>) -> CimResult<Self> {
        let mut pools = Vec::new();
        for (name, dir) in configured {
            pools.push(Entry {
                pool: open(&name, &dir)?,
                name,
                configured: true,
            });
        }
        let recorded = store
            .pools()
            .map_err(|e| CimError::failed(format!("reading the storage pools: {e}")))?;
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
        })
    }

    /// Every pool, by name.
    pub fn list(&self) -> Vec<(String, StoragePool)> {
        lock(&self.pools)
            .iter()
            .map(|e| (e.name.clone(), e.pool.clone()))
            .collect()
    }

    /// Pool `name`.
    pub fn get(&self, name: &str) -> CimResult<StoragePool> {
        lock(&self.pools)
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.pool.clone())
            .ok_or_else(|| CimError::not_found(format!("no storage pool DiskPool/{name}")))
    }

    /// Creates pool `name` over the absolute directory `dir` (made if missing), and records
    /// it. Names and directories are each used once.
    pub fn create(&self, name: &str, dir: &Path) -> CimResult<()> {
        check_name(name)?;
        if !dir.is_absolute() {
            return Err(CimError::invalid_parameter(format!(
                "Path {} is not absolute",
                dir.display()
            )));
        }
        let mut pools = lock(&self.pools);
        if pools.iter().any(|e| e.name == name) {
            return Err(CimError::new(
                StatusCode::AlreadyExists,
                format!("storage pool DiskPool/{name} exists"),
            ));
        }
        let pool = open(name, dir)?;
        if let Some(other) = pools.iter().find(|e| same_dir(e.pool.dir(), pool.dir())) {
            return Err(CimError::new(
                StatusCode::AlreadyExists,
                format!(
                    "{} is already storage pool DiskPool/{}",
                    dir.display(),
                    other.name
                ),
            ));
        }
        let text = dir.to_str().ok_or_else(|| {
            CimError::invalid_parameter(format!("Path {} is not UTF-8", dir.display()))
        })?;
        self.store
            .put_pool(name, text)
            .map_err(|e| CimError::failed(format!("recording storage pool {name}: {e}")))?;
        pools.push(Entry {
            name: name.to_owned(),
            pool,
            configured: false,
        });
        Ok(())
    }

    /// Forgets pool `name`, created through CIM; its directory and images stay.
    pub fn delete(&self, name: &str) -> CimResult<()> {
        let mut pools = lock(&self.pools);
        let position = pools
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| CimError::not_found(format!("no storage pool DiskPool/{name}")))?;
        if pools[position].configured {
            return Err(CimError::failed(format!(
                "storage pool DiskPool/{name} is in the configuration file: remove it there"
            )));
        }
        self.store
            .delete_pool(name)
            .map_err(|e| CimError::failed(format!("forgetting storage pool {name}: {e}")))?;
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

    #[test]
    fn pools_are_created_recorded_reloaded_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let configured = vec![("default".to_owned(), dir.path().join("images"))];
        let pools = StoragePools::load(configured.clone(), store.clone()).unwrap();
        let fast = dir.path().join("fast");
        pools.create("fast", &fast).unwrap();
        assert!(fast.is_dir(), "the directory is made");
        for (name, path, code) in [
            ("fast", dir.path().join("other"), StatusCode::AlreadyExists),
            ("again", fast.clone(), StatusCode::AlreadyExists),
            ("a/b", dir.path().join("x"), StatusCode::InvalidParameter),
            ("rel", PathBuf::from("images"), StatusCode::InvalidParameter),
        ] {
            assert_eq!(pools.create(name, &path).unwrap_err().code, code, "{name}");
        }
        drop(pools);
        let pools = StoragePools::load(configured, store).unwrap();
        let names: Vec<String> = pools.list().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["default", "fast"]);
        assert_eq!(
            pools.delete("default").unwrap_err().code,
            StatusCode::Failed
        );
        pools.delete("fast").unwrap();
        assert!(fast.is_dir(), "the images stay");
        assert_eq!(pools.get("fast").unwrap_err().code, StatusCode::NotFound);
    }
}
