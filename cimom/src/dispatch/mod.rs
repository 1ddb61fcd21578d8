//! The CIM object manager: executes operations against the schema, the static instance
//! store and the registered providers.
//!
//! Classes and qualifier declarations live in an immutable [`Repository`] snapshot that
//! writers replace (readers never wait on a writer). Static instances live in an
//! instance table mirrored in the store. Results that can be large are streamed: a task
//! produces items into a bounded channel that the protocol encoder drains, so memory stays
//! flat however many instances an enumeration returns.

mod associations;
mod classes;
pub mod convert;
mod enumerations;
pub mod indication;
mod instances;
pub mod interop;
mod methods;
mod namespaces;
pub mod operation;
pub mod provider;
pub mod pull;
pub mod query;
pub mod result;
mod server_keys;
mod shaper;
pub mod sink_credentials;
mod table;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use cim_schema::{eq_ignore_case, Name, Repository};
use tracing::warn;

use crate::auth::{Access, User};
use crate::cimxml::dom::{self, XmlLimits};
use crate::cimxml::{decode, encode};
use crate::error::{CimError, CimResult, StatusCode};
use crate::store::{Store, StoreError};
use associations::Traversal;
use indication::queue::IndicationQueues;
use interop::ServerIdentity;
use operation::Operation;
use provider::{ProviderContext, Registry};
use pull::{PullContexts, PullLimits};
use result::{InstanceWithPath, Outcome};
use sink_credentials::SinkCredentialTable;
use table::InstanceTable;

/// The namespace names accepted for the interop namespace besides its own name.
const INTEROP_ALIASES: &[&str] = &["root/interop"];

/// Tunables of the object manager.
#[derive(Clone, Debug)]
pub struct CimomConfig {
    /// Pull operation limits.
    pub pull: PullLimits,
    /// Items buffered between a result producer and the encoder.
    pub stream_buffer: usize,
    /// Limits for XML read back from the store and embedded objects.
    pub xml: XmlLimits,
    /// Most indications kept waiting for one listener destination (the oldest are dropped
    /// past it).
    pub indication_queue_limit: usize,
}

/// Who sent a request.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The authenticated user.
    pub user: Arc<str>,
    /// Whether the user is an administrator (read-write in every namespace).
    pub administrator: bool,
}

impl RequestContext {
    /// The context of `user`'s requests.
    pub fn of(user: &User) -> Self {
        RequestContext {
            user: Arc::from(user.name.as_str()),
            administrator: user.is_administrator(),
        }
    }
}

/// Why the object manager could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

/// The object manager.
pub struct Cimom {
    schema: RwLock<Arc<Repository>>,
    builtin_classes: HashSet<(String, Name)>,
    builtin_qualifiers: HashSet<(String, Name)>,
    instances: RwLock<InstanceTable>,
    store: Arc<Store>,
    providers: Registry,
    pulls: PullContexts,
    sink_credentials: SinkCredentialTable,
    indication_queues: IndicationQueues,
    config: CimomConfig,
    /// Serializes writers of the schema and the store, and numbers created classes.
    writes: tokio::sync::Mutex<u64>,
}

