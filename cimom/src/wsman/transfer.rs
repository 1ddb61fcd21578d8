//! WS-Transfer on CIM instances (DSP0227 clause 8): Get, Put (whole instances or one
//! property through fragment transfer), Create and Delete.

use cim_schema::{eq_ignore_case, Class, Instance, ObjectPath};

use super::fault::{Fault, Subcode};
use super::reply::{Reply, ENVELOPE_OVERHEAD};
use super::resource::{self, Resource};
use super::{names, wscim, Call};
use crate::cimxml::dom::Element;
use crate::cimxml::encode::InstanceFilter;
use crate::dispatch::operation::{InstanceOptions, Operation};
use crate::dispatch::result::{Item, Outcome};

/// The namespace and path a Get, Put, Delete or method call addresses.
pub struct Target {
    /// The namespace.
    pub namespace: String,
    /// The class named by the resource URI.
    pub uri_class: String,
    /// The instance path (a class path when no key selectors are given and `allow_class`).
    pub path: ObjectPath,
}

/// The class the resource URI names, and the namespace a WMI URI names.
fn class_resource(call: &Call<'_>) -> Result<(String, Option<String>), Fault> {
    match call.resource()? {
        Resource::Class { name, namespace } => Ok((name, namespace)),
        Resource::AllClasses => Err(Fault::sender(
            Subcode::DestinationUnreachable,
            "this operation needs the resource URI of a class, not all classes",
        )
        .with_detail("InvalidResourceURI")),
    }
}

/// Resolves the addressed instance: namespace, the class (a subclass named by
/// CreationClassName), and selectors checked against its keys.
pub fn target(call: &Call<'_>, allow_class: bool) -> Result<Target, Fault> {
    let (uri_class, uri_ns) = class_resource(call)?;
    let namespace = call.namespace(uri_ns.as_deref())?;
    let keys = call.keys();
    let schema = call.cimom.schema();
    let class = resource::addressed_class(&schema, &namespace, &uri_class, &keys)?;
    let path = if keys.is_empty() && allow_class {
        ObjectPath::class(None, class.name.clone())
    } else {
        resource::instance_path(class, keys)?
    };
    Ok(Target {
        namespace,
        uri_class,
        path,
    })
}

/// The path of the instance `target` addresses, found as Get finds it: by its path, or
/// among the URI class's instances by its keys (a class path stays as it is).
pub async fn resolve(call: &Call<'_>, target: &Target) -> Result<ObjectPath, Fault> {
    if target.path.keys.is_empty() {
        return Ok(target.path.clone());
    }
    let item = read(call, target).await?;
    Ok(instance_of(&item)?.1.clone())
}

/// Reads the instance at `target`. A DMTF URI naming a superclass, with selectors that
/// do not name the subclass (an InstanceID), is resolved by looking among the
/// instances of the URI's class for one with those keys.
async fn read(call: &Call<'_>, target: &Target) -> Result<Item, Fault> {
    let get = |path: ObjectPath| Operation::GetInstance {
        path,
        options: InstanceOptions::default(),
    };
    match call
        .execute(&target.namespace, get(target.path.clone()), "Get")
        .await
    {
        Ok(Outcome::Instance(item)) => return Ok(item),
        Ok(_) => {
            return Err(Fault::receiver(
                Subcode::InternalError,
                "Get returned no instance",
            ))
        }
        Err(f) if f.subcode == Subcode::DestinationUnreachable => {}
        Err(f) => return Err(f),
    }
    let keys: Vec<_> = target
        .path
        .keys
        .iter()
        .map(|k| (k.name.to_string(), k.value.clone()))
        .collect();
    let names = call
        .execute(
            &target.namespace,
            Operation::EnumerateInstanceNames {
                class: target.uri_class.as_str().into(),
            },
            "Get",
        )
        .await?;
    let Outcome::Stream(mut stream, _) = names else {
        return Err(Fault::receiver(Subcode::InternalError, "no instance names"));
    };
    while let Some(item) = stream.recv().await {
        if let Item::Path(path) = item? {
            if resource::matches_selectors(&path, &keys) {
                if let Ok(Outcome::Instance(item)) =
                    call.execute(&target.namespace, get(path), "Get").await
                {
                    return Ok(item);
                }
            }
        }
    }
    Err(Fault::sender(
        Subcode::DestinationUnreachable,
        format!("no instance of {} has these selectors", target.uri_class),
    ))
}

fn instance_of(item: &Item) -> Result<(&Instance, &ObjectPath), Fault> {
    match item {
        Item::Instance { object, .. } => Ok((&object.instance, &object.path)),
        _ => Err(Fault::receiver(Subcode::InternalError, "not an instance")),
    }
}

