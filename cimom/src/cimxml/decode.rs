//! CIM-XML decoding (DSP0201): element trees into values, paths, qualifiers, classes and
//! instances. Faults are CIM_ERR_INVALID_PARAMETER (or TYPE_MISMATCH for a value that does
//! not fit its type) with a description naming the element.

use std::sync::Arc;

use cim_schema::{
    duplicate_name, Array, ArrayKind, ArraySize, CimType, Class, Flavor, Instance,
    InstanceProperty, KeyBinding, Method, Name, NameMap, Namespace, ObjectPath, Parameter,
    Property, Qualifier, QualifierDecl, QualifierSet, Scope, Value,
};

use super::dom::{self, Element, XmlLimits};
use crate::error::{CimError, CimResult, StatusCode};

fn invalid(message: impl Into<String>) -> CimError {
    CimError::invalid_parameter(message)
}

/// The attribute `name` of `e`, or an error naming both.
pub fn required_attr<'e>(e: &'e Element, name: &str) -> CimResult<&'e str> {
    e.attr(name)
        .ok_or_else(|| invalid(format!("<{}> lacks the required attribute {name}", e.name)))
}

/// A boolean attribute (`true`/`false`, any case), or `default` when absent.
fn bool_attr(e: &Element, name: &str, default: bool) -> CimResult<bool> {
    match e.attr(name) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(invalid(format!(
            "attribute {name} of <{}> must be true or false, not '{v}'",
            e.name
        ))),
    }
}

/// Parses a CIM type name from a TYPE or PARAMTYPE attribute.
pub fn cim_type(name: &str) -> CimResult<CimType> {
    name.parse::<CimType>()
        .map_err(|_| invalid(format!("'{name}' is not a CIM type")))
}

pub use crate::dispatch::convert::parse_scalar;

/// Decodes CIM-XML elements. Holds the XML limits (for embedded objects, which are
/// documents of their own) and the namespace whose qualifier declarations give default
/// flavors.
pub struct Decoder<'a> {
    /// Limits for embedded documents.
    pub limits: &'a XmlLimits,
    /// Qualifier declarations, when decoding classes.
    pub namespace: Option<&'a Namespace>,
}