impl Cimom {
    /// Serves `schema` (the classes the server is built with), and what clients stored:
    /// namespaces, qualifier declarations, classes and static instances.
    pub fn open(
        schema: Repository,
        store: Arc<Store>,
        providers: Registry,
        config: CimomConfig,
    ) -> Result<Self, StartError> {
        let mut repo = schema;
        let mut builtin_classes = HashSet::new();
        let mut builtin_qualifiers = HashSet::new();
        for ns in repo.namespaces() {
            let key = ns.name.as_str().to_lowercase();
            builtin_classes.extend(ns.classes().map(|c| (key.clone(), c.name.clone())));
            builtin_qualifiers.extend(ns.qualifiers().map(|q| (key.clone(), q.name.clone())));
        }
        for ns in store.namespaces()? {
            repo.create_namespace(&ns);
        }
        let limits = config.xml;
        let mut sequence = 0;
        for (ns, name, xml) in store.qualifiers()? {
            let decl = dom::parse_cim_xml(&xml, &limits)
                .map_err(|e| CimError::failed(e.to_string()))
                .and_then(|e| {
                    decode::Decoder {
                        limits: &limits,
                        namespace: None,
                    }
                    .qualifier_declaration(&e)
                });
            match decl {
                Ok(d) => {
                    let _ = repo.remove_qualifier(&ns, d.name.as_str());
                    if let Err(e) = repo.set_qualifier(&ns, d) {
                        warn!(namespace = ns, qualifier = name, error = %e, "stored qualifier declaration not loaded");
                    }
                }
                Err(e) => {
                    warn!(namespace = ns, qualifier = name, error = %e, "stored qualifier declaration is unreadable")
                }
            }
        }
        for (stored_sequence, (ns, name, xml)) in store.classes()? {
            // New classes number after the highest stored one, so that after deletions a
            // subclass still sorts after its superclass when the store is replayed.
            sequence = sequence.max(stored_sequence);
            let class = dom::parse_cim_xml(&xml, &limits)
                .map_err(|e| CimError::failed(e.to_string()))
                .and_then(|e| {
                    decode::Decoder {
                        limits: &limits,
                        namespace: repo.namespace(&ns).ok(),
                    }
                    .class(&e)
                });
            match class.and_then(|c| repo.add_class(&ns, c).map_err(CimError::from)) {
                Ok(_) => {}
                Err(e) => {
                    warn!(namespace = ns, class = name, error = %e, "stored class not loaded")
                }
            }
        }
        let mut table = InstanceTable::default();
        let mut loaded = 0usize;
        store.for_each_instance(|ns, key, xml| {
            let decoder = decode::Decoder {
                limits: &limits,
                namespace: None,
            };
            let instance = dom::parse_cim_xml(xml, &limits)
                .map_err(|e| CimError::failed(e.to_string()))
                .and_then(|e| decoder.instance(&e))
                .and_then(|i| repo.complete_instance(ns, i).map_err(CimError::from));
            match instance {
                Ok((path, instance)) => {
                    table.insert(ns, provider::with_path(path, instance));
                    loaded += 1;
                }
                Err(e) => {
                    warn!(namespace = ns, instance = key, error = %e, "stored instance not loaded")
                }
            }
        })?;
        tracing::info!(
            namespaces = repo.namespaces().count(),
            classes = repo.namespaces().map(|n| n.classes().len()).sum::<usize>(),
            instances = loaded,
            "repository loaded"
        );
        Ok(Cimom {
            schema: RwLock::new(Arc::new(repo)),
            builtin_classes,
            builtin_qualifiers,
            instances: RwLock::new(table),
            sink_credentials: SinkCredentialTable::load(store.clone())?,
            indication_queues: IndicationQueues::load(
                store.clone(),
                &interop::indication_service_name(&ServerIdentity::current().hostname),
                config.indication_queue_limit,
            )?,
            store,
            providers,
            pulls: PullContexts::new(config.pull.clone()),
            config,
            writes: tokio::sync::Mutex::new(sequence),
        })
    }

    /// The indications waiting for each listener destination.
    pub fn indication_queues(&self) -> &IndicationQueues {
        &self.indication_queues
    }

    /// The credentials of listeners and WS-Management event sinks, by destination path.
    pub fn sink_credentials(&self) -> &SinkCredentialTable {
        &self.sink_credentials
    }

    /// The static instances of exactly `class` in `namespace`: what clients created there,
    /// such as indication subscriptions.
    pub fn static_instances(&self, namespace: &str, class: &str) -> Vec<Arc<InstanceWithPath>> {
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .of_class(namespace, class)
    }