/// The property a fragment expression names (`ElementName`, `p:ElementName`,
/// `ElementName/text()`), and whether only its text is wanted.
fn fragment_property(expression: &str) -> Result<(&str, bool), Fault> {
    let e = expression.trim().trim_start_matches('/');
    let (e, text_only) = match e.strip_suffix("/text()") {
        Some(p) => (p, true),
        None => (e, false),
    };
    let name = e.rsplit(':').next().unwrap_or(e);
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(Fault::sender(
            Subcode::InvalidParameter,
            format!(
                "fragment '{expression}' is not supported: name one property, optionally with /text()"
            ),
        ));
    }
    Ok((name, text_only))
}

fn write_fragment(inst: &Instance, expression: &str, namespace: &str) -> Result<String, Fault> {
    let (name, text_only) = fragment_property(expression)?;
    let property = inst.properties.get(name).ok_or_else(|| {
        Fault::sender(
            Subcode::InvalidParameter,
            format!("{} has no property {name}", inst.class_name),
        )
    })?;
    let mut body = String::from("<wsman:XmlFragment>");
    if text_only {
        if let Some(v) = &property.value {
            crate::cimxml::encode::text(&mut body, &wscim::scalar_text(v));
        }
    } else {
        let declarations = format!(
            " xmlns:p=\"{}\" xmlns:cim=\"{}\"",
            resource::class_uri(inst.class_name.as_str()),
            names::CIM_COMMON
        );
        wscim::write_property(&mut body, property, namespace, &declarations);
    }
    body.push_str("</wsman:XmlFragment>");
    Ok(body)
}

fn check_size(call: &Call<'_>, body: &str) -> Result<(), Fault> {
    if body.len() + ENVELOPE_OVERHEAD > call.max_envelope_size() {
        return Err(Fault::sender(
            Subcode::EncodingLimit,
            format!(
                "the response ({} octets) would exceed MaxEnvelopeSize {}",
                body.len() + ENVELOPE_OVERHEAD,
                call.max_envelope_size()
            ),
        )
        .with_detail("MaxEnvelopeSize"));
    }
    Ok(())
}

/// WS-Transfer Get.
pub async fn get(call: &Call<'_>) -> Result<Reply, Fault> {
    let target = target(call, false)?;
    let item = read(call, &target).await?;
    let (inst, _) = instance_of(&item)?;
    let body = match &call.request.fragment {
        Some(expression) => write_fragment(inst, expression, &target.namespace)?,
        None => {
            let mut body = String::new();
            wscim::write_instance(&mut body, inst, &InstanceFilter::all(), &target.namespace);
            body
        }
    };
    check_size(call, &body)?;
    Ok(Reply::new(format!("{}Response", names::action::GET), body))
}

/// The class an instance element in a Put or Create body is read as. A client holding a
/// DMTF URI writes the superclass's element (`p:CIM_ComputerSystem`) for a subclass's
/// instance: that is read as the addressed class, whose properties include the base's.
fn body_class(
    call: &Call<'_>,
    namespace: &str,
    addressed: &str,
    element: &Element,
) -> Result<std::sync::Arc<Class>, Fault> {
    let schema = call.cimom.schema();
    let name = element.local_name();
    let ns = schema
        .namespace(namespace)
        .map_err(|e| Fault::from(crate::error::CimError::from(e)))?;
    let chosen = if eq_ignore_case(name, addressed) || ns.is_subclass_of(addressed, name) {
        addressed
    } else if ns.is_subclass_of(name, addressed) {
        name
    } else {
        return Err(Fault::sender(
            Subcode::InvalidRepresentation,
            format!("the body holds a {name}, which is not a {addressed}"),
        ));
    };
    ns.class(chosen).cloned().ok_or_else(|| {
        Fault::sender(
            Subcode::InvalidRepresentation,
            format!("class {chosen} does not exist in {namespace}"),
        )
    })
}

/// Builds the reader of nested instances for `namespace`.
pub fn embedded_reader(
    call: &Call<'_>,
    namespace: &str,
) -> impl Fn(&Element) -> Result<Instance, Fault> {
    let schema = call.cimom.schema();
    let namespace = namespace.to_string();
    move |e: &Element| read_embedded(&schema, &namespace, e)
}

