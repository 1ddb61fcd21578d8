//! The provider interface: what serves instances, associations and methods for classes
//! whose instances are not static.
//!
//! Providers are registered per namespace and class. They are async and stream their
//! results into an [`InstanceSink`]; the dispatcher does the rest centrally (paths,
//! PropertyList/LocalOnly/DeepInheritance filtering, queries, polymorphism).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cim_schema::{Class, Instance, Method, Name, NameMap, ObjectPath, Repository, Value};

use super::result::{InstanceWithPath, Item};
use crate::error::{CimError, CimResult, StatusCode};

/// What a provider knows about the request it serves.
#[derive(Clone)]
pub struct ProviderContext {
    /// The namespace of the request.
    pub namespace: String,
    /// The schema as of the start of the request.
    pub schema: Arc<Repository>,
    /// The authenticated user.
    pub user: Arc<str>,
    /// Whether the user is an administrator (read-write in every namespace), who may give
    /// VMs any file of the host.
    pub administrator: bool,
}

/// Where a provider sends the instances it produces.
pub struct InstanceSink {
    kind: SinkKind,
}

type Transform = dyn Fn(Instance) -> CimResult<Option<Item>> + Send + Sync;

enum SinkKind {
    /// Stream results to the client, shaping each instance on the way.
    Items {
        tx: tokio::sync::mpsc::Sender<CimResult<Item>>,
        transform: Box<Transform>,
    },
    /// Collect for the dispatcher's own use (GetInstance, association traversal).
    Collect(Mutex<Vec<Instance>>),
}

impl InstanceSink {
    /// A sink that turns instances into result items with `transform` (which may drop an
    /// instance by returning `Ok(None)`) and sends them on `tx`.
    pub(crate) fn streaming(
        tx: tokio::sync::mpsc::Sender<CimResult<Item>>,
        transform: Box<Transform>,
    ) -> Self {
        InstanceSink {
            kind: SinkKind::Items { tx, transform },
        }
    }

    /// A sink that collects instances.
    pub fn collecting() -> Self {
        InstanceSink {
            kind: SinkKind::Collect(Mutex::new(Vec::new())),
        }
    }

    /// The collected instances (empty for a streaming sink).
    pub fn into_collected(self) -> Vec<Instance> {
        match self.kind {
            SinkKind::Collect(v) => v.into_inner().unwrap_or_else(|p| p.into_inner()),
            SinkKind::Items { .. } => Vec::new(),
        }
    }

    /// Sends one instance. Returns `false` when the receiver is gone (the client closed the
    /// enumeration or disconnected): the provider should stop producing.
    pub async fn send(&self, instance: Instance) -> bool {
        match &self.kind {
            SinkKind::Collect(v) => {
                v.lock().unwrap_or_else(|p| p.into_inner()).push(instance);
                true
            }
            SinkKind::Items { tx, transform } => match transform(instance) {
                Ok(Some(item)) => tx.send(Ok(item)).await.is_ok(),
                Ok(None) => !tx.is_closed(),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    false
                }
            },
        }
    }
}

/// The result of an extrinsic method.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodResult {
    /// The return value.
    pub return_value: Value,
    /// Output parameters.
    pub out: Vec<(Name, Value)>,
}

/// Serves the instances of one or more classes.
#[async_trait]
pub trait InstanceProvider: Send + Sync + 'static {
    /// Sends every instance of exactly `class` (not its subclasses) to `sink`.
    async fn enumerate_instances(
        &self,
        ctx: &ProviderContext,
        class: &Arc<Class>,
        sink: &InstanceSink,
    ) -> CimResult<()>;

    /// The instance at `path`. The default enumerates and picks.
    async fn get_instance(
        &self,
        ctx: &ProviderContext,
        class: &Arc<Class>,
        path: &ObjectPath,
    ) -> CimResult<Instance> {
        let sink = InstanceSink::collecting();
        self.enumerate_instances(ctx, class, &sink).await?;
        let wanted = path.local();
        sink.into_collected()
            .into_iter()
            .find(|i| i.path(class, None) == wanted)
            .ok_or_else(|| CimError::not_found(format!("instance {path} does not exist")))
    }

    /// Creates an instance; returns its path.
    async fn create_instance(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        _instance: Instance,
    ) -> CimResult<ObjectPath> {
        Err(CimError::not_supported(format!(
            "instances of {} cannot be created",
            class.name
        )))
    }

    /// Changes the properties of `instance` that `property_list` names (all when `None`).
    async fn modify_instance(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        _path: &ObjectPath,
        _instance: Instance,
        _property_list: Option<&[Name]>,
    ) -> CimResult<()> {
        Err(CimError::not_supported(format!(
            "instances of {} cannot be modified",
            class.name
        )))
    }

    /// Deletes the instance at `path`.
    async fn delete_instance(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        _path: &ObjectPath,
    ) -> CimResult<()> {
        Err(CimError::not_supported(format!(
            "instances of {} cannot be deleted",
            class.name
        )))
    }
}