impl Decoder<'_> {
    /// A value element (VALUE, VALUE.ARRAY, VALUE.REFERENCE, VALUE.REFARRAY, VALUE.NULL)
    /// as type `ty`. `embedded` says the string holds an escaped INSTANCE.
    pub fn value(&self, e: &Element, ty: CimType, embedded: bool) -> CimResult<Option<Value>> {
        match e.name.as_ref() {
            "VALUE.NULL" => Ok(None),
            "VALUE" if embedded => Ok(Some(self.embedded_instance(&e.text)?)),
            "VALUE" => parse_scalar(&e.text, ty).map(Some),
            "VALUE.REFERENCE" => Ok(Some(Value::Reference(value_reference(e)?))),
            "VALUE.ARRAY" | "VALUE.REFARRAY" => {
                let mut items = Vec::with_capacity(e.children.len());
                for item in &e.children {
                    items.push(self.value(item, ty, embedded)?);
                }
                Ok(Some(Value::Array(items)))
            }
            other => Err(invalid(format!("<{other}> is not a value element"))),
        }
    }

    /// Parses the escaped text of an embedded instance (EmbeddedObject="instance").
    pub fn embedded_instance(&self, text: &str) -> CimResult<Value> {
        let root = dom::parse_cim_xml(text.as_bytes(), self.limits)
            .map_err(|e| invalid(format!("embedded instance: {e}")))?;
        match root.name.as_ref() {
            "INSTANCE" => Ok(Value::Instance(Box::new(self.instance(&root)?))),
            other => Err(invalid(format!(
                "embedded object must be an INSTANCE, not <{other}>"
            ))),
        }
    }

    /// `<INSTANCE>`. Qualifiers are ignored (DSP0200 deprecates instance qualifiers).
    pub fn instance(&self, e: &Element) -> CimResult<Instance> {
        let mut inst = Instance::new(required_attr(e, "CLASSNAME")?);
        for p in &e.children {
            let prop = match p.name.as_ref() {
                "QUALIFIER" => continue,
                "PROPERTY" | "PROPERTY.ARRAY" => {
                    let ty = cim_type(required_attr(p, "TYPE")?)?;
                    let embedded = p.attr("EmbeddedObject").is_some();
                    let is_array = p.name == "PROPERTY.ARRAY";
                    let value = match p.children.iter().find(|c| c.name != "QUALIFIER") {
                        Some(v) => self.value(v, ty, embedded)?,
                        None => None,
                    };
                    if matches!(&value, Some(Value::Array(_))) != is_array && value.is_some() {
                        return Err(CimError::new(
                            StatusCode::TypeMismatch,
                            format!(
                                "property {}: array and scalar mixed",
                                required_attr(p, "NAME")?
                            ),
                        ));
                    }
                    InstanceProperty {
                        name: Name::new(required_attr(p, "NAME")?),
                        ty,
                        is_array,
                        reference_class: None,
                        value,
                    }
                }
                "PROPERTY.REFERENCE" => {
                    let value = match p.child("VALUE.REFERENCE") {
                        Some(v) => Some(Value::Reference(value_reference(v)?)),
                        None => None,
                    };
                    InstanceProperty {
                        name: Name::new(required_attr(p, "NAME")?),
                        ty: CimType::Reference,
                        is_array: false,
                        reference_class: p.attr("REFERENCECLASS").map(Name::new),
                        value,
                    }
                }
                other => return Err(invalid(format!("<{other}> is not allowed in <INSTANCE>"))),
            };
            if inst.properties.contains(prop.name.as_str()) {
                return Err(invalid(format!("property {} is given twice", prop.name)));
            }
            inst.properties.insert(prop.name.clone(), prop);
        }
        Ok(inst)
    }

    /// `<QUALIFIER>`: flavors not given explicitly come from the declaration.
    pub fn qualifier(&self, e: &Element) -> CimResult<Qualifier> {
        let name = required_attr(e, "NAME")?;
        let ty = cim_type(required_attr(e, "TYPE")?)?;
        let decl = self.namespace.and_then(|ns| ns.qualifier(name));
        let base = decl.map(|d| d.flavor).unwrap_or_default();
        let flavor = Flavor {
            overridable: bool_attr(e, "OVERRIDABLE", base.overridable)?,
            to_subclass: bool_attr(e, "TOSUBCLASS", base.to_subclass)?,
            translatable: bool_attr(e, "TRANSLATABLE", base.translatable)?,
        };
        let value = match e.children.first() {
            Some(v) => self.value(v, ty, false)?,
            None => None,
        };
        Ok(Qualifier {
            name: Name::new(name),
            value,
            flavor,
            propagated: bool_attr(e, "PROPAGATED", false)?,
        })
    }

    fn qualifiers(&self, e: &Element) -> CimResult<QualifierSet> {
        let mut set = QualifierSet::new();
        for q in e.children_named("QUALIFIER") {
            let q = self.qualifier(q)?;
            if !q.propagated {
                set.insert(q);
            }
        }
        Ok(set)
    }

    /// `<CLASS>` in declared form: inherited (PROPAGATED) elements are dropped, since the
    /// repository re-derives them from the superclass.
    pub fn class(&self, e: &Element) -> CimResult<Class> {
        let name = Name::new(required_attr(e, "NAME")?);
        let mut class = Class::new(name.clone(), e.attr("SUPERCLASS").map(Name::new));
        class.qualifiers = self.qualifiers(e)?;
        for c in &e.children {
            match c.name.as_ref() {
                "QUALIFIER" => {}
                "PROPERTY" | "PROPERTY.ARRAY" | "PROPERTY.REFERENCE" => {
                    if bool_attr(c, "PROPAGATED", false)? {
                        continue;
                    }
                    let p = self.class_property(c, &name)?;
                    class.properties.insert(p.name.clone(), Arc::new(p));
                }
                "METHOD" => {
                    if bool_attr(c, "PROPAGATED", false)? {
                        continue;
                    }
                    let m = self.method(c, &name)?;
                    class.methods.insert(m.name.clone(), Arc::new(m));
                }
                other => return Err(invalid(format!("<{other}> is not allowed in <CLASS>"))),
            }
        }
        Ok(class)
    }

    fn class_property(&self, e: &Element, origin: &Name) -> CimResult<Property> {
        let name = required_attr(e, "NAME")?;
        let qualifiers = self.qualifiers(e)?;
        let value_elem = e.children.iter().find(|c| c.name != "QUALIFIER");
        let mut p = if e.name == "PROPERTY.REFERENCE" {
            let mut p = Property::new(name, CimType::Reference, origin.clone());
            p.reference_class = e.attr("REFERENCECLASS").map(Name::new);
            p
        } else {
            Property::new(name, cim_type(required_attr(e, "TYPE")?)?, origin.clone())
        };
        if e.name == "PROPERTY.ARRAY" {
            p.array = Some(array_of(e, &qualifiers)?);
        }
        if let Some(v) = value_elem {
            p.default = self.value(v, p.ty, false)?;
        }
        p.qualifiers = qualifiers;
        Ok(p)
    }

    fn method(&self, e: &Element, origin: &Name) -> CimResult<Method> {
        let mut parameters = NameMap::new();
        for c in &e.children {
            let (ty, is_array) = match c.name.as_ref() {
                "QUALIFIER" => continue,
                "PARAMETER" => (cim_type(required_attr(c, "TYPE")?)?, false),
                "PARAMETER.ARRAY" => (cim_type(required_attr(c, "TYPE")?)?, true),
                "PARAMETER.REFERENCE" => (CimType::Reference, false),
                "PARAMETER.REFARRAY" => (CimType::Reference, true),
                other => return Err(invalid(format!("<{other}> is not allowed in <METHOD>"))),
            };
            let qualifiers = self.qualifiers(c)?;
            let p = Parameter {
                name: Name::new(required_attr(c, "NAME")?),
                ty,
                array: if is_array {
                    Some(array_of(c, &qualifiers)?)
                } else {
                    None
                },
                reference_class: c.attr("REFERENCECLASS").map(Name::new),
                qualifiers,
            };
            parameters.insert(p.name.clone(), p);
        }
        Ok(Method {
            name: Name::new(required_attr(e, "NAME")?),
            return_type: cim_type(e.attr("TYPE").unwrap_or("uint32"))?,
            parameters,
            qualifiers: self.qualifiers(e)?,
            class_origin: origin.clone(),
            propagated: false,
        })
    }

    /// `<QUALIFIER.DECLARATION>`.
    pub fn qualifier_declaration(&self, e: &Element) -> CimResult<QualifierDecl> {
        let ty = cim_type(required_attr(e, "TYPE")?)?;
        if ty == CimType::Reference {
            return Err(invalid("a qualifier cannot have type reference"));
        }
        let is_array = bool_attr(e, "ISARRAY", false)?;
        // A declaration's ArrayType is a qualifier it cannot carry: Bag by default.
        let array = if is_array {
            Some(array_of(e, &QualifierSet::new())?)
        } else {
            None
        };
        let mut scope = Scope::NONE;
        if let Some(s) = e.child("SCOPE") {
            // The attributes are the scope keywords in capitals; attr() ignores case.
            for (keyword, kind) in Scope::NAMED {
                if bool_attr(s, keyword, false)? {
                    scope = scope.union(kind);
                }
            }
        }
        let default = match e.children.iter().find(|c| c.name != "SCOPE") {
            Some(v) => self.value(v, ty, false)?,
            None => None,
        };
        if default.as_ref().is_some_and(|v| v.is_array() != is_array) {
            return Err(CimError::new(
                StatusCode::TypeMismatch,
                "the default value's arrayness does not match ISARRAY",
            ));
        }
        Ok(QualifierDecl {
            name: Name::new(required_attr(e, "NAME")?),
            ty,
            array,
            default,
            scope,
            flavor: Flavor {
                overridable: bool_attr(e, "OVERRIDABLE", true)?,
                to_subclass: bool_attr(e, "TOSUBCLASS", true)?,
                translatable: bool_attr(e, "TRANSLATABLE", false)?,
            },
        })
    }
}

