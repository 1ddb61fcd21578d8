//! Instance operations: get, enumerate (streamed), create, modify, delete, properties.

use std::sync::Arc;

use cim_schema::{
    check_value, eq_ignore_case, Class, Instance, Name, ObjectPath, Repository, Value,
};
use tokio::sync::mpsc;

use super::convert::{self, normalize_path};
use super::operation::{InstanceOptions, UntypedValue};
use super::provider::{self, InstanceSink, ProviderContext};
use super::query::Query;
use super::result::{InstanceWithPath, Item, ItemStream, Outcome, ResultForm};
use super::server_keys;
use super::shaper::Shaper;
use super::sink_credentials::SinkCredentials;
use super::{Cimom, RequestContext};
use crate::cimxml::encode::{self, InstanceFilter};
use crate::error::{CimError, CimResult, StatusCode};
use crate::INTEROP_NAMESPACE;

impl Cimom {
    pub(super) fn class_of(schema: &Repository, ns: &str, class: &str) -> CimResult<Arc<Class>> {
        schema
            .namespace(ns)?
            .class(class)
            .cloned()
            .ok_or_else(|| CimError::invalid_class(class, ns))
    }

    /// The instance at `path` in `ns`, from its provider or the store.
    pub(super) async fn fetch_instance(
        &self,
        pctx: &ProviderContext,
        ns: &str,
        path: &ObjectPath,
    ) -> CimResult<(Arc<Class>, Arc<InstanceWithPath>)> {
        let class = Self::class_of(&pctx.schema, ns, path.class_name.as_str())?;
        let path = normalize_path(&class, path)?;
        if let Some(p) = self.providers.instances(ns, class.name.as_str()) {
            let inst = p.get_instance(pctx, &class, &path).await?;
            return Ok((class, provider::with_path(path, inst)));
        }
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns, &path)
            .map(|o| (class, o))
            .ok_or_else(|| {
                CimError::not_found(format!("instance {path} does not exist in namespace {ns}"))
            })
    }

    pub(super) async fn get_instance_op(
        &self,
        ctx: &RequestContext,
        ns: &str,
        path: &ObjectPath,
        options: &InstanceOptions,
    ) -> CimResult<Outcome> {
        let pctx = self.provider_context(ctx, ns);
        let (class, object) = self.fetch_instance(&pctx, ns, path).await?;
        let shaper = Shaper::new(
            pctx.schema.clone(),
            ns,
            &class,
            &class,
            options,
            false,
            None,
        );
        shaper
            .item(object)
            .map(Outcome::Instance)
            .ok_or_else(|| CimError::failed("instance filtered out"))
    }

    /// Starts a task that streams the instances (or paths) of `class` and its subclasses.
    pub(super) fn spawn_enumeration(
        self: &Arc<Self>,
        pctx: ProviderContext,
        class: Arc<Class>,
        options: InstanceOptions,
        names_only: bool,
        query: Option<Arc<Query>>,
    ) -> ItemStream {
        let (tx, rx) = mpsc::channel(self.config.stream_buffer);
        let this = self.clone();
        tokio::spawn(async move {
            let result = this
                .produce_instances(&pctx, &class, &options, names_only, query, &tx)
                .await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    async fn produce_instances(
        &self,
        pctx: &ProviderContext,
        requested: &Arc<Class>,
        options: &InstanceOptions,
        names_only: bool,
        query: Option<Arc<Query>>,
        tx: &mpsc::Sender<CimResult<Item>>,
    ) -> CimResult<()> {
        let ns = pctx.namespace.as_str();
        let schema = pctx.schema.clone();
        // Enumerations are always polymorphic; DeepInheritance only selects properties.
        let classes: Vec<Arc<Class>> = schema
            .namespace(ns)?
            .descendants(requested.name.as_str())
            .into_iter()
            .cloned()
            .collect();
        for class in classes {
            let shaper = Shaper::new(
                schema.clone(),
                ns,
                requested,
                &class,
                options,
                names_only,
                query.clone(),
            );
            if let Some(p) = self.providers.instances(ns, class.name.as_str()) {
                let sink_class = class.clone();
                let sink = InstanceSink::streaming(
                    tx.clone(),
                    Box::new(move |inst| shaper.provider_item(&sink_class, inst)),
                );
                p.enumerate_instances(pctx, &class, &sink).await?;
                if tx.is_closed() {
                    return Ok(());
                }
                continue;
            }
            let objects = self
                .instances
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .of_class(ns, class.name.as_str());
            for object in objects {
                if let Some(item) = shaper.item(object) {
                    if tx.send(Ok(item)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn enumerate_instances_op(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        class: &Name,
        options: InstanceOptions,
        names_only: bool,
    ) -> CimResult<Outcome> {
        let pctx = self.provider_context(ctx, ns);
        let class = Self::class_of(&pctx.schema, ns, class.as_str())?;
        let stream = self.spawn_enumeration(pctx, class, options, names_only, None);
        let form = if names_only {
            ResultForm::InstanceName
        } else {
            ResultForm::NamedInstance
        };
        Ok(Outcome::Stream(stream, form))
    }

    /// Converts the property values of a client's instance to the declared types.
    fn coerce_instance(&self, class: &Class, mut instance: Instance) -> CimResult<Instance> {
        for p in instance.properties.values_mut() {
            let decl = class.property(p.name.as_str()).ok_or_else(|| {
                CimError::new(
                    StatusCode::NoSuchProperty,
                    format!("class {} has no property {}", class.name, p.name),
                )
            })?;
            p.name = decl.name.clone();
            p.ty = decl.ty;
            p.is_array = decl.array.is_some();
            p.reference_class = decl.reference_class.clone();
            if let Some(v) = p.value.take() {
                let element = format_args!("{}.{}", class.name, decl.name);
                p.value = Some(convert::coerce(v, decl.ty, decl.array.is_some(), &element)?);
            }
        }
        Ok(instance)
    }

    fn instance_record(instance: &Instance) -> Vec<u8> {
        let mut xml = String::new();
        encode::instance(&mut xml, instance, &InstanceFilter::all(), None);
        xml.into_bytes()
    }

    pub(super) async fn create_instance(
        &self,
        ctx: &RequestContext,
        ns: &str,
        instance: Instance,
    ) -> CimResult<Outcome> {
        let pctx = self.provider_context(ctx, ns);
        let class = Self::class_of(&pctx.schema, ns, instance.class_name.as_str())?;
        let mut instance = self.coerce_instance(&class, instance)?;
        if self.is_namespace_class(&pctx, ns, &class) {
            return self.create_namespace(&pctx, &instance).await;
        }
        if let Some(p) = self.providers.instances(ns, class.name.as_str()) {
            return Ok(Outcome::InstanceName(
                p.create_instance(&pctx, &class, instance).await?,
            ));
        }
        if eq_ignore_case(ns, INTEROP_NAMESPACE) {
            server_keys::fill(&pctx.schema, ns, &mut instance);
            self.check_source_namespaces(&pctx, ns, &instance)?;
        }
        let _guard = self.writes.lock().await;
        let (path, mut instance) = pctx.schema.complete_instance(ns, instance)?;
        if self
            .instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns, &path)
            .is_some()
        {
            return Err(CimError::new(
                StatusCode::AlreadyExists,
                format!("instance {path} already exists in namespace {ns}"),
            ));
        }
        // Stored before the destination, so that nothing is delivered to it without them.
        let has_credentials = self.store_sink_credentials(&pctx, ns, &path, &mut instance)?;
        if let Err(e) =
            self.store
                .put_instance(ns, &path.to_uri(), &Self::instance_record(&instance))
        {
            if has_credentials {
                let _ = self.sink_credentials.remove(&path);
            }
            return Err(Self::store_failed(e));
        }
        self.instances
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ns, provider::with_path(path.clone(), instance));
        Ok(Outcome::InstanceName(path))
    }

    /// Refuses a subscription to a filter whose source namespaces (SourceNamespaces, or
    /// the older SourceNamespace) include one the server does not have: nothing could ever
    /// be raised there. The filter itself is accepted, as clients create filters for the
    /// namespaces of any server (the captured WS-Management clients name root/cimv2).
    fn check_source_namespaces(
        &self,
        pctx: &ProviderContext,
        ns: &str,
        instance: &Instance,
    ) -> CimResult<()> {
        let Ok(interop) = pctx.schema.namespace(ns) else {
            return Ok(());
        };
        if !interop.is_subclass_of(instance.class_name.as_str(), "CIM_IndicationSubscription") {
            return Ok(());
        }
        let filter = match instance.get("Filter") {
            Some(Value::Reference(path)) => self
                .instances
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(ns, &path.local())
                .map(|f| f.instance.clone()),
            _ => None,
        };
        let Some(filter) = filter else {
            return Ok(());
        };
        let mut named: Vec<&str> = Vec::new();
        if let Some(Value::Array(items)) = filter.get("SourceNamespaces") {
            named.extend(items.iter().flatten().filter_map(|v| match v {
                Value::String(s) => Some(&**s),
                _ => None,
            }));
        }
        if let Some(Value::String(s)) = filter.get("SourceNamespace") {
            named.push(s);
        }
        match named
            .into_iter()
            .find(|n| pctx.schema.namespace(n.trim_matches('/')).is_err())
        {
            Some(unknown) => Err(CimError::invalid_parameter(format!(
                "the subscription's filter names source namespace {unknown}, which does not exist"
            ))),
            None => Ok(()),
        }
    }

    /// Whether `class` is a listener destination in the interop namespace.
    fn is_listener_destination(pctx: &ProviderContext, ns: &str, class: &str) -> bool {
        eq_ignore_case(ns, INTEROP_NAMESPACE)
            && pctx
                .schema
                .namespace(ns)
                .is_ok_and(|n| n.is_subclass_of(class, "CIM_ListenerDestination"))
    }

    /// Moves the write-only password of a listener destination at `path` (with its user
    /// name) from `instance` to the sink credentials; whether there was one.
    fn store_sink_credentials(
        &self,
        pctx: &ProviderContext,
        ns: &str,
        path: &ObjectPath,
        instance: &mut Instance,
    ) -> CimResult<bool> {
        if !Self::is_listener_destination(pctx, ns, instance.class_name.as_str()) {
            return Ok(false);
        }
        let Some(credentials) = SinkCredentials::take_from(instance) else {
            return Ok(false);
        };
        self.sink_credentials
            .set(path, credentials)
            .map_err(Self::store_failed)?;
        Ok(true)
    }

    pub(super) async fn modify_instance(
        &self,
        ctx: &RequestContext,
        ns: &str,
        path: &ObjectPath,
        modified: Instance,
        property_list: Option<Vec<Name>>,
    ) -> CimResult<Outcome> {
        let pctx = self.provider_context(ctx, ns);
        let class = Self::class_of(&pctx.schema, ns, path.class_name.as_str())?;
        let path = normalize_path(&class, path)?;
        if !modified.class_name.as_str().is_empty() && modified.class_name != class.name {
            return Err(CimError::invalid_parameter(format!(
                "the modified instance is of class {}, its path of class {}",
                modified.class_name, class.name
            )));
        }
        let modified = self.coerce_instance(&class, modified)?;
        if let Some(p) = self.providers.instances(ns, class.name.as_str()) {
            p.modify_instance(&pctx, &class, &path, modified, property_list.as_deref())
                .await?;
            return Ok(Outcome::Empty);
        }
        let _guard = self.writes.lock().await;
        let existing = self
            .instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns, &path)
            .ok_or_else(|| {
                CimError::not_found(format!("instance {path} does not exist in namespace {ns}"))
            })?;
        let mut updated = existing.instance.clone();
        let listed = |name: &Name| property_list.as_ref().is_none_or(|l| l.contains(name));
        for decl in class.properties.values() {
            if !listed(&decl.name) {
                continue;
            }
            let given = modified.properties.get(decl.name.as_str());
            if given.is_none() && property_list.is_none() {
                continue;
            }
            // Listed but not given: DSP0200 sets the property to NULL.
            let value = given.and_then(|p| p.value.clone());
            if decl.is_key() {
                if value.as_ref() != existing.instance.get(decl.name.as_str()) {
                    return Err(CimError::invalid_parameter(format!(
                        "key property {}.{} cannot be modified",
                        class.name, decl.name
                    )));
                }
                continue;
            }
            if let Some(v) = &value {
                check_value(
                    &format!("{}.{}", class.name, decl.name),
                    decl.ty,
                    decl.array.is_some(),
                    v,
                )?;
            }
            if let Some(p) = updated.properties.get_mut(decl.name.as_str()) {
                p.value = value;
            }
        }
        if let Some(list) = &property_list {
            if let Some(unknown) = list.iter().find(|n| class.property(n.as_str()).is_none()) {
                return Err(CimError::new(
                    StatusCode::NoSuchProperty,
                    format!("class {} has no property {unknown}", class.name),
                ));
            }
        }
        self.store_sink_credentials(&pctx, ns, &path, &mut updated)?;
        self.store
            .put_instance(ns, &path.to_uri(), &Self::instance_record(&updated))
            .map_err(Self::store_failed)?;
        self.instances
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ns, provider::with_path(path, updated));
        Ok(Outcome::Empty)
    }

    pub(super) async fn delete_instance(
        &self,
        ctx: &RequestContext,
        ns: &str,
        path: &ObjectPath,
    ) -> CimResult<Outcome> {
        let pctx = self.provider_context(ctx, ns);
        let class = Self::class_of(&pctx.schema, ns, path.class_name.as_str())?;
        let path = normalize_path(&class, path)?;
        if self.is_namespace_class(&pctx, ns, &class) {
            return self.delete_namespace(&class, &path).await;
        }
        if let Some(p) = self.providers.instances(ns, class.name.as_str()) {
            p.delete_instance(&pctx, &class, &path).await?;
            return Ok(Outcome::Empty);
        }
        let _guard = self.writes.lock().await;
        if self
            .instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns, &path)
            .is_none()
        {
            return Err(CimError::not_found(format!(
                "instance {path} does not exist in namespace {ns}"
            )));
        }
        self.store
            .delete_instance(ns, &path.to_uri())
            .map_err(Self::store_failed)?;
        self.instances
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ns, &path);
        if Self::is_listener_destination(&pctx, ns, class.name.as_str()) {
            self.sink_credentials
                .remove(&path)
                .map_err(Self::store_failed)?;
            self.indication_queues
                .forget(&path)
                .map_err(Self::store_failed)?;
        }
        Ok(Outcome::Empty)
    }

    pub(super) async fn get_property(
        &self,
        ctx: &RequestContext,
        ns: &str,
        path: &ObjectPath,
        property: &Name,
    ) -> CimResult<Outcome> {
        let pctx = self.provider_context(ctx, ns);
        let (class, object) = self.fetch_instance(&pctx, ns, path).await?;
        if class.property(property.as_str()).is_none() {
            return Err(CimError::new(
                StatusCode::NoSuchProperty,
                format!("class {} has no property {property}", class.name),
            ));
        }
        Ok(Outcome::Value(
            object.instance.get(property.as_str()).cloned(),
        ))
    }

    pub(super) async fn set_property(
        &self,
        ctx: &RequestContext,
        ns: &str,
        path: &ObjectPath,
        property: &Name,
        value: Option<UntypedValue>,
    ) -> CimResult<Outcome> {
        let schema = self.schema();
        let class = Self::class_of(&schema, ns, path.class_name.as_str())?;
        let decl = class.property(property.as_str()).ok_or_else(|| {
            CimError::new(
                StatusCode::NoSuchProperty,
                format!("class {} has no property {property}", class.name),
            )
        })?;
        let value = value
            .map(|v| {
                convert::typed(
                    v,
                    decl.ty,
                    decl.array.is_some(),
                    &format!("{}.{}", class.name, decl.name),
                )
            })
            .transpose()?;
        let mut modified = Instance::new(class.name.clone());
        modified.set(decl.name.clone(), Value::Boolean(false));
        if let Some(p) = modified.properties.get_mut(decl.name.as_str()) {
            p.ty = decl.ty;
            p.is_array = decl.array.is_some();
            p.value = value;
        }
        self.modify_instance(ctx, ns, path, modified, Some(vec![decl.name.clone()]))
            .await
    }
}
