//! CIM-XML encoding (DSP0201): values, paths, qualifiers, classes and instances, written
//! into a `String` with the filters of the request (PropertyList, LocalOnly,
//! IncludeQualifiers, IncludeClassOrigin) applied as elements are written.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use cim_schema::{
    Array, ArraySize, CimType, Class, Flavor, Instance, Method, Name, Namespace, ObjectPath,
    Property, Qualifier, QualifierDecl, QualifierSet, Scope, Value,
};

use crate::error::CimError;

/// Where relative paths are completed when a full INSTANCEPATH or CLASSPATH is written.
#[derive(Clone, Debug)]
pub struct PathContext {
    /// The server's host name (with port) as the client addressed it.
    pub host: String,
    /// The namespace of the request.
    pub namespace: String,
}

/// Which bytes element content must escape: `&`, `<`, `>` and C0 controls other than
/// tab, newline and carriage return.
const TEXT_SPECIAL: [bool; 256] = special(b"&<>", false);
/// Which bytes attribute values must escape: those, `"`, and every C0 control.
const ATTR_SPECIAL: [bool; 256] = special(b"&<>\"", true);

const fn special(chars: &[u8], all_controls: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = all_controls || !matches!(b as u8, b'\t' | b'\n' | b'\r');
        b += 1;
    }
    let mut i = 0;
    while i < chars.len() {
        table[chars[i] as usize] = true;
        i += 1;
    }
    table
}

