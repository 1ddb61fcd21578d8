//! Instance operations: get, enumerate (streamed), create, modify, delete, properties,
//! queries, pull enumerations and extrinsic methods.

use std::collections::HashSet;
use std::sync::Arc;

use cim_schema::{check_value, Class, Instance, Name, ObjectPath, Repository, Value};
use tokio::sync::mpsc;

use super::convert::{self, normalize_path};
use super::operation::{InstanceOptions, OpenOptions, UntypedValue};
use super::provider::{self, InstanceSink, ProviderContext};
use super::query::{Language, Query};
use super::result::{
    ClassItem, InstanceWithPath, Item, ItemStream, Outcome, PullResult, ResultForm,
};
use super::{Cimom, RequestContext};
use crate::cimxml::decode;
use crate::cimxml::encode::{self, ClassFilter, InstanceFilter};
use crate::error::{CimError, CimResult, StatusCode};

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
fn instance_filter(requested: &Class, actual: &Class, options: &InstanceOptions) -> InstanceFilter {
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
                let element = format!("{}.{}", class.name, decl.name);
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
        let instance = self.coerce_instance(&class, instance)?;
        if self.is_namespace_class(&pctx, ns, &class) {
            return self.create_namespace(&pctx, &instance).await;
        }
        if let Some(p) = self.providers.instances(ns, class.name.as_str()) {
            return Ok(Outcome::InstanceName(
                p.create_instance(&pctx, &class, instance).await?,
            ));
        }
        let _guard = self.writes.lock().await;
        let (path, instance) = pctx.schema.complete_instance(ns, instance)?;
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
        self.store
            .put_instance(ns, &path.to_uri(), &Self::instance_record(&instance))
            .map_err(Self::store_failed)?;
        self.instances
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ns, provider::with_path(path.clone(), instance));
        Ok(Outcome::InstanceName(path))
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

    /// Parses a query and checks it against the schema: the FROM class exists and has
    /// every property named.
    fn prepare_query(
        &self,
        ns: &str,
        language: Language,
        text: &str,
        class: Option<&Class>,
    ) -> CimResult<(Arc<Query>, Option<Arc<Class>>)> {
        let query = Query::parse(language, text)?;
        let schema = self.schema();
        let from = match &query.from {
            Some(name) => Some(Self::class_of(&schema, ns, name.as_str()).map_err(|_| {
                CimError::new(
                    StatusCode::InvalidQuery,
                    format!("invalid query: class {name} does not exist in namespace {ns}"),
                )
            })?),
            None => None,
        };
        if let Some(c) = from.as_deref().or(class) {
            if let Some(p) = query
                .properties()
                .into_iter()
                .find(|p| c.property(p.as_str()).is_none())
            {
                return Err(CimError::new(
                    StatusCode::InvalidQuery,
                    format!("invalid query: class {} has no property {p}", c.name),
                ));
            }
        }
        Ok((Arc::new(query), from))
    }

    pub(super) fn exec_query(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        language: &str,
        text: &str,
    ) -> CimResult<Outcome> {
        if Language::parse(language)? != Language::Wql {
            return Err(CimError::new(
                StatusCode::QueryLanguageNotSupported,
                format!("ExecQuery supports WQL, not {language}"),
            ));
        }
        let (query, from) = self.prepare_query(ns, Language::Wql, text, None)?;
        let class = from.expect("WQL has a FROM class");
        let options = InstanceOptions {
            property_list: query.select.clone(),
            ..Default::default()
        };
        let pctx = self.provider_context(ctx, ns);
        let stream = self.spawn_enumeration(pctx, class, options, false, Some(query));
        Ok(Outcome::Stream(stream, ResultForm::ObjectWithPath))
    }

    /// Parses the filter of an Open... operation.
    pub(super) fn open_filter(
        &self,
        ns: &str,
        open: &OpenOptions,
        class: Option<&Class>,
    ) -> CimResult<Option<Arc<Query>>> {
        match &open.filter {
            None => Ok(None),
            Some(f) => {
                let language = Language::parse(&f.language)?;
                Ok(Some(self.prepare_query(ns, language, &f.query, class)?.0))
            }
        }
    }

    /// Opens a pull enumeration over `stream` and returns its first batch.
    pub(super) async fn open_stream(
        &self,
        ctx: &RequestContext,
        ns: &str,
        stream: ItemStream,
        form: ResultForm,
        open: &OpenOptions,
        query_result_class: Option<ClassItem>,
    ) -> CimResult<Outcome> {
        let timeout = self.pulls.timeout(open.operation_timeout)?;
        let id = self.pulls.open(&ctx.user, ns, form, stream, timeout)?;
        let (items, end) = self
            .pulls
            .pull(&id, &ctx.user, ns, form, open.max_object_count)
            .await?;
        Ok(Outcome::Pull(PullResult {
            items,
            form,
            context: (!end).then_some(id),
            query_result_class,
        }))
    }

    pub(super) fn check_open(&self, open: &OpenOptions) -> CimResult<()> {
        if open.continue_on_error {
            return Err(CimError::new(
                StatusCode::ContinuationOnErrorNotSupported,
                "ContinueOnError is not supported: an enumeration ends at its first error",
            ));
        }
        self.pulls.timeout(open.operation_timeout)?;
        self.pulls.check_max_object_count(open.max_object_count)
    }

    pub(super) async fn open_enumerate(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        class: &Name,
        options: InstanceOptions,
        open: OpenOptions,
        paths: bool,
    ) -> CimResult<Outcome> {
        self.check_open(&open)?;
        let pctx = self.provider_context(ctx, ns);
        let class = Self::class_of(&pctx.schema, ns, class.as_str())?;
        let query = self.open_filter(ns, &open, Some(&class))?;
        let stream = self.spawn_enumeration(pctx, class, options, paths, query);
        let form = if paths {
            ResultForm::InstancePath
        } else {
            ResultForm::InstanceWithPath
        };
        self.open_stream(ctx, ns, stream, form, &open, None).await
    }

    pub(super) async fn open_query(
        self: &Arc<Self>,
        ctx: &RequestContext,
        ns: &str,
        language: &str,
        text: &str,
        return_class: bool,
        open: OpenOptions,
    ) -> CimResult<Outcome> {
        self.check_open(&open)?;
        let language = Language::parse(language)?;
        if language != Language::Wql {
            return Err(CimError::new(
                StatusCode::QueryLanguageNotSupported,
                "OpenQueryInstances supports WQL; DMTF:FQL is a filter language without FROM",
            ));
        }
        let (query, from) = self.prepare_query(ns, language, text, None)?;
        let class = from.expect("WQL has a FROM class");
        let options = InstanceOptions {
            property_list: query.select.clone(),
            ..Default::default()
        };
        let result_class = return_class.then(|| ClassItem {
            class: class.clone(),
            schema: self.schema(),
            namespace: ns.to_string(),
            filter: Arc::new(ClassFilter {
                local_only: false,
                include_qualifiers: true,
                include_class_origin: false,
                properties: query.select.clone().map(|l| l.into_iter().collect()),
            }),
        });
        let pctx = self.provider_context(ctx, ns);
        let stream = self.spawn_enumeration(pctx, class, options, false, Some(query));
        self.open_stream(
            ctx,
            ns,
            stream,
            ResultForm::Instance,
            &OpenOptions {
                filter: None,
                ..open
            },
            result_class,
        )
        .await
    }

    pub(super) async fn pull(
        &self,
        ctx: &RequestContext,
        ns: &str,
        context: &str,
        max: u32,
        form: ResultForm,
    ) -> CimResult<Outcome> {
        self.pulls.check_max_object_count(max)?;
        let (items, end) = self.pulls.pull(context, &ctx.user, ns, form, max).await?;
        Ok(Outcome::Pull(PullResult {
            items,
            form,
            context: (!end).then(|| context.to_string()),
            query_result_class: None,
        }))
    }

    /// Parses an embedded instance given as text: CIM-XML `<INSTANCE>`.
    fn embedded_instance(&self, text: &str) -> CimResult<Value> {
        let decoder = decode::Decoder {
            limits: &self.config.xml,
            namespace: None,
        };
        if text.trim_start().starts_with('<') {
            decoder.embedded_instance(text)
        } else {
            Err(CimError::invalid_parameter(
                "an embedded instance must be a CIM-XML <INSTANCE> element",
            ))
        }
    }

    pub(super) async fn invoke_method(
        &self,
        ctx: &RequestContext,
        ns: &str,
        target: ObjectPath,
        method: &Name,
        parameters: Vec<(Name, Option<UntypedValue>)>,
    ) -> CimResult<Outcome> {
        let pctx = self.provider_context(ctx, ns);
        let class = Self::class_of(&pctx.schema, ns, target.class_name.as_str())?;
        let decl = class.method(method.as_str()).ok_or_else(|| {
            CimError::new(
                StatusCode::MethodNotFound,
                format!("class {} has no method {method}", class.name),
            )
        })?;
        let target = if target.keys.is_empty() {
            ObjectPath::class(None, class.name.clone())
        } else {
            normalize_path(&class, &target)?
        };
        let mut arguments = Vec::with_capacity(parameters.len());
        for (name, value) in parameters {
            let p = decl.parameters.get(name.as_str()).ok_or_else(|| {
                CimError::invalid_parameter(format!(
                    "method {}.{} has no parameter {name}",
                    class.name, decl.name
                ))
            })?;
            if !p.is_in() {
                return Err(CimError::invalid_parameter(format!(
                    "parameter {name} of {}.{} is an output parameter",
                    class.name, decl.name
                )));
            }
            let element = format!("parameter {} of {}.{}", p.name, class.name, decl.name);
            let embedded = p.qualifiers.get("EmbeddedInstance").is_some()
                || p.qualifiers.is_true("EmbeddedObject");
            let value = match value {
                None => None,
                Some(v) if embedded => {
                    Some(self.embedded_argument(v, p.array.is_some(), &element)?)
                }
                Some(v) => Some(convert::typed(v, p.ty, p.array.is_some(), &element)?),
            };
            arguments.push((p.name.clone(), value));
        }
        let mut provider = None;
        let mut current = Some(class.clone());
        while let Some(c) = current {
            if let Some(p) = self.providers.methods(ns, c.name.as_str()) {
                provider = Some(p);
                break;
            }
            current = c
                .superclass
                .as_ref()
                .and_then(|s| pctx.schema.class(ns, s.as_str()).ok().cloned());
        }
        let provider = provider.ok_or_else(|| {
            provider::method_not_available(class.name.as_str(), decl.name.as_str())
        })?;
        let result = provider
            .invoke_method(&pctx, &class, &target, decl, arguments)
            .await?;
        Ok(Outcome::Method {
            return_value: result.return_value,
            out: result.out,
        })
    }

    fn embedded_argument(
        &self,
        value: UntypedValue,
        is_array: bool,
        element: &str,
    ) -> CimResult<Value> {
        let one = |v: Value| match v {
            Value::String(s) => self.embedded_instance(&s),
            v @ Value::Instance(_) => Ok(v),
            v => Err(CimError::new(
                StatusCode::TypeMismatch,
                format!(
                    "{element} must be an embedded instance, not {:?}",
                    v.cim_type()
                ),
            )),
        };
        let text = |t: String| self.embedded_instance(&t);
        match (value, is_array) {
            (UntypedValue::Text(t), false) => text(t),
            (UntypedValue::TextArray(items), true) => Ok(Value::Array(
                items
                    .into_iter()
                    .map(|i| i.map(text).transpose())
                    .collect::<CimResult<_>>()?,
            )),
            (UntypedValue::Typed(Value::Array(items)), true) => Ok(Value::Array(
                items
                    .into_iter()
                    .map(|i| i.map(one).transpose())
                    .collect::<CimResult<_>>()?,
            )),
            (UntypedValue::Typed(v), false) => one(v),
            _ => Err(CimError::new(
                StatusCode::TypeMismatch,
                format!(
                    "{element} must be {}",
                    if is_array { "an array" } else { "a scalar" }
                ),
            )),
        }
    }

    /// Whether `class` in `ns` is CIM_Namespace in the interop namespace, whose instances
    /// are the namespaces themselves (DSP1033).
    fn is_namespace_class(&self, pctx: &ProviderContext, ns: &str, class: &Class) -> bool {
        cim_schema::eq_ignore_case(ns, crate::schema::INTEROP_NAMESPACE)
            && pctx
                .schema
                .namespace(ns)
                .is_ok_and(|n| n.is_subclass_of(class.name.as_str(), "CIM_Namespace"))
    }

    /// CreateInstance of CIM_Namespace: creates an empty namespace (no classes, no
    /// qualifier declarations), as OpenPegasus does.
    async fn create_namespace(
        &self,
        pctx: &ProviderContext,
        instance: &Instance,
    ) -> CimResult<Outcome> {
        let name = instance
            .get("Name")
            .and_then(Value::as_str)
            .map(|n| n.trim_matches('/').to_string())
            .ok_or_else(|| {
                CimError::invalid_parameter("a CIM_Namespace needs its Name, such as root/test")
            })?;
        let valid = !name.is_empty()
            && name.split('/').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !valid {
            return Err(CimError::invalid_parameter(format!(
                "'{name}' is not a valid namespace name: segments of letters, digits, '_' and '-' separated by '/'"
            )));
        }
        {
            let _guard = self.writes.lock().await;
            if self.resolve_namespace(&name).is_ok() {
                return Err(CimError::new(
                    StatusCode::AlreadyExists,
                    format!("namespace {name} already exists"),
                ));
            }
            self.store
                .put_namespace(&name)
                .map_err(Self::store_failed)?;
            let mut repo = (*self.schema()).clone();
            repo.create_namespace(&name);
            self.replace_schema(repo);
        }
        tracing::info!(namespace = name, "namespace created");
        // The interop provider describes namespaces; its instance gives the path.
        let ns = crate::schema::INTEROP_NAMESPACE;
        let pctx = ProviderContext {
            schema: self.schema(),
            ..pctx.clone()
        };
        let class = Self::class_of(&pctx.schema, ns, "CIM_Namespace")?;
        let mut path = None;
        if let Some(p) = self.providers.instances(ns, "CIM_Namespace") {
            let sink = InstanceSink::collecting();
            p.enumerate_instances(&pctx, &class, &sink).await?;
            path = sink
                .into_collected()
                .into_iter()
                .find(|i| i.get("Name").and_then(Value::as_str) == Some(name.as_str()))
                .map(|i| i.path(&class, None));
        }
        Ok(Outcome::InstanceName(path.unwrap_or_else(|| {
            ObjectPath::class(None, class.name.clone()).with_key("Name", name.as_str())
        })))
    }

    /// DeleteInstance of CIM_Namespace: deletes a namespace a client created, once it is
    /// empty (no classes, no qualifier declarations, as pywbem also checks).
    async fn delete_namespace(&self, class: &Class, path: &ObjectPath) -> CimResult<Outcome> {
        let name = path
            .key("Name")
            .and_then(Value::as_str)
            .ok_or_else(|| CimError::invalid_parameter(format!("{} paths need Name", class.name)))?
            .trim_matches('/')
            .to_string();
        let _guard = self.writes.lock().await;
        let schema = self.schema();
        let namespace = schema
            .namespace(&name)
            .map_err(|_| CimError::not_found(format!("namespace {name} does not exist")))?;
        if self
            .builtin_classes
            .iter()
            .any(|(ns, _)| ns.eq_ignore_ascii_case(&name))
        {
            return Err(CimError::not_supported(format!(
                "namespace {name} is part of cimvirt's built-in schema and cannot be deleted"
            )));
        }
        if namespace.classes().len() + namespace.qualifiers().len() > 0 {
            return Err(CimError::new(
                StatusCode::NamespaceNotEmpty,
                format!(
                    "namespace {name} still has {} class(es) and {} qualifier declaration(s); delete them first",
                    namespace.classes().len(),
                    namespace.qualifiers().len()
                ),
            ));
        }
        self.store
            .delete_namespace(&name)
            .map_err(Self::store_failed)?;
        let mut repo = (*schema).clone();
        repo.remove_namespace(&name);
        self.replace_schema(repo);
        tracing::info!(namespace = name, "namespace deleted");
        Ok(Outcome::Empty)
    }
}
