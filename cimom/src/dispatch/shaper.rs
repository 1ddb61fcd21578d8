//! Shaping results: the one place where PropertyList, DeepInheritance, LocalOnly,
//! IncludeClassOrigin and query filters apply, whatever produced the instances.

use std::collections::HashSet;
use std::sync::Arc;

use cim_schema::{Class, Instance, Name, Repository};

use super::operation::InstanceOptions;
use super::provider;
use super::query::Query;
use super::result::{InstanceWithPath, Item};
use crate::cimxml::encode::InstanceFilter;
use crate::error::{CimError, CimResult};

/// Shapes the instances of one class into result items: the central place where
/// PropertyList, DeepInheritance, LocalOnly, IncludeClassOrigin and query filters apply.
pub(super) struct Shaper {
    pub names_only: bool,
    pub filter: Arc<InstanceFilter>,
    pub origin_class: Option<Arc<Class>>,
    pub query: Option<Arc<Query>>,
    pub schema: Arc<Repository>,
    pub namespace: String,
}

impl Shaper {
    pub fn new(
        schema: Arc<Repository>,
        namespace: &str,
        requested: &Class,
        actual: &Arc<Class>,
        options: &InstanceOptions,
        names_only: bool,
        query: Option<Arc<Query>>,
    ) -> Shaper {
        Shaper {
            names_only,
            filter: Arc::new(instance_filter(requested, actual, options)),
            origin_class: options.include_class_origin.then(|| actual.clone()),
            query,
            schema,
            namespace: namespace.to_string(),
        }
    }

    /// The item for `object`, or `None` if the query filters it out.
    pub fn item(&self, object: Arc<InstanceWithPath>) -> Option<Item> {
        if let Some(q) = &self.query {
            let ns = self.schema.namespace(&self.namespace).ok()?;
            if !q.matches(&object.instance, &|a, b| ns.is_subclass_of(a, b)) {
                return None;
            }
        }
        Some(if self.names_only {
            Item::Path(object.path.clone())
        } else {
            Item::Instance {
                object,
                filter: self.filter.clone(),
                class: self.origin_class.clone(),
            }
        })
    }

    /// Gives a provider's instance its path and shapes it.
    pub fn provider_item(&self, class: &Class, instance: Instance) -> CimResult<Option<Item>> {
        let path = if instance.class_name == class.name {
            instance.path(class, None)
        } else {
            let own = self
                .schema
                .class(&self.namespace, instance.class_name.as_str())
                .map_err(|_| {
                    CimError::failed(format!(
                        "the provider of {} returned an instance of unknown class {}",
                        class.name, instance.class_name
                    ))
                })?;
            instance.path(own, None)
        };
        Ok(self.item(provider::with_path(path, instance)))
    }
}

/// Which properties of an instance of `actual` are returned when `requested` was asked for.
pub(super) fn instance_filter(
    requested: &Class,
    actual: &Class,
    options: &InstanceOptions,
) -> InstanceFilter {
    let mut allowed: Option<HashSet<Name>> = None;
    let mut restrict = |set: HashSet<Name>| {
        allowed = Some(match allowed.take() {
            None => set,
            Some(a) => a.intersection(&set).cloned().collect(),
        })
    };
    if let Some(list) = &options.property_list {
        restrict(list.iter().cloned().collect());
    }
    if !options.deep_inheritance && actual.name != requested.name {
        restrict(requested.properties.keys().cloned().collect());
    }
    if options.local_only {
        restrict(
            actual
                .properties
                .values()
                .filter(|p| !p.propagated)
                .map(|p| p.name.clone())
                .collect(),
        );
    }
    InstanceFilter {
        properties: allowed.map(Arc::new),
    }
}