/// Writes `s` with the bytes `table` marks replaced by entities, copying the runs
/// between them whole (this is the encoder's innermost loop).
#[inline]
fn escaped(out: &mut String, s: &str, table: &[bool; 256]) {
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(offset) = bytes[start..].iter().position(|&b| table[b as usize]) {
        // Only ASCII bytes are ever marked, so this is a character boundary.
        let i = start + offset;
        out.push_str(&s[start..i]);
        match bytes[i] {
            b'&' => out.push_str("&amp;"),
            b'<' => out.push_str("&lt;"),
            b'>' => out.push_str("&gt;"),
            b'"' => out.push_str("&quot;"),
            // XML 1.0 cannot carry most C0 controls; a character reference keeps them
            // visible to the (lenient) clients that accept XML 1.1 references.
            b => {
                let _ = write!(out, "&#x{b:X};");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Writes `s` escaped for element content.
pub fn text(out: &mut String, s: &str) {
    escaped(out, s, &TEXT_SPECIAL);
}

/// Writes `s` escaped for an attribute value (which is also safe as element content).
pub fn attr_value(out: &mut String, s: &str) {
    escaped(out, s, &ATTR_SPECIAL);
}

/// Writes `name="value"` with the value escaped for an attribute, preceded by a space.
pub fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escaped(out, value, &ATTR_SPECIAL);
    out.push('"');
}

/// Writes the text form of a scalar value, escaped for element content.
pub fn scalar_into(out: &mut String, v: &Value) {
    match v {
        Value::Boolean(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Value::String(s) => text(out, s),
        Value::UInt8(n) => push_display(out, n),
        Value::SInt8(n) => push_display(out, n),
        Value::UInt16(n) => push_display(out, n),
        Value::SInt16(n) => push_display(out, n),
        Value::UInt32(n) => push_display(out, n),
        Value::SInt32(n) => push_display(out, n),
        Value::UInt64(n) => push_display(out, n),
        Value::SInt64(n) => push_display(out, n),
        v => text(out, &scalar_text(v)),
    }
}

fn push_display(out: &mut String, v: &impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

/// The text form of a scalar value inside `<VALUE>` (references and embedded instances
/// are written by their own elements; see [`value`]).
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::Boolean(b) => (if *b { "TRUE" } else { "FALSE" }).to_string(),
        Value::String(s) => s.to_string(),
        Value::Char16(c) => c.to_string(),
        Value::UInt8(n) => n.to_string(),
        Value::SInt8(n) => n.to_string(),
        Value::UInt16(n) => n.to_string(),
        Value::SInt16(n) => n.to_string(),
        Value::UInt32(n) => n.to_string(),
        Value::SInt32(n) => n.to_string(),
        Value::UInt64(n) => n.to_string(),
        Value::SInt64(n) => n.to_string(),
        Value::Real32(n) => real_text(f64::from(*n), n.to_string()),
        Value::Real64(n) => real_text(*n, format!("{n:?}")),
        Value::DateTime(d) => d.to_string(),
        Value::Reference(p) => p.to_uri(),
        Value::Instance(inst) => {
            let mut s = String::new();
            instance(&mut s, inst, &InstanceFilter::all(), None);
            s
        }
        Value::Array(_) => String::new(),
    }
}

fn real_text(v: f64, shortest: String) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        (if v > 0.0 { "INF" } else { "-INF" }).into()
    } else {
        shortest
    }
}

/// Writes a value as VALUE, VALUE.ARRAY, VALUE.REFERENCE or VALUE.REFARRAY.
pub fn value(out: &mut String, v: &Value, ctx: Option<&PathContext>) {
    match v {
        Value::Reference(p) => value_reference(out, p, ctx),
        Value::Array(items) => {
            let refs = items
                .iter()
                .flatten()
                .next()
                .is_some_and(|v| matches!(v, Value::Reference(_)));
            out.push_str(if refs {
                "<VALUE.REFARRAY>"
            } else {
                "<VALUE.ARRAY>"
            });
            for item in items {
                match item {
                    None => out.push_str("<VALUE.NULL/>"),
                    Some(Value::Reference(p)) => value_reference(out, p, ctx),
                    Some(v) => scalar(out, v),
                }
            }
            out.push_str(if refs {
                "</VALUE.REFARRAY>"
            } else {
                "</VALUE.ARRAY>"
            });
        }
        v => scalar(out, v),
    }
}

fn scalar(out: &mut String, v: &Value) {
    out.push_str("<VALUE>");
    scalar_into(out, v);
    out.push_str("</VALUE>");
}

/// Writes `<LOCALNAMESPACEPATH>` with one NAMESPACE per segment.
pub fn local_namespace_path(out: &mut String, ns: &str) {
    out.push_str("<LOCALNAMESPACEPATH>");
    for seg in ns.split('/').filter(|s| !s.is_empty()) {
        out.push_str("<NAMESPACE");
        attr(out, "NAME", seg);
        out.push_str("/>");
    }
    out.push_str("</LOCALNAMESPACEPATH>");
}

fn namespace_path(out: &mut String, host: &str, ns: &str) {
    out.push_str("<NAMESPACEPATH><HOST>");
    text(out, host);
    out.push_str("</HOST>");
    local_namespace_path(out, ns);
    out.push_str("</NAMESPACEPATH>");
}

/// Writes `<INSTANCENAME>` with its key bindings.
pub fn instance_name(out: &mut String, path: &ObjectPath) {
    out.push_str("<INSTANCENAME");
    attr(out, "CLASSNAME", path.class_name.as_str());
    out.push('>');
    for key in &path.keys {
        out.push_str("<KEYBINDING");
        attr(out, "NAME", key.name.as_str());
        out.push('>');
        match &key.value {
            Value::Reference(p) => value_reference(out, p, None),
            v => {
                let (valuetype, ty) = match v.cim_type() {
                    Some(CimType::Boolean) => ("boolean", CimType::Boolean),
                    Some(t) if t.is_integer() || t.is_real() => ("numeric", t),
                    Some(t) => ("string", t),
                    None => ("string", CimType::String),
                };
                out.push_str("<KEYVALUE");
                attr(out, "VALUETYPE", valuetype);
                attr(out, "TYPE", ty.as_str());
                out.push('>');
                scalar_into(out, v);
                out.push_str("</KEYVALUE>");
            }
        }
        out.push_str("</KEYBINDING>");
    }
    out.push_str("</INSTANCENAME>");
}

/// Writes `<INSTANCEPATH>`, completing host and namespace from `ctx`.
pub fn instance_path(out: &mut String, path: &ObjectPath, ctx: &PathContext) {
    out.push_str("<INSTANCEPATH>");
    namespace_path(
        out,
        path.host.as_deref().unwrap_or(&ctx.host),
        path.namespace.as_deref().unwrap_or(&ctx.namespace),
    );
    instance_name(out, path);
    out.push_str("</INSTANCEPATH>");
}

/// Writes `<CLASSPATH>`, completing host and namespace from `ctx`.
pub fn class_path(out: &mut String, path: &ObjectPath, ctx: &PathContext) {
    out.push_str("<CLASSPATH>");
    namespace_path(
        out,
        path.host.as_deref().unwrap_or(&ctx.host),
        path.namespace.as_deref().unwrap_or(&ctx.namespace),
    );
    class_name(out, path.class_name.as_str());
    out.push_str("</CLASSPATH>");
}

/// Writes `<CLASSNAME NAME=.../>`.
pub fn class_name(out: &mut String, name: &str) {
    out.push_str("<CLASSNAME");
    attr(out, "NAME", name);
    out.push_str("/>");
}

/// Writes `<VALUE.REFERENCE>`: the most specific path form the path allows; with a
/// context, always a full INSTANCEPATH (as associator results need).
pub fn value_reference(out: &mut String, path: &ObjectPath, ctx: Option<&PathContext>) {
    out.push_str("<VALUE.REFERENCE>");
    let is_class = path.keys.is_empty();
    match (ctx, &path.host, &path.namespace) {
        (Some(ctx), _, _) if is_class => class_path(out, path, ctx),
        (Some(ctx), _, _) => instance_path(out, path, ctx),
        (None, Some(host), Some(ns)) => {
            let ctx = PathContext {
                host: host.clone(),
                namespace: ns.clone(),
            };
            if is_class {
                class_path(out, path, &ctx)
            } else {
                instance_path(out, path, &ctx)
            }
        }
        (None, _, Some(ns)) => {
            out.push_str(if is_class {
                "<LOCALCLASSPATH>"
            } else {
                "<LOCALINSTANCEPATH>"
            });
            local_namespace_path(out, ns);
            if is_class {
                class_name(out, path.class_name.as_str());
                out.push_str("</LOCALCLASSPATH>");
            } else {
                instance_name(out, path);
                out.push_str("</LOCALINSTANCEPATH>");
            }
        }
        (None, _, None) if is_class => class_name(out, path.class_name.as_str()),
        (None, _, None) => instance_name(out, path),
    }
    out.push_str("</VALUE.REFERENCE>");
}

/// Writes `<OBJECTPATH>` around a class path (`is_class`) or an instance path.
pub fn object_path(out: &mut String, path: &ObjectPath, ctx: &PathContext, is_class: bool) {
    out.push_str("<OBJECTPATH>");
    if is_class {
        class_path(out, path, ctx);
    } else {
        instance_path(out, path, ctx);
    }
    out.push_str("</OBJECTPATH>");
}

/// The flavor attributes that differ from DSP0201's defaults.
fn flavor_attrs(out: &mut String, flavor: &Flavor) {
    if !flavor.overridable {
        attr(out, "OVERRIDABLE", "false");
    }
    if !flavor.to_subclass {
        attr(out, "TOSUBCLASS", "false");
    }
    if flavor.translatable {
        attr(out, "TRANSLATABLE", "true");
    }
}

/// The type of a qualifier: from its value, else from its declaration.
fn qualifier_type(q: &Qualifier, ns: Option<&Namespace>) -> CimType {
    q.value
        .as_ref()
        .and_then(|v| match v {
            Value::Array(items) => items.iter().flatten().next().and_then(Value::cim_type),
            v => v.cim_type(),
        })
        .or_else(|| {
            ns.and_then(|ns| ns.qualifier(q.name.as_str()))
                .map(|d| d.ty)
        })
        .unwrap_or(CimType::String)
}

/// Writes one `<QUALIFIER>`.
pub fn qualifier(out: &mut String, q: &Qualifier, ns: Option<&Namespace>) {
    out.push_str("<QUALIFIER");
    attr(out, "NAME", q.name.as_str());
    attr(out, "TYPE", qualifier_type(q, ns).as_str());
    if q.propagated {
        attr(out, "PROPAGATED", "true");
    }
    flavor_attrs(out, &q.flavor);
    out.push('>');
    if let Some(v) = &q.value {
        value(out, v, None);
    }
    out.push_str("</QUALIFIER>");
}

fn qualifiers(out: &mut String, set: &QualifierSet, filter: &ClassFilter, ns: Option<&Namespace>) {
    if !filter.include_qualifiers {
        return;
    }
    for q in set.iter() {
        if filter.local_only && q.propagated {
            continue;
        }
        qualifier(out, q, ns);
    }
}

/// Writes `<QUALIFIER.DECLARATION>`.
pub fn qualifier_declaration(out: &mut String, d: &QualifierDecl) {
    out.push_str("<QUALIFIER.DECLARATION");
    attr(out, "NAME", d.name.as_str());
    attr(out, "TYPE", d.ty.as_str());
    if let Some(a) = &d.array {
        attr(out, "ISARRAY", "true");
        array_size_attr(out, a);
    }
    flavor_attrs(out, &d.flavor);
    out.push_str("><SCOPE");
    for (keyword, kind) in Scope::NAMED {
        let value = if d.scope.contains(kind) {
            "true"
        } else {
            "false"
        };
        attr(out, &keyword.to_ascii_uppercase(), value);
    }
    out.push_str("/>");
    if let Some(v) = &d.default {
        value(out, v, None);
    }
    out.push_str("</QUALIFIER.DECLARATION>");
}

/// The request flags that shape a class (GetClass, EnumerateClasses).
#[derive(Clone, Debug)]
pub struct ClassFilter {
    /// Only elements defined or overridden in the class itself.
    pub local_only: bool,
    /// Qualifiers of the class and its elements.
    pub include_qualifiers: bool,
    /// CLASSORIGIN attributes.
    pub include_class_origin: bool,
    /// Only these properties (PropertyList), if given.
    pub properties: Option<HashSet<Name>>,
}

fn array_size_attr(out: &mut String, a: &Array) {
    if let ArraySize::Fixed(n) | ArraySize::Bounded(n) = a.size {
        attr(out, "ARRAYSIZE", &n.to_string());
    }
}

fn embedded_attr(out: &mut String, qualifiers: &QualifierSet) {
    if qualifiers.get("EmbeddedInstance").is_some() {
        attr(out, "EmbeddedObject", "instance");
    } else if qualifiers.is_true("EmbeddedObject") {
        attr(out, "EmbeddedObject", "object");
    }
}

fn origin_attrs(out: &mut String, origin: &Name, propagated: bool, filter: &ClassFilter) {
    if filter.include_class_origin {
        attr(out, "CLASSORIGIN", origin.as_str());
    }
    if propagated {
        attr(out, "PROPAGATED", "true");
    }
}

fn class_property(out: &mut String, p: &Property, filter: &ClassFilter, ns: Option<&Namespace>) {
    if p.ty == CimType::Reference {
        out.push_str("<PROPERTY.REFERENCE");
        attr(out, "NAME", p.name.as_str());
        if let Some(rc) = &p.reference_class {
            attr(out, "REFERENCECLASS", rc.as_str());
        }
        origin_attrs(out, &p.class_origin, p.propagated, filter);
        out.push('>');
        qualifiers(out, &p.qualifiers, filter, ns);
        if let Some(Value::Reference(path)) = &p.default {
            value_reference(out, path, None);
        }
        out.push_str("</PROPERTY.REFERENCE>");
        return;
    }
    let element = if p.array.is_some() {
        "PROPERTY.ARRAY"
    } else {
        "PROPERTY"
    };
    out.push('<');
    out.push_str(element);
    attr(out, "NAME", p.name.as_str());
    attr(out, "TYPE", p.ty.as_str());
    if let Some(a) = &p.array {
        array_size_attr(out, a);
    }
    origin_attrs(out, &p.class_origin, p.propagated, filter);
    embedded_attr(out, &p.qualifiers);
    out.push('>');
    qualifiers(out, &p.qualifiers, filter, ns);
    if let Some(v) = &p.default {
        value(out, v, None);
    }
    out.push_str("</");
    out.push_str(element);
    out.push('>');
}

fn method(out: &mut String, m: &Method, filter: &ClassFilter, ns: Option<&Namespace>) {
    out.push_str("<METHOD");
    attr(out, "NAME", m.name.as_str());
    attr(out, "TYPE", m.return_type.as_str());
    origin_attrs(out, &m.class_origin, m.propagated, filter);
    out.push('>');
    qualifiers(out, &m.qualifiers, filter, ns);
    for p in m.parameters.values() {
        let element = match (p.ty == CimType::Reference, p.array.is_some()) {
            (true, true) => "PARAMETER.REFARRAY",
            (true, false) => "PARAMETER.REFERENCE",
            (false, true) => "PARAMETER.ARRAY",
            (false, false) => "PARAMETER",
        };
        out.push('<');
        out.push_str(element);
        attr(out, "NAME", p.name.as_str());
        if p.ty == CimType::Reference {
            if let Some(rc) = &p.reference_class {
                attr(out, "REFERENCECLASS", rc.as_str());
            }
        } else {
            attr(out, "TYPE", p.ty.as_str());
        }
        if let Some(a) = &p.array {
            array_size_attr(out, a);
        }
        out.push('>');
        qualifiers(out, &p.qualifiers, filter, ns);
        out.push_str("</");
        out.push_str(element);
        out.push('>');
    }
    out.push_str("</METHOD>");
}

/// Writes `<CLASS>` shaped by `filter`. `ns` supplies qualifier types for NULL values.
pub fn class(out: &mut String, c: &Class, filter: &ClassFilter, ns: Option<&Namespace>) {
    out.push_str("<CLASS");
    attr(out, "NAME", c.name.as_str());
    if let Some(sup) = &c.superclass {
        attr(out, "SUPERCLASS", sup.as_str());
    }
    out.push('>');
    qualifiers(out, &c.qualifiers, filter, ns);
    for p in c.properties.values() {
        if filter.local_only && p.propagated {
            continue;
        }
        if let Some(list) = &filter.properties {
            if !list.contains(&p.name) {
                continue;
            }
        }
        class_property(out, p, filter, ns);
    }
    for m in c.methods.values() {
        if filter.local_only && m.propagated {
            continue;
        }
        method(out, m, filter, ns);
    }
    out.push_str("</CLASS>");
}

/// Which properties of an instance are written, decided once per class of a result.
#[derive(Clone, Debug, Default)]
pub struct InstanceFilter {
    /// Only these properties; `None` means all.
    pub properties: Option<Arc<HashSet<Name>>>,
}

impl InstanceFilter {
    /// Every property.
    pub fn all() -> Self {
        InstanceFilter { properties: None }
    }

    /// Whether property `name` is written.
    pub fn includes(&self, name: &Name) -> bool {
        self.properties
            .as_ref()
            .is_none_or(|set| set.contains(name))
    }
}

/// Writes `<INSTANCE>`. With `class`, CLASSORIGIN attributes are written (IncludeClassOrigin).
pub fn instance(out: &mut String, inst: &Instance, filter: &InstanceFilter, class: Option<&Class>) {
    out.push_str("<INSTANCE");
    attr(out, "CLASSNAME", inst.class_name.as_str());
    out.push('>');
    for p in inst.properties.values() {
        if !filter.includes(&p.name) {
            continue;
        }
        let decl = class.and_then(|c| c.properties.get(p.name.as_str()));
        let origin = |out: &mut String| {
            if let Some(d) = decl {
                attr(out, "CLASSORIGIN", d.class_origin.as_str());
                if d.propagated {
                    attr(out, "PROPAGATED", "true");
                }
            }
        };
        if p.ty == CimType::Reference && !p.is_array {
            out.push_str("<PROPERTY.REFERENCE");
            attr(out, "NAME", p.name.as_str());
            if let Some(rc) = &p.reference_class {
                attr(out, "REFERENCECLASS", rc.as_str());
            }
            origin(out);
            out.push('>');
            if let Some(Value::Reference(path)) = &p.value {
                value_reference(out, path, None);
            }
            out.push_str("</PROPERTY.REFERENCE>");
            continue;
        }
        let element = if p.is_array {
            "PROPERTY.ARRAY"
        } else {
            "PROPERTY"
        };
        out.push('<');
        out.push_str(element);
        attr(out, "NAME", p.name.as_str());
        attr(out, "TYPE", p.ty.as_str());
        origin(out);
        let embedded = match &p.value {
            Some(Value::Instance(_)) => true,
            Some(Value::Array(items)) => items
                .iter()
                .flatten()
                .any(|v| matches!(v, Value::Instance(_))),
            _ => false,
        };
        if embedded {
            attr(out, "EmbeddedObject", "instance");
        } else if let Some(d) = decl {
            embedded_attr(out, &d.qualifiers);
        }
        out.push('>');
        if let Some(v) = &p.value {
            value(out, v, None);
        }
        out.push_str("</");
        out.push_str(element);
        out.push('>');
    }
    out.push_str("</INSTANCE>");
}

/// Writes `<ERROR CODE=... DESCRIPTION=.../>`.
pub fn error(out: &mut String, e: &CimError) {
    out.push_str("<ERROR");
    attr(out, "CODE", &e.code.code().to_string());
    attr(out, "DESCRIPTION", &e.description);
    out.push_str("/>");
}

/// The `<?xml ...?><CIM><MESSAGE><SIMPLERSP>` prologue of a response to message `id`.
pub fn response_start(out: &mut String, id: &str) {
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE");
    attr(out, "ID", id);
    out.push_str(" PROTOCOLVERSION=\"1.0\"><SIMPLERSP>");
}

/// Closes what [`response_start`] opened.
pub fn response_end(out: &mut String) {
    out.push_str("</SIMPLERSP></MESSAGE></CIM>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attributes() {
        let mut s = String::new();
        text(&mut s, "a<b&c>\u{1}");
        attr(&mut s, "X", "\"q\"\n");
        assert_eq!(s, "a&lt;b&amp;c&gt;&#x1; X=\"&quot;q&quot;&#xA;\"");
    }

    #[test]
    fn writes_instance_names_with_typed_key_values() {
        let path = ObjectPath::new(None, "KVM_ComputerSystem", Vec::new())
            .with_key("Name", "vm1")
            .with_key("Id", Value::UInt16(7))
            .with_key("On", true);
        let mut s = String::new();
        instance_name(&mut s, &path);
        assert_eq!(
            s,
            "<INSTANCENAME CLASSNAME=\"KVM_ComputerSystem\">\
             <KEYBINDING NAME=\"Id\"><KEYVALUE VALUETYPE=\"numeric\" TYPE=\"uint16\">7</KEYVALUE></KEYBINDING>\
             <KEYBINDING NAME=\"Name\"><KEYVALUE VALUETYPE=\"string\" TYPE=\"string\">vm1</KEYVALUE></KEYBINDING>\
             <KEYBINDING NAME=\"On\"><KEYVALUE VALUETYPE=\"boolean\" TYPE=\"boolean\">TRUE</KEYVALUE></KEYBINDING>\
             </INSTANCENAME>"
        );
    }
}