fn array_of(e: &Element, qualifiers: &QualifierSet) -> CimResult<Array> {
    let size = match e.attr("ARRAYSIZE") {
        Some(n) => ArraySize::Fixed(
            n.parse()
                .map_err(|_| invalid(format!("ARRAYSIZE '{n}' is not a number")))?,
        ),
        None => ArraySize::Unbounded,
    };
    let kind = qualifiers
        .str("ArrayType")
        .and_then(ArrayKind::parse)
        .unwrap_or_default();
    Ok(Array { size, kind })
}

/// `<LOCALNAMESPACEPATH>`: the NAMESPACE segments joined with `/`.
pub fn local_namespace_path(e: &Element) -> CimResult<String> {
    let segments = e
        .children_named("NAMESPACE")
        .map(|n| required_attr(n, "NAME"))
        .collect::<CimResult<Vec<_>>>()?;
    if segments.is_empty() {
        return Err(invalid("<LOCALNAMESPACEPATH> has no <NAMESPACE>"));
    }
    Ok(segments.join("/"))
}

fn namespace_path(e: &Element) -> CimResult<(String, String)> {
    let host = e
        .child("HOST")
        .ok_or_else(|| invalid("<NAMESPACEPATH> lacks <HOST>"))?
        .text
        .trim()
        .to_string();
    let ns = local_namespace_path(
        e.child("LOCALNAMESPACEPATH")
            .ok_or_else(|| invalid("<NAMESPACEPATH> lacks <LOCALNAMESPACEPATH>"))?,
    )?;
    Ok((host, ns))
}

