//! Association traversal: Associators, AssociatorNames, References, ReferenceNames and
//! their pull variants, for instances and (schema-level) for classes.

use std::collections::HashSet;
use std::sync::Arc;

use cim_schema::{eq_ignore_case, Class, Name, Namespace, ObjectPath, Value};
use indexmap::IndexMap;
use tokio::sync::mpsc;

use super::convert::normalize_path;
use super::operation::{AssociationFilter, InstanceOptions, OpenOptions};
use super::provider::{self, InstanceSink, ProviderContext};
use super::query::Query;
use super::result::{ClassItem, InstanceWithPath, Item, ItemStream, Outcome, ResultForm};
use super::shaper::Shaper;
use super::{Cimom, RequestContext};
use crate::cimxml::encode::ClassFilter;
use crate::error::{CimError, CimResult, StatusCode};

/// One traversal request: Associators, References, their Names forms and pull forms.
pub(super) struct Traversal {
    /// The source object: an instance path, or a class path for schema traversal.
    pub object: ObjectPath,
    /// AssocClass, ResultClass, Role, ResultRole.
    pub filter: AssociationFilter,
    /// How result instances are shaped.
    pub options: InstanceOptions,
    /// IncludeQualifiers, for class results.
    pub include_qualifiers: bool,
    /// Paths only (the Names and Paths forms).
    pub names_only: bool,
    /// Associators (the objects at the other end) rather than References.
    pub associators: bool,
    /// A pull operation's filter query.
    pub query: Option<Arc<Query>>,
}

impl Traversal {
    /// Associators (`associators`) or References of `object`, with default shaping.
    pub(super) fn new(object: ObjectPath, filter: AssociationFilter, associators: bool) -> Self {
        Traversal {
            object,
            filter,
            options: InstanceOptions::default(),
            include_qualifiers: false,
            names_only: false,
            associators,
            query: None,
        }
    }
}

/// The association classes that can reach a class, each with the roles through which
/// they do, after the AssocClass and Role filters.
fn candidates(
    namespace: &Namespace,
    class: &str,
    filter: &AssociationFilter,
) -> Vec<(Arc<Class>, Vec<Name>)> {
    let mut out: IndexMap<Name, (Arc<Class>, Vec<Name>)> = IndexMap::new();
    let mut current = namespace.class(class).cloned();
    while let Some(c) = current {
        for r in namespace.association_roles(c.name.as_str()) {
            if let Some(ac) = &filter.assoc_class {
                if !namespace.is_subclass_of(r.association.as_str(), ac.as_str()) {
                    continue;
                }
            }
            if filter.role.as_ref().is_some_and(|role| *role != r.role) {
                continue;
            }
            let Some(assoc) = namespace.class(r.association.as_str()) else {
                continue;
            };
            let entry = out
                .entry(assoc.name.clone())
                .or_insert_with(|| (assoc.clone(), Vec::new()));
            if !entry.1.contains(&r.role) {
                entry.1.push(r.role.clone());
            }
        }
        current = c
            .superclass
            .as_ref()
            .and_then(|s| namespace.class(s.as_str()).cloned());
    }
    out.into_values().collect()
}

/// Whether reference `r` (found in namespace `ns`) points at `object` in `object_ns`.
fn refers_to(r: &ObjectPath, ns: &str, object: &ObjectPath, object_ns: &str) -> bool {
    let r_ns = r.namespace.as_deref().unwrap_or(ns).trim_matches('/');
    let same_ns = eq_ignore_case(r_ns, object_ns)
        || (eq_ignore_case(r_ns, "root/interop")
            && eq_ignore_case(object_ns, crate::INTEROP_NAMESPACE));
    same_ns && r.local() == *object
}

impl Cimom {
    /// Checks a traversal against the schema and normalizes its object path.
    fn validate(&self, ns: &str, mut t: Traversal) -> CimResult<Traversal> {
        let schema = self.schema();
        let namespace = schema.namespace(ns)?;
        let class = namespace
            .class(t.object.class_name.as_str())
            .ok_or_else(|| {
                CimError::invalid_parameter(format!(
                    "ObjectName names class {}, which does not exist in namespace {ns}",
                    t.object.class_name
                ))
            })?;
        for c in [&t.filter.assoc_class, &t.filter.result_class]
            .into_iter()
            .flatten()
        {
            if namespace.class(c.as_str()).is_none() {
                return Err(CimError::invalid_parameter(format!(
                    "filter class {c} does not exist in namespace {ns}"
                )));
            }
        }
        t.object = if t.object.keys.is_empty() {
            ObjectPath::class(None, class.name.clone())
        } else {
            normalize_path(class, &t.object)?
        };
        Ok(t)
    }

