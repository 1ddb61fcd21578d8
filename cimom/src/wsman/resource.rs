//! Addressing CIM objects (DSP0227 clause 7): resource URIs to classes, selector sets to
//! instance paths, and the selector faults of DSP0226 clause 7.

use cim_schema::{
    duplicate_name, eq_ignore_case, key_values_equal, Class, KeyBinding, Name, ObjectPath,
    Repository, Value,
};

use super::fault::{Fault, Subcode};
use super::names;
use crate::cimxml::dom::Element;
use crate::dispatch::convert::coerce;

/// What a resource URI names.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// One class (and, for WinRM's WMI URIs, its namespace).
    Class {
        /// The class name.
        name: String,
        /// The namespace the URI itself names.
        namespace: Option<String>,
    },
    /// All classes (`http://schemas.dmtf.org/wbem/wscim/1/*`): enumeration with a filter.
    AllClasses,
}

/// The resource URI of `class`: the DMTF prefix for `CIM_` classes, cimvirt's otherwise.
pub fn class_uri(class: &str) -> String {
    format!("{}{class}", class_prefix(class))
}

fn class_prefix(class: &str) -> &'static str {
    if class.len() > 4 && class[..4].eq_ignore_ascii_case("CIM_") {
        names::DMTF_CLASS_PREFIX
    } else {
        names::VENDOR_CLASS_PREFIX
    }
}

/// Writes [`class_uri`] into `out`, escaped for element content and attribute values
/// alike (so the encoders need no copy of it per instance).
pub fn write_class_uri(out: &mut String, class: &str) {
    out.push_str(class_prefix(class));
    crate::cimxml::encode::attr_value(out, class);
}

/// Parses a resource URI. Any URI whose path ends in `/wbem/wscim/1/cim-schema/2/<class>`
/// names that class (vendors pick their own host part, as OpenPegasus accepts).
pub fn parse_uri(uri: &str) -> Result<Resource, Fault> {
    let uri = uri.trim();
    let invalid = || {
        Fault::sender(
            Subcode::DestinationUnreachable,
            format!(
                "'{uri}' is not a resource URI this service knows: use {}<class>, {}<class> or {}",
                names::DMTF_CLASS_PREFIX,
                names::VENDOR_CLASS_PREFIX,
                names::ALL_CLASSES
            ),
        )
        .with_detail("InvalidResourceURI")
    };
    // A query part carries openwsman's selectors; they are read from the SelectorSet.
    let uri = uri.split('?').next().unwrap_or(uri);
    if uri == names::ALL_CLASSES {
        return Ok(Resource::AllClasses);
    }
    if let Some(rest) = uri.strip_prefix(names::WMI_PREFIX) {
        let (ns, class) = rest.rsplit_once('/').ok_or_else(invalid)?;
        if class == "*" {
            return Ok(Resource::AllClasses);
        }
        return valid_class(class)
            .map(|name| Resource::Class {
                name,
                namespace: Some(ns.to_string()),
            })
            .ok_or_else(invalid);
    }
    let (base, class) = uri.rsplit_once('/').ok_or_else(invalid)?;
    if !base.ends_with(names::CLASS_URI_SUFFIX) {
        return Err(invalid());
    }
    valid_class(class)
        .map(|name| Resource::Class {
            name,
            namespace: None,
        })
        .ok_or_else(invalid)
}

fn valid_class(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    ok.then(|| s.to_string())
}

/// The class a resource URI names; all-classes is refused here.
pub fn class_of_uri(uri: &str) -> Result<String, Fault> {
    match parse_uri(uri)? {
        Resource::Class { name, .. } => Ok(name),
        Resource::AllClasses => Err(Fault::sender(
            Subcode::DestinationUnreachable,
            "the all-classes resource URI names no instance",
        )
        .with_detail("InvalidResourceURI")),
    }
}

/// The selectors of a `wsman:SelectorSet`: text values, or nested endpoint references.
pub fn read_selectors(set: &Element) -> Result<Vec<(String, Value)>, Fault> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for s in set.children_ns(names::WSMAN, "Selector") {
        let name = s
            .attr("Name")
            .ok_or_else(|| invalid_selectors("a selector has no Name attribute", None))?
            .to_string();
        let value = match s.child_ns(names::WSA, "EndpointReference") {
            Some(epr) => Value::Reference(super::wscim::read_epr(epr)?),
            None => Value::String(s.text.to_string().into()),
        };
        out.push((name, value));
    }
    if let Some((name, _)) = duplicate_name(&out, |(n, _)| n) {
        return Err(invalid_selectors(
            format!("selector {name} is given twice"),
            Some("DuplicateSelectors"),
        ));
    }
    Ok(out)
}

/// Takes the `__cimnamespace` selector out of a selector list.
pub fn split_namespace(selectors: Vec<(String, Value)>) -> (Option<String>, Vec<(String, Value)>) {
    let mut namespace = None;
    let mut keys = Vec::with_capacity(selectors.len());
    for (name, value) in selectors {
        match value {
            Value::String(s) if eq_ignore_case(&name, names::NAMESPACE_SELECTOR) => {
                namespace = Some(s.trim().trim_matches('/').to_string())
            }
            value => keys.push((name, value)),
        }
    }
    (namespace, keys)
}