fn read_embedded(
    schema: &cim_schema::Repository,
    namespace: &str,
    e: &Element,
) -> Result<Instance, Fault> {
    // The class is the element's name; xsi:type (`q:CLASS_Type`, its prefix possibly
    // undeclared, as wsmancli leaves it) says the same.
    let name = e.local_name();
    let class = schema.class(namespace, name).map_err(|_| {
        Fault::sender(
            Subcode::InvalidParameter,
            format!("embedded instance of unknown class {name} in {namespace}"),
        )
    })?;
    let nested = |c: &Element| read_embedded(schema, namespace, c);
    wscim::read_instance(e, class, &nested)
}

/// WS-Transfer Put: the instance in the body replaces the properties it gives.
pub async fn put(call: &Call<'_>) -> Result<Reply, Fault> {
    let target = target(call, false)?;
    let body = call
        .request
        .body
        .as_ref()
        .ok_or_else(|| Fault::sender(Subcode::InvalidRepresentation, "Put needs a body"))?;
    let current = read(call, &target).await?;
    let (current_inst, path) = instance_of(&current)?;
    let path = path.clone();
    let class_name = current_inst.class_name.to_string();
    let embedded = embedded_reader(call, &target.namespace);
    let instance = if let Some(expression) = &call.request.fragment {
        let (name, text_only) = fragment_property(expression)?;
        if !body.is(names::WSMAN, "XmlFragment") {
            return Err(Fault::sender(
                Subcode::InvalidRepresentation,
                "a fragment Put carries a wsman:XmlFragment",
            ));
        }
        let schema = call.cimom.schema();
        let class = schema
            .class(&target.namespace, &class_name)
            .map_err(|e| Fault::from(crate::error::CimError::from(e)))?;
        let mut wrapper = Element {
            name: class_name.clone().into(),
            ..Element::default()
        };
        if text_only {
            wrapper.children.push(Element {
                name: name.to_string().into(),
                text: body.text.clone(),
                ..Element::default()
            });
        } else {
            wrapper.children = body.children.clone();
        }
        wscim::read_instance(&wrapper, class, &embedded)?
    } else {
        let class = body_class(call, &target.namespace, &class_name, body)?;
        wscim::read_instance(body, &class, &embedded)?
    };
    let property_list = Some(instance.properties.keys().cloned().collect());
    call.execute(
        &target.namespace,
        Operation::ModifyInstance {
            path: path.clone(),
            instance,
            property_list,
        },
        "Put",
    )
    .await?;
    let namespace = target.namespace.clone();
    let updated = read(call, &Target { path, ..target }).await?;
    let (inst, _) = instance_of(&updated)?;
    let body = match &call.request.fragment {
        Some(expression) => write_fragment(inst, expression, &namespace)?,
        None => {
            let mut body = String::new();
            wscim::write_instance(&mut body, inst, &InstanceFilter::all(), &namespace);
            body
        }
    };
    check_size(call, &body)?;
    Ok(Reply::new(format!("{}Response", names::action::PUT), body))
}

/// WS-Transfer Create: a new instance from the body; answers its endpoint reference.
pub async fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let (uri_class, uri_ns) = class_resource(call)?;
    let namespace = call.namespace(uri_ns.as_deref())?;
    let body = call
        .request
        .body
        .as_ref()
        .ok_or_else(|| Fault::sender(Subcode::InvalidRepresentation, "Create needs a body"))?;
    let class = body_class(call, &namespace, &uri_class, body)?;
    let embedded = embedded_reader(call, &namespace);
    let instance = wscim::read_instance(body, &class, &embedded)?;
    let outcome = call
        .execute(&namespace, Operation::CreateInstance { instance }, "Create")
        .await?;
    let Outcome::InstanceName(path) = outcome else {
        return Err(Fault::receiver(
            Subcode::InternalError,
            "Create returned no path",
        ));
    };
    let mut body = String::from("<wxf:ResourceCreated>");
    wscim::write_epr_content(&mut body, &path, &namespace);
    body.push_str("</wxf:ResourceCreated>");
    Ok(Reply::new(
        format!("{}Response", names::action::CREATE),
        body,
    ))
}

/// WS-Transfer Delete.
pub async fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    let target = target(call, false)?;
    let item = read(call, &target).await?;
    let (_, path) = instance_of(&item)?;
    let result = call
        .execute(
            &target.namespace,
            Operation::DeleteInstance { path: path.clone() },
            "Delete",
        )
        .await;
    match result {
        Ok(_) => Ok(Reply::new(
            format!("{}Response", names::action::DELETE),
            String::new(),
        )),
        Err(f) => Err(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_expressions_name_one_property() {
        assert_eq!(
            fragment_property("ElementName").unwrap(),
            ("ElementName", false)
        );
        assert_eq!(
            fragment_property("p:ElementName/text()").unwrap(),
            ("ElementName", true)
        );
        assert!(fragment_property("a[1]/b").is_err());
    }
}
