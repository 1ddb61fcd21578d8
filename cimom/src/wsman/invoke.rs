//! Custom actions (DSP0227 clause 9): an extrinsic method, named by the last segment of
//! the action URI, with its input parameters as the elements of `p:METHOD_INPUT` and its
//! results as `p:METHOD_OUTPUT`.

use cim_schema::{eq_ignore_case, Name};

use super::fault::{Fault, Subcode};
use super::reply::{Reply, ENVELOPE_OVERHEAD};
use super::transfer::{embedded_reader, resolve, target};
use super::{resource, wscim, Call};
use crate::cimxml::encode::attr;
use crate::dispatch::operation::{Operation, UntypedValue};
use crate::dispatch::result::Outcome;

/// Invokes the method the action names on the addressed instance (or class, for a
/// static method called without selectors).
pub async fn invoke(call: &Call<'_>, action: &str) -> Result<Reply, Fault> {
    let unsupported = || {
        Fault::sender(
            Subcode::ActionNotSupported,
            format!("action '{action}' is not supported"),
        )
        .with_detail("ActionMismatch")
    };
    let (base, method) = action.rsplit_once('/').ok_or_else(unsupported)?;
    if method.is_empty() || call.request.resource_uri.is_none() {
        return Err(unsupported());
    }
    // The action is the resource URI (or another URI of the same class) plus the method.
    let action_class = resource::class_of_uri(base).map_err(|_| unsupported())?;
    let target = target(call, true)?;
    let schema = call.cimom.schema();
    let class = schema
        .class(&target.namespace, target.path.class_name.as_str())
        .map_err(|e| Fault::from(crate::error::CimError::from(e)))?
        .clone();
    if !eq_ignore_case(&action_class, class.name.as_str())
        && !schema
            .namespace(&target.namespace)
            .is_ok_and(|ns| ns.is_subclass_of(class.name.as_str(), &action_class))
    {
        return Err(unsupported());
    }
    let decl = class.method(method).ok_or_else(|| {
        Fault::sender(
            Subcode::ActionNotSupported,
            format!("class {} has no method {method}", class.name),
        )
        .with_detail("ActionMismatch")
    })?;
    let mut parameters: Vec<(Name, Option<UntypedValue>)> = Vec::new();
    if let Some(input) = &call.request.body {
        let expected = format!("{}_INPUT", decl.name);
        if !eq_ignore_case(input.local_name(), &expected) {
            return Err(Fault::schema(format!(
                "the body of {} is <{}>, expected <{expected}>",
                decl.name,
                input.local_name()
            )));
        }
        let embedded = embedded_reader(call, &target.namespace);
        for (name, elements) in wscim::group_children(input) {
            let p = decl.parameters.get(name).ok_or_else(|| {
                Fault::sender(
                    Subcode::InvalidParameter,
                    format!(
                        "method {}.{} has no parameter {name}",
                        class.name, decl.name
                    ),
                )
            })?;
            let value = wscim::read_group(&elements, p.array.is_some(), &embedded)?;
            parameters.push((p.name.clone(), value));
        }
    }
    let outcome = call
        .execute(
            &target.namespace,
            Operation::InvokeMethod {
                target: resolve(call, &target).await?,
                method: decl.name.clone(),
                parameters,
            },
            decl.name.as_str(),
        )
        .await?;
    let Outcome::Method { return_value, out } = outcome else {
        return Err(Fault::receiver(
            Subcode::InternalError,
            "the method returned nothing",
        ));
    };
    let mut body = String::from("<p:");
    body.push_str(decl.name.as_str());
    body.push_str("_OUTPUT");
    attr(&mut body, "xmlns:p", &resource::class_uri(&action_class));
    attr(&mut body, "xmlns:cim", super::names::CIM_COMMON);
    body.push('>');
    for (name, v) in &out {
        wscim::write_named(&mut body, name.as_str(), Some(v), &target.namespace, "");
    }
    wscim::write_named(
        &mut body,
        "ReturnValue",
        Some(&return_value),
        &target.namespace,
        "",
    );
    body.push_str("</p:");
    body.push_str(decl.name.as_str());
    body.push_str("_OUTPUT>");
    if body.len() + ENVELOPE_OVERHEAD > call.max_envelope_size() {
        return Err(Fault::sender(
            Subcode::EncodingLimit,
            "the method's output would exceed MaxEnvelopeSize",
        )
        .with_detail("MaxEnvelopeSize"));
    }
    Ok(Reply::new(format!("{action}Response"), body))
}
