//! The in-memory table of static instances, by namespace and class. The store holds the
//! durable copy; this is what enumerations read.

use std::sync::Arc;

use cim_schema::{Name, NameMap, ObjectPath};
use indexmap::IndexMap;

use super::result::InstanceWithPath;

type ClassInstances = IndexMap<ObjectPath, Arc<InstanceWithPath>, foldhash::fast::RandomState>;

/// Static instances by namespace and class (both ignoring case).
#[derive(Default)]
pub struct InstanceTable {
    namespaces: NameMap<NameMap<ClassInstances>>,
}

impl InstanceTable {
    fn class_map(&self, ns: &str, class: &str) -> Option<&ClassInstances> {
        self.namespaces.get(ns)?.get(class)
    }

    /// The instances of exactly `class`, in creation order. Cheap: shares the instances.
    pub fn of_class(&self, ns: &str, class: &str) -> Vec<Arc<InstanceWithPath>> {
        self.class_map(ns, class)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of instances of exactly `class`.
    pub fn count(&self, ns: &str, class: &str) -> usize {
        self.class_map(ns, class).map_or(0, IndexMap::len)
    }

    /// The instance at the local `path`.
    pub fn get(&self, ns: &str, path: &ObjectPath) -> Option<Arc<InstanceWithPath>> {
        self.class_map(ns, path.class_name.as_str())?
            .get(path)
            .cloned()
    }

    /// Inserts or replaces an instance; returns the previous one.
    pub fn insert(
        &mut self,
        ns: &str,
        object: Arc<InstanceWithPath>,
    ) -> Option<Arc<InstanceWithPath>> {
        self.namespaces
            .get_or_insert_with(&Name::new(ns), NameMap::new)
            .get_or_insert_with(&object.path.class_name, IndexMap::default)
            .insert(object.path.clone(), object)
    }

    /// Removes the instance at `path`.
    pub fn remove(&mut self, ns: &str, path: &ObjectPath) -> Option<Arc<InstanceWithPath>> {
        self.namespaces
            .get_mut(ns)?
            .get_mut(path.class_name.as_str())?
            .shift_remove(path)
    }
}