/// A `wsman:InvalidSelectors` fault with its detail.
pub fn invalid_selectors(reason: impl Into<String>, detail: Option<&'static str>) -> Fault {
    let f = Fault::sender(Subcode::InvalidSelectors, reason);
    match detail {
        Some(d) => f.with_detail(d),
        None => f,
    }
}

/// The class an instance is addressed in: the URI's class, or the subclass a
/// CreationClassName selector names (a DMTF URI addressing a KVM_ instance).
pub fn addressed_class<'a>(
    schema: &'a Repository,
    ns: &str,
    uri_class: &str,
    keys: &[(String, Value)],
) -> Result<&'a Class, Fault> {
    let class = schema
        .class(ns, uri_class)
        .map_err(|_| {
            Fault::sender(
                Subcode::DestinationUnreachable,
                format!("class {uri_class} does not exist in namespace {ns}"),
            )
            .with_detail("InvalidResourceURI")
        })?
        .as_ref();
    let named = keys.iter().find_map(|(k, v)| match v {
        Value::String(s) if eq_ignore_case(k, "CreationClassName") => Some(s.trim()),
        _ => None,
    });
    if let (Some(named), Ok(namespace)) = (named, schema.namespace(ns)) {
        if !eq_ignore_case(named, class.name.as_str())
            && namespace.is_subclass_of(named, class.name.as_str())
        {
            if let Some(sub) = namespace.class(named) {
                return Ok(sub.as_ref());
            }
        }
    }
    Ok(class)
}

/// The instance path the selectors address in `class`, checked as DSP0226 asks: every
/// key given once, nothing else, each of the key's type.
pub fn instance_path(class: &Class, keys: Vec<(String, Value)>) -> Result<ObjectPath, Fault> {
    let declared: Vec<_> = class.keys().collect();
    let mut bindings = Vec::with_capacity(keys.len());
    for (name, value) in keys {
        let decl = declared
            .iter()
            .find(|k| eq_ignore_case(k.name.as_str(), &name))
            .ok_or_else(|| {
                invalid_selectors(
                    format!(
                        "'{name}' is not a key of {}; its keys are {}",
                        class.name,
                        key_list(&declared)
                    ),
                    Some("UnexpectedSelectors"),
                )
            })?;
        let value = coerce(
            value,
            decl.ty,
            false,
            &format_args!("selector {}", decl.name),
        )
        .map_err(|e| invalid_selectors(e.description, Some("TypeMismatch")))?;
        bindings.push(KeyBinding {
            name: decl.name.clone(),
            value,
        });
    }
    if let Some(missing) = declared
        .iter()
        .find(|k| !bindings.iter().any(|b| b.name == k.name))
    {
        return Err(invalid_selectors(
            format!(
                "selector {} is missing; {} is addressed by {}",
                missing.name,
                class.name,
                key_list(&declared)
            ),
            Some("InsufficientSelectors"),
        ));
    }
    Ok(ObjectPath::new(None, class.name.clone(), bindings))
}

fn key_list(keys: &[&cim_schema::Property]) -> String {
    keys.iter()
        .map(|k| k.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `path`'s keys equal the given selectors (the selector filter, and finding an
/// instance of a subclass addressed through a superclass URI): each selector typed as its
/// key, then compared by the rule paths compare with. References compare as local paths,
/// since an endpoint reference names its namespace only when it differs.
pub fn matches_selectors(path: &ObjectPath, keys: &[(String, Value)]) -> bool {
    let local = |v: Value| match v {
        Value::Reference(p) => Value::Reference(p.local()),
        v => v,
    };
    keys.iter().all(|(name, value)| {
        path.keys.iter().any(|kb| {
            eq_ignore_case(kb.name.as_str(), name)
                && kb
                    .value
                    .cim_type()
                    .and_then(|ty| coerce(value.clone(), ty, false, &"selector").ok())
                    .is_some_and(|v| key_values_equal(&local(v), &local(kb.value.clone())))
        })
    })
}

/// The name of a class as the schema spells it.
pub fn class_name(schema: &Repository, ns: &str, name: &str) -> Option<Name> {
    schema.class(ns, name).ok().map(|c| c.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris_name_classes() {
        assert_eq!(
            parse_uri("http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ComputerSystem"),
            Ok(Resource::Class {
                name: "CIM_ComputerSystem".into(),
                namespace: None
            })
        );
        assert_eq!(
            parse_uri("http://sblim.sf.net/wbem/wscim/1/cim-schema/2/Linux_OS?a=b"),
            Ok(Resource::Class {
                name: "Linux_OS".into(),
                namespace: None
            })
        );
        assert_eq!(
            parse_uri("http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virt/KVM_Memory"),
            Ok(Resource::Class {
                name: "KVM_Memory".into(),
                namespace: Some("root/virt".into())
            })
        );
        assert_eq!(
            parse_uri("http://schemas.dmtf.org/wbem/wscim/1/*"),
            Ok(Resource::AllClasses)
        );
        for bad in [
            "urn:x",
            "http://x/y/Z",
            "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
        assert_eq!(
            class_uri("KVM_ComputerSystem"),
            "http://schemas.cimvirt.org/wbem/wscim/1/cim-schema/2/KVM_ComputerSystem"
        );
    }
}