    fn spawn_traversal(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        t: Traversal,
    ) -> ItemStream {
        let (tx, rx) = mpsc::channel(self.config.stream_buffer);
        let this = self.clone();
        let pctx = self.provider_context(ctx, ns);
        tokio::spawn(async move {
            let result = if t.object.keys.is_empty() {
                this.traverse_classes(&pctx, &t, &tx).await
            } else {
                this.traverse_instances(&pctx, &t, &tx).await
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    /// Associators, AssociatorNames, References or ReferenceNames, streamed.
    pub(super) fn traverse_op(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        t: Traversal,
    ) -> CimResult<Outcome> {
        let t = self.validate(ns, t)?;
        let form = if t.names_only {
            ResultForm::ObjectPath
        } else {
            ResultForm::ObjectWithPath
        };
        Ok(Outcome::Stream(self.spawn_traversal(ctx, ns, t), form))
    }

    /// OpenAssociatorInstances/Paths or OpenReferenceInstances/Paths.
    pub(super) async fn open_traversal(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        mut t: Traversal,
        open: OpenOptions,
    ) -> CimResult<Outcome> {
        self.check_open(&open)?;
        if t.object.keys.is_empty() {
            return Err(CimError::invalid_parameter(
                "pull association operations take an instance path, not a class",
            ));
        }
        t.query = self.open_filter(ns, &open, None)?;
        let t = self.validate(ns, t)?;
        let form = if t.names_only {
            ResultForm::InstancePath
        } else {
            ResultForm::InstanceWithPath
        };
        let stream = self.spawn_traversal(ctx, ns, t);
        self.open_stream(ctx, ns, stream, form, &open, None).await
    }

    /// The instances of exactly association `assoc` that refer to `object` through one of
    /// `roles`, each with the role that matched.
    async fn association_instances(
        &self,
        pctx: &ProviderContext,
        assoc: &Arc<Class>,
        object: &ObjectPath,
        roles: &[Name],
    ) -> CimResult<Vec<(Arc<InstanceWithPath>, Name)>> {
        let ns = pctx.namespace.as_str();
        let name = assoc.name.as_str();
        let from_provider = |instances: Vec<cim_schema::Instance>| {
            instances
                .into_iter()
                .map(|i| provider::with_path(i.path(assoc, None), i))
                .collect::<Vec<_>>()
        };
        let all = if let Some(p) = self.providers.associations(ns, name) {
            let sink = InstanceSink::collecting();
            let role = (roles.len() == 1).then(|| &roles[0]);
            p.references(pctx, assoc, object, role, &sink).await?;
            from_provider(sink.into_collected())
        } else if let Some(p) = self.providers.instances(ns, name) {
            let sink = InstanceSink::collecting();
            p.enumerate_instances(pctx, assoc, &sink).await?;
            from_provider(sink.into_collected())
        } else {
            self.instances
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .of_class(ns, name)
        };
        let mut out = Vec::new();
        for obj in all {
            for role in roles {
                if let Some(Value::Reference(r)) = obj.instance.get(role.as_str()) {
                    if refers_to(r, ns, object, ns) {
                        out.push((obj.clone(), role.clone()));
                    }
                }
            }
        }
        Ok(out)
    }

    async fn traverse_instances(
        &self,
        pctx: &ProviderContext,
        t: &Traversal,
        tx: &mpsc::Sender<CimResult<Item>>,
    ) -> CimResult<()> {
        let ns = pctx.namespace.as_str();
        self.fetch_instance(pctx, ns, &t.object).await?;
        let schema = pctx.schema.clone();
        let found = candidates(
            schema.namespace(ns)?,
            t.object.class_name.as_str(),
            &t.filter,
        );
        let mut seen = HashSet::new();
        for (assoc, roles) in found {
            if assoc.is_abstract() && self.providers.instances(ns, assoc.name.as_str()).is_none() {
                continue;
            }
            for (obj, role) in self
                .association_instances(pctx, &assoc, &t.object, &roles)
                .await?
            {
                if !t.associators {
                    let shaper = Shaper::new(
                        schema.clone(),
                        ns,
                        &assoc,
                        &assoc,
                        &t.options,
                        t.names_only,
                        t.query.clone(),
                    );
                    let mut path = obj.path.clone();
                    path.namespace = Some(ns.to_string());
                    let obj = provider::with_path(path, obj.instance.clone());
                    if let Some(item) = shaper.item(obj) {
                        if tx.send(Ok(item)).await.is_err() {
                            return Ok(());
                        }
                    }
                    continue;
                }
                for r in assoc.references() {
                    if r.name == role
                        || t.filter
                            .result_role
                            .as_ref()
                            .is_some_and(|rr| *rr != r.name)
                    {
                        continue;
                    }
                    let Some(Value::Reference(target)) = obj.instance.get(r.name.as_str()) else {
                        continue;
                    };
                    let Ok(target_ns) =
                        self.resolve_namespace(target.namespace.as_deref().unwrap_or(ns))
                    else {
                        continue;
                    };
                    let Ok(target_space) = schema.namespace(&target_ns) else {
                        continue;
                    };
                    if let Some(rc) = &t.filter.result_class {
                        if !target_space.is_subclass_of(target.class_name.as_str(), rc.as_str()) {
                            continue;
                        }
                    }
                    if !seen.insert((target_ns.to_lowercase(), target.local())) {
                        continue;
                    }
                    let target_ctx = ProviderContext {
                        namespace: target_ns.clone(),
                        ..pctx.clone()
                    };
                    let (class, object) = match self
                        .fetch_instance(&target_ctx, &target_ns, &target.local())
                        .await
                    {
                        Ok(found) => found,
                        // A dangling reference: the associated object is gone.
                        Err(e) if e.code == StatusCode::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    let mut path = object.path.clone();
                    path.namespace = Some(target_ns.clone());
                    let object = provider::with_path(path, object.instance.clone());
                    let shaper = Shaper::new(
                        schema.clone(),
                        &target_ns,
                        &class,
                        &class,
                        &t.options,
                        t.names_only,
                        t.query.clone(),
                    );
                    if let Some(item) = shaper.item(object) {
                        if tx.send(Ok(item)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn traverse_classes(
        &self,
        pctx: &ProviderContext,
        t: &Traversal,
        tx: &mpsc::Sender<CimResult<Item>>,
    ) -> CimResult<()> {
        let ns = pctx.namespace.as_str();
        let schema = pctx.schema.clone();
        let namespace = schema.namespace(ns)?;
        let filter = Arc::new(ClassFilter {
            local_only: false,
            include_qualifiers: t.include_qualifiers,
            include_class_origin: t.options.include_class_origin,
            properties: t
                .options
                .property_list
                .clone()
                .map(|l| l.into_iter().collect()),
        });
        let mut results: IndexMap<Name, Arc<Class>> = IndexMap::new();
        for (assoc, roles) in candidates(namespace, t.object.class_name.as_str(), &t.filter) {
            if !t.associators {
                results.insert(assoc.name.clone(), assoc);
                continue;
            }
            for r in assoc.references() {
                if roles.contains(&r.name) && roles.len() == 1 {
                    continue;
                }
                if t.filter
                    .result_role
                    .as_ref()
                    .is_some_and(|rr| *rr != r.name)
                {
                    continue;
                }
                let Some(target) = r
                    .reference_class
                    .as_ref()
                    .and_then(|c| namespace.class(c.as_str()))
                else {
                    continue;
                };
                if let Some(rc) = &t.filter.result_class {
                    if !namespace.is_subclass_of(target.name.as_str(), rc.as_str()) {
                        continue;
                    }
                }
                results.insert(target.name.clone(), target.clone());
            }
        }
        for class in results.into_values() {
            let path = ObjectPath::class(Some(ns.to_string()), class.name.clone());
            let item = if t.names_only {
                Item::ClassPath(path)
            } else {
                Item::Class(ClassItem {
                    class,
                    schema: schema.clone(),
                    namespace: ns.to_string(),
                    filter: filter.clone(),
                })
            };
            if tx.send(Ok(item)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}