    /// The static instance at the local `path` in `namespace`.
    pub fn static_instance(
        &self,
        namespace: &str,
        path: &cim_schema::ObjectPath,
    ) -> Option<Arc<InstanceWithPath>> {
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace, path)
    }

    /// The current schema snapshot.
    pub fn schema(&self) -> Arc<Repository> {
        self.schema
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn replace_schema(&self, repo: Repository) {
        *self.schema.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(repo);
    }

    /// The XML limits requests and stored objects are parsed under.
    pub fn xml_limits(&self) -> XmlLimits {
        self.config.xml
    }

    /// The open pull enumerations (for the expiry sweeper).
    pub fn pulls(&self) -> &PullContexts {
        &self.pulls
    }

    /// The canonical name of namespace `ns` (aliases resolved), or INVALID_NAMESPACE.
    pub fn resolve_namespace(&self, ns: &str) -> CimResult<String> {
        let ns = ns.trim_matches('/');
        let ns = if INTEROP_ALIASES.iter().any(|a| eq_ignore_case(a, ns)) {
            crate::INTEROP_NAMESPACE
        } else {
            ns
        };
        self.schema()
            .namespace(ns)
            .map(|n| n.name.to_string())
            .map_err(|_| CimError::invalid_namespace(ns))
    }

    fn provider_context(&self, ctx: &RequestContext, ns: &str) -> ProviderContext {
        ProviderContext {
            namespace: ns.to_string(),
            schema: self.schema(),
            user: ctx.user.clone(),
            administrator: ctx.administrator,
        }
    }

    fn store_failed(e: StoreError) -> CimError {
        CimError::failed(format!("the repository database failed: {e}"))
    }

    /// Carries out `op` for `user` in namespace `ns`. This is where a client's rights are
    /// checked, for every binding: no access to the namespace, or a write with read-only
    /// access, is refused (`what` names the operation in the refusal).
    pub async fn serve(
        self: &Arc<Self>,
        user: &User,
        ns: &str,
        op: Operation,
        what: &str,
    ) -> CimResult<Outcome> {
        let ns = self.resolve_namespace(ns)?;
        match user.access(&ns) {
            None => {
                return Err(CimError::new(
                    StatusCode::AccessDenied,
                    format!("user {} has no access to namespace {ns}", user.name),
                ))
            }
            Some(Access::ReadOnly) if op.is_write() => {
                return Err(CimError::new(
                    StatusCode::AccessDenied,
                    format!(
                        "user {} may only read in namespace {ns}; {what} changes state",
                        user.name
                    ),
                ))
            }
            Some(_) => {}
        }
        self.execute_resolved(&RequestContext::of(user), &ns, op)
            .await
    }

    /// Executes `op` in namespace `ns` with no check of rights: for the server's own work
    /// (delivering and expiring indications); clients' requests come through
    /// [`Cimom::serve`].
    pub(crate) async fn execute(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        op: Operation,
    ) -> CimResult<Outcome> {
        let ns = self.resolve_namespace(ns)?;
        self.execute_resolved(ctx, &ns, op).await
    }

    /// [`Cimom::execute`] in `ns`, already the canonical name of a namespace (as
    /// [`Cimom::resolve_namespace`] returns it).
    async fn execute_resolved(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        op: Operation,
    ) -> CimResult<Outcome> {
        use Operation as O;
        match op {
            O::GetClass {
                class,
                local_only,
                include_qualifiers,
                include_class_origin,
                property_list,
            } => self.get_class(
                ns,
                &class,
                local_only,
                include_qualifiers,
                include_class_origin,
                property_list,
            ),
            O::EnumerateClasses {
                class,
                deep_inheritance,
                local_only,
                include_qualifiers,
                include_class_origin,
            } => self.enumerate_classes(
                ns,
                class.as_ref(),
                deep_inheritance,
                encode::ClassFilter {
                    local_only,
                    include_qualifiers,
                    include_class_origin,
                    properties: None,
                },
            ),
            O::EnumerateClassNames {
                class,
                deep_inheritance,
            } => self.enumerate_class_names(ns, class.as_ref(), deep_inheritance),
            O::CreateClass { class } => self.create_class(ns, class).await,
            O::ModifyClass { class } => self.modify_class(ns, class).await,
            O::DeleteClass { class } => self.delete_class(ns, &class).await,
            O::GetQualifier { name } => self.get_qualifier(ns, &name),
            O::SetQualifier { declaration } => self.set_qualifier(ns, declaration).await,
            O::DeleteQualifier { name } => self.delete_qualifier(ns, &name).await,
            O::EnumerateQualifiers => self.enumerate_qualifiers(ns),
            O::GetInstance { path, options } => {
                self.get_instance_op(ctx, ns, &path, &options).await
            }
            O::EnumerateInstances { class, options } => {
                self.enumerate_instances_op(ctx, ns, &class, options, false)
            }
            O::EnumerateInstanceNames { class } => {
                self.enumerate_instances_op(ctx, ns, &class, Default::default(), true)
            }
            O::CreateInstance { instance } => self.create_instance(ctx, ns, instance).await,
            O::ModifyInstance {
                path,
                instance,
                property_list,
            } => {
                self.modify_instance(ctx, ns, &path, instance, property_list)
                    .await
            }
            O::DeleteInstance { path } => self.delete_instance(ctx, ns, &path).await,
            O::GetProperty { path, property } => self.get_property(ctx, ns, &path, &property).await,
            O::SetProperty {
                path,
                property,
                value,
            } => self.set_property(ctx, ns, &path, &property, value).await,
            O::Associators {
                object,
                filter,
                options,
                include_qualifiers,
            } => self.traverse_op(
                ctx,
                ns,
                Traversal {
                    options,
                    include_qualifiers,
                    ..Traversal::new(object, filter, true)
                },
            ),
            O::AssociatorNames { object, filter } => self.traverse_op(
                ctx,
                ns,
                Traversal {
                    names_only: true,
                    ..Traversal::new(object, filter, true)
                },
            ),
            O::References {
                object,
                filter,
                options,
                include_qualifiers,
            } => self.traverse_op(
                ctx,
                ns,
                Traversal {
                    options,
                    include_qualifiers,
                    ..Traversal::new(object, filter, false)
                },
            ),
            O::ReferenceNames { object, filter } => self.traverse_op(
                ctx,
                ns,
                Traversal {
                    names_only: true,
                    ..Traversal::new(object, filter, false)
                },
            ),
            O::ExecQuery { language, query } => self.exec_query(ctx, ns, &language, &query),
            O::OpenEnumerateInstances {
                class,
                options,
                open,
            } => {
                self.open_enumerate(ctx, ns, &class, options, open, false)
                    .await
            }
            O::OpenEnumerateInstancePaths { class, open } => {
                self.open_enumerate(ctx, ns, &class, Default::default(), open, true)
                    .await
            }
            O::OpenReferenceInstances {
                object,
                filter,
                options,
                open,
            } => {
                let t = Traversal {
                    options,
                    ..Traversal::new(object, filter, false)
                };
                self.open_traversal(ctx, ns, t, open).await
            }
            O::OpenReferenceInstancePaths {
                object,
                filter,
                open,
            } => {
                let t = Traversal {
                    names_only: true,
                    ..Traversal::new(object, filter, false)
                };
                self.open_traversal(ctx, ns, t, open).await
            }
            O::OpenAssociatorInstances {
                object,
                filter,
                options,
                open,
            } => {
                let t = Traversal {
                    options,
                    ..Traversal::new(object, filter, true)
                };
                self.open_traversal(ctx, ns, t, open).await
            }
            O::OpenAssociatorInstancePaths {
                object,
                filter,
                open,
            } => {
                let t = Traversal {
                    names_only: true,
                    ..Traversal::new(object, filter, true)
                };
                self.open_traversal(ctx, ns, t, open).await
            }
            O::OpenQueryInstances {
                language,
                query,
                return_query_result_class,
                open,
            } => {
                self.open_query(ctx, ns, &language, &query, return_query_result_class, open)
                    .await
            }
            O::PullInstancesWithPath {
                context,
                max_object_count,
            } => {
                self.pull(
                    ctx,
                    ns,
                    &context,
                    max_object_count,
                    result::ResultForm::InstanceWithPath,
                )
                .await
            }
            O::PullInstancePaths {
                context,
                max_object_count,
            } => {
                self.pull(
                    ctx,
                    ns,
                    &context,
                    max_object_count,
                    result::ResultForm::InstancePath,
                )
                .await
            }
            O::PullInstances {
                context,
                max_object_count,
            } => {
                self.pull(
                    ctx,
                    ns,
                    &context,
                    max_object_count,
                    result::ResultForm::Instance,
                )
                .await
            }
            O::EnumerationCount { context } => self
                .pulls
                .count(&context, &ctx.user, ns)
                .map(Outcome::Count),
            O::CloseEnumeration { context } => {
                self.pulls.close(&context, &ctx.user, ns)?;
                Ok(Outcome::Empty)
            }
            O::InvokeMethod {
                target,
                method,
                parameters,
            } => {
                self.invoke_method(ctx, ns, target, &method, parameters)
                    .await
            }
        }
    }
}