/// Finds association instances that refer to an object, faster than enumerating them all.
/// Without one, the dispatcher enumerates the association class and filters.
#[async_trait]
pub trait AssociationProvider: Send + Sync + 'static {
    /// Sends the instances of exactly the association `class` whose reference `role` (any
    /// reference, when `None`) points at `target`.
    async fn references(
        &self,
        ctx: &ProviderContext,
        class: &Arc<Class>,
        target: &ObjectPath,
        role: Option<&Name>,
        sink: &InstanceSink,
    ) -> CimResult<()>;
}

/// Runs extrinsic methods of a class.
#[async_trait]
pub trait MethodProvider: Send + Sync + 'static {
    /// Invokes `method` on `target` (a class path for static methods) with input
    /// arguments already converted to the declared parameter types.
    async fn invoke_method(
        &self,
        ctx: &ProviderContext,
        class: &Arc<Class>,
        target: &ObjectPath,
        method: &Method,
        arguments: Vec<(Name, Option<Value>)>,
    ) -> CimResult<MethodResult>;
}

/// Providers of one kind by namespace, then by class: looked up by name without building a
/// key.
struct ByClass<P>(NameMap<NameMap<P>>);

impl<P> Default for ByClass<P> {
    fn default() -> Self {
        ByClass(NameMap::default())
    }
}

impl<P: Clone> ByClass<P> {
    fn insert(&mut self, namespace: &str, class: &str, provider: P) {
        self.0
            .get_or_insert_with(&Name::new(namespace.trim_matches('/')), NameMap::default)
            .insert(Name::new(class), provider);
    }

    fn get(&self, namespace: &str, class: &str) -> Option<P> {
        self.0.get(namespace.trim_matches('/'))?.get(class).cloned()
    }
}

/// Providers by namespace and class.
#[derive(Default)]
pub struct Registry {
    instance: ByClass<Arc<dyn InstanceProvider>>,
    association: ByClass<Arc<dyn AssociationProvider>>,
    method: ByClass<Arc<dyn MethodProvider>>,
}

impl Registry {
    /// Registers `provider` for the instances of `class` in `namespace`.
    pub fn register_instances(
        &mut self,
        namespace: &str,
        class: &str,
        p: Arc<dyn InstanceProvider>,
    ) {
        self.instance.insert(namespace, class, p);
    }

    /// Registers an association provider for association `class` in `namespace`.
    pub fn register_associations(
        &mut self,
        namespace: &str,
        class: &str,
        p: Arc<dyn AssociationProvider>,
    ) {
        self.association.insert(namespace, class, p);
    }

    /// Registers a method provider for `class` in `namespace`.
    pub fn register_methods(&mut self, namespace: &str, class: &str, p: Arc<dyn MethodProvider>) {
        self.method.insert(namespace, class, p);
    }

    /// The instance provider of `class`, if any.
    pub fn instances(&self, namespace: &str, class: &str) -> Option<Arc<dyn InstanceProvider>> {
        self.instance.get(namespace, class)
    }

    /// The association provider of `class`, if any.
    pub fn associations(
        &self,
        namespace: &str,
        class: &str,
    ) -> Option<Arc<dyn AssociationProvider>> {
        self.association.get(namespace, class)
    }

    /// The method provider of `class`, if any.
    pub fn methods(&self, namespace: &str, class: &str) -> Option<Arc<dyn MethodProvider>> {
        self.method.get(namespace, class)
    }
}

/// The error for a method no provider serves.
pub(crate) fn method_not_available(class: &str, method: &str) -> CimError {
    CimError::new(
        StatusCode::MethodNotAvailable,
        format!("method {class}.{method} is declared but no provider implements it"),
    )
}

/// An instance with its path, shared between the store and results.
pub(crate) fn with_path(path: ObjectPath, instance: Instance) -> Arc<InstanceWithPath> {
    Arc::new(InstanceWithPath { path, instance })
}

/// An instance of `class` with its defaults and the given values for the properties the
/// class has (a value for a property it lacks is a provider bug, caught by debug builds).
pub fn build_instance(class: &Class, values: Vec<(&str, Value)>) -> Instance {
    let mut inst = Instance::from_class_defaults(class);
    for (name, value) in values {
        debug_assert!(
            class.property(name).is_some(),
            "{} has no {name}",
            class.name
        );
        if class.property(name).is_some() {
            inst.set(name, value);
        }
    }
    inst
}

/// The key bindings of `path` as (property, value) pairs, to start an instance's values.
pub fn keys_of(path: &ObjectPath) -> Vec<(&str, Value)> {
    path.keys
        .iter()
        .map(|k| (k.name.as_str(), k.value.clone()))
        .collect()
}
