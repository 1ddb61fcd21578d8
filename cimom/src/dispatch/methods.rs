//! Extrinsic method calls: arguments typed from the method declaration, embedded
//! instances parsed, then the class's method provider.

use cim_schema::{Name, ObjectPath, Repository, Value};

use super::convert::{self, normalize_path};
use super::operation::UntypedValue;
use super::provider;
use super::result::Outcome;
use super::{Cimom, RequestContext};
use crate::cimxml::decode;
use crate::error::{CimError, CimResult, StatusCode};

impl Cimom {
    /// Parses an embedded instance given as text: escaped CIM-XML `<INSTANCE>` (Hyper-V
    /// style), or MOF `instance of C { ... };` (libvirt-cim's clients), typed against the
    /// classes of `ns`.
    fn embedded_instance(&self, schema: &Repository, ns: &str, text: &str) -> CimResult<Value> {
        let decoder = decode::Decoder {
            limits: &self.config.xml,
            namespace: None,
        };
        let trimmed = text.trim_start();
        if trimmed.starts_with('<') {
            decoder.embedded_instance(text)
        } else if trimmed.len() >= 11 && trimmed[..11].eq_ignore_ascii_case("instance of") {
            cim_schema::mof::parse_instance(schema, ns, text)
                .map(|i| Value::Instance(Box::new(i)))
                .map_err(CimError::invalid_parameter)
        } else {
            Err(CimError::invalid_parameter(
                "an embedded instance must be a CIM-XML <INSTANCE> element or MOF `instance of`",
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
                // Hyper-V's clients send an empty string for an embedded instance they leave
                // out (CreateSnapshot's SnapshotSettings): that is no value.
                Some(UntypedValue::Text(t)) if embedded && t.trim().is_empty() => None,
                Some(UntypedValue::Typed(Value::String(t))) if embedded && t.trim().is_empty() => {
                    None
                }
                Some(v) if embedded => Some(self.embedded_argument(
                    &pctx.schema,
                    ns,
                    v,
                    p.array.is_some(),
                    &element,
                )?),
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
        schema: &Repository,
        ns: &str,
        value: UntypedValue,
        is_array: bool,
        element: &str,
    ) -> CimResult<Value> {
        let one = |v: Value| match v {
            Value::String(s) => self.embedded_instance(schema, ns, &s),
            v @ Value::Instance(_) => Ok(v),
            v => Err(CimError::new(
                StatusCode::TypeMismatch,
                format!(
                    "{element} must be an embedded instance, not {:?}",
                    v.cim_type()
                ),
            )),
        };
        let text = |t: String| self.embedded_instance(schema, ns, &t);
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
}