fn keyvalue(e: &Element) -> CimResult<Value> {
    if let Some(ty) = e.attr("TYPE") {
        return parse_scalar(&e.text, cim_type(ty)?);
    }
    let text = e.text.trim();
    match e.attr("VALUETYPE").unwrap_or("string") {
        "string" => Ok(Value::String(e.text.as_ref().into())),
        "boolean" => parse_scalar(text, CimType::Boolean),
        "numeric" => {
            if let Ok(v) = text.parse::<i128>() {
                Ok(if v < 0 {
                    Value::integer(CimType::SInt64, v)
                } else {
                    Value::integer(CimType::UInt64, v)
                }
                .ok_or_else(|| invalid(format!("key value {v} is out of range")))?)
            } else {
                parse_scalar(text, CimType::Real64)
            }
        }
        other => Err(invalid(format!(
            "VALUETYPE '{other}' is not string, boolean or numeric"
        ))),
    }
}

/// `<INSTANCENAME>` as a local path.
pub fn instance_name(e: &Element) -> CimResult<ObjectPath> {
    if e.name != "INSTANCENAME" {
        return Err(invalid(format!(
            "expected <INSTANCENAME>, found <{}>",
            e.name
        )));
    }
    let class = required_attr(e, "CLASSNAME")?;
    let mut keys = Vec::with_capacity(e.children.len());
    for c in &e.children {
        let (name, value) = match c.name.as_ref() {
            "KEYBINDING" => {
                let name = required_attr(c, "NAME")?;
                let v = match c.children.first() {
                    Some(k) if k.name == "KEYVALUE" => keyvalue(k)?,
                    Some(r) if r.name == "VALUE.REFERENCE" => Value::Reference(value_reference(r)?),
                    _ => return Err(invalid(format!("key binding {name} has no value"))),
                };
                (name, v)
            }
            // A single unnamed key (DSP0201 allows it for one-key classes); the name is
            // filled in from the class by the dispatcher.
            "KEYVALUE" => ("", keyvalue(c)?),
            "VALUE.REFERENCE" => ("", Value::Reference(value_reference(c)?)),
            other => {
                return Err(invalid(format!(
                    "<{other}> is not allowed in <INSTANCENAME>"
                )))
            }
        };
        keys.push(KeyBinding {
            name: Name::new(name),
            value,
        });
    }
    match duplicate_name(&keys, |k| k.name.as_str()) {
        Some(k) if k.name.as_str().is_empty() => {
            Err(invalid("an instance name has more than one unnamed key"))
        }
        Some(k) => Err(invalid(format!("key {} is given twice", k.name))),
        None => Ok(ObjectPath::new(None, class, keys)),
    }
}

/// `<CLASSNAME NAME=...>`.
pub fn class_name(e: &Element) -> CimResult<Name> {
    if e.name != "CLASSNAME" {
        return Err(invalid(format!("expected <CLASSNAME>, found <{}>", e.name)));
    }
    Ok(Name::new(required_attr(e, "NAME")?))
}

/// `<VALUE.REFERENCE>` (or a bare path element) as a path; class paths have no keys.
pub fn value_reference(e: &Element) -> CimResult<ObjectPath> {
    let inner = if e.name == "VALUE.REFERENCE" {
        e.children
            .first()
            .ok_or_else(|| invalid("<VALUE.REFERENCE> is empty"))?
    } else {
        e
    };
    object_path(inner)
}

