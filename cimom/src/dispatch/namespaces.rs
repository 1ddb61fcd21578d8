//! Namespaces as instances of CIM_Namespace in the interop namespace: created and
//! deleted through CreateInstance and DeleteInstance (DSP1033).

use cim_schema::{Class, Instance, ObjectPath, Value};

use super::provider::{InstanceSink, ProviderContext};
use super::result::Outcome;
use super::Cimom;
use crate::error::{CimError, CimResult, StatusCode};

impl Cimom {
    /// Whether `class` in `ns` is CIM_Namespace in the interop namespace, whose instances
    /// are the namespaces themselves (DSP1033).
    pub(super) fn is_namespace_class(
        &self,
        pctx: &ProviderContext,
        ns: &str,
        class: &Class,
    ) -> bool {
        cim_schema::eq_ignore_case(ns, crate::INTEROP_NAMESPACE)
            && pctx
                .schema
                .namespace(ns)
                .is_ok_and(|n| n.is_subclass_of(class.name.as_str(), "CIM_Namespace"))
    }

    /// CreateInstance of CIM_Namespace: creates an empty namespace (no classes, no
    /// qualifier declarations), as OpenPegasus does.
    pub(super) async fn create_namespace(
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
        let ns = crate::INTEROP_NAMESPACE;
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
    pub(super) async fn delete_namespace(
        &self,
        class: &Class,
        path: &ObjectPath,
    ) -> CimResult<Outcome> {
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