/// Any of CLASSPATH, LOCALCLASSPATH, CLASSNAME, INSTANCEPATH, LOCALINSTANCEPATH,
/// INSTANCENAME as a path.
pub fn object_path(e: &Element) -> CimResult<ObjectPath> {
    let child = |name: &str| {
        e.child(name)
            .ok_or_else(|| invalid(format!("<{}> lacks <{name}>", e.name)))
    };
    match e.name.as_ref() {
        "INSTANCENAME" => instance_name(e),
        "CLASSNAME" => Ok(ObjectPath::class(None, class_name(e)?)),
        "INSTANCEPATH" => {
            let (host, ns) = namespace_path(child("NAMESPACEPATH")?)?;
            let mut p = instance_name(child("INSTANCENAME")?)?;
            p.host = Some(host).filter(|h| !h.is_empty());
            p.namespace = Some(ns);
            Ok(p)
        }
        "LOCALINSTANCEPATH" => {
            let mut p = instance_name(child("INSTANCENAME")?)?;
            p.namespace = Some(local_namespace_path(child("LOCALNAMESPACEPATH")?)?);
            Ok(p)
        }
        "CLASSPATH" => {
            let (host, ns) = namespace_path(child("NAMESPACEPATH")?)?;
            let mut p = ObjectPath::class(Some(ns), class_name(child("CLASSNAME")?)?);
            p.host = Some(host).filter(|h| !h.is_empty());
            Ok(p)
        }
        "LOCALCLASSPATH" => Ok(ObjectPath::class(
            Some(local_namespace_path(child("LOCALNAMESPACEPATH")?)?),
            class_name(child("CLASSNAME")?)?,
        )),
        "OBJECTPATH" => object_path(
            e.children
                .first()
                .ok_or_else(|| invalid("<OBJECTPATH> is empty"))?,
        ),
        other => Err(invalid(format!("<{other}> is not an object path"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: XmlLimits = XmlLimits {
        max_depth: 32,
        max_elements: 1000,
    };

    fn parse(s: &str) -> Element<'_> {
        dom::parse(s.as_bytes(), &LIMITS).unwrap()
    }

    #[test]
    fn scalars_parse_by_type_and_refuse_what_does_not_fit() {
        assert_eq!(parse_scalar(" 42 ", CimType::UInt8), Ok(Value::UInt8(42)));
        assert_eq!(parse_scalar("-1", CimType::SInt64), Ok(Value::SInt64(-1)));
        assert_eq!(
            parse_scalar("TRUE", CimType::Boolean),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            parse_scalar(" a ", CimType::String),
            Ok(Value::String(" a ".into()))
        );
        assert_eq!(
            parse_scalar("256", CimType::UInt8).unwrap_err().code,
            StatusCode::TypeMismatch
        );
        assert_eq!(
            parse_scalar("x", CimType::Real64).unwrap_err().code,
            StatusCode::TypeMismatch
        );
    }

    #[test]
    fn instance_names_with_typed_untyped_and_reference_keys() {
        let e = parse(
            r#"<INSTANCENAME CLASSNAME="A"><KEYBINDING NAME="n"><KEYVALUE VALUETYPE="numeric">7</KEYVALUE></KEYBINDING>
               <KEYBINDING NAME="r"><VALUE.REFERENCE><LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="virt"/></LOCALNAMESPACEPATH>
               <INSTANCENAME CLASSNAME="B"><KEYBINDING NAME="s"><KEYVALUE>x</KEYVALUE></KEYBINDING></INSTANCENAME></LOCALINSTANCEPATH></VALUE.REFERENCE></KEYBINDING></INSTANCENAME>"#,
        );
        let p = instance_name(&e).unwrap();
        assert_eq!(p.to_uri(), r#"/:A.n=7,r="/root/virt:B.s=\"x\"""#);
    }

    #[test]
    fn instances_with_arrays_nulls_and_embedded_instances() {
        let e = parse(
            r#"<INSTANCE CLASSNAME="C"><PROPERTY.ARRAY NAME="a" TYPE="uint16"><VALUE.ARRAY><VALUE>1</VALUE><VALUE.NULL/></VALUE.ARRAY></PROPERTY.ARRAY>
               <PROPERTY NAME="e" TYPE="string" EmbeddedObject="instance"><VALUE>&lt;INSTANCE CLASSNAME="D"&gt;&lt;PROPERTY NAME="x" TYPE="boolean"&gt;&lt;VALUE&gt;false&lt;/VALUE&gt;&lt;/PROPERTY&gt;&lt;/INSTANCE&gt;</VALUE></PROPERTY>
               <PROPERTY NAME="n" TYPE="string"/></INSTANCE>"#,
        );
        let d = Decoder {
            limits: &LIMITS,
            namespace: None,
        };
        let inst = d.instance(&e).unwrap();
        assert_eq!(
            inst.get("a"),
            Some(&Value::Array(vec![Some(Value::UInt16(1)), None]))
        );
        let Some(Value::Instance(embedded)) = inst.get("e") else {
            panic!("not embedded: {inst:?}")
        };
        assert_eq!(embedded.get("x"), Some(&Value::Boolean(false)));
        assert!(inst.properties.get("n").unwrap().value.is_none());
    }
}
