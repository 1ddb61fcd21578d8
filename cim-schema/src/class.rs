//! Classes and their features: properties, references, methods and parameters (DSP0004 5.1).

use std::sync::Arc;

use crate::name::{Name, NameMap};
use crate::qualifier::QualifierSet;
use crate::types::{Array, CimType};
use crate::value::Value;

/// A property or reference of a class.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    /// The property's name.
    pub name: Name,
    /// Its type; `Reference` for references.
    pub ty: CimType,
    /// Present if the property is an array.
    pub array: Option<Array>,
    /// For a reference, the class it refers to.
    pub reference_class: Option<Name>,
    /// The default value given in the class declaration.
    pub default: Option<Value>,
    /// Local and inherited qualifiers.
    pub qualifiers: QualifierSet,
    /// The class that declared the property or last overrode it.
    pub class_origin: Name,
    /// True when inherited unchanged from a superclass.
    pub propagated: bool,
}

impl Property {
    /// A new local scalar property with no qualifiers.
    pub fn new(name: impl Into<Name>, ty: CimType, class_origin: impl Into<Name>) -> Self {
        Property {
            name: name.into(),
            ty,
            array: None,
            reference_class: None,
            default: None,
            qualifiers: QualifierSet::new(),
            class_origin: class_origin.into(),
            propagated: false,
        }
    }

    /// Whether the property is a key (`[Key]`).
    pub fn is_key(&self) -> bool {
        self.qualifiers.is_true("Key")
    }

    /// Whether the property is a reference.
    pub fn is_reference(&self) -> bool {
        self.ty == CimType::Reference
    }

    /// The class named by the EmbeddedInstance qualifier, if any.
    pub fn embedded_instance(&self) -> Option<&str> {
        self.qualifiers.str("EmbeddedInstance")
    }
}

/// A parameter of a method.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    /// The parameter's name.
    pub name: Name,
    /// Its type; `Reference` for references.
    pub ty: CimType,
    /// Present if the parameter is an array.
    pub array: Option<Array>,
    /// For a reference, the class it refers to.
    pub reference_class: Option<Name>,
    /// Its qualifiers (`IN`, `OUT`, `EmbeddedInstance`, ...).
    pub qualifiers: QualifierSet,
}

impl Parameter {
    /// Whether the caller supplies it: the `In` qualifier, true unless said otherwise.
    pub fn is_in(&self) -> bool {
        !matches!(self.qualifiers.value("In"), Some(Value::Boolean(false)))
    }

    /// Whether the method returns it (`Out`).
    pub fn is_out(&self) -> bool {
        self.qualifiers.is_true("Out")
    }
}

/// A method of a class.
#[derive(Clone, Debug, PartialEq)]
pub struct Method {
    /// The method's name.
    pub name: Name,
    /// The type of the return value (never an array or a reference in DSP0004 2.x).
    pub return_type: CimType,
    /// Parameters in declaration order.
    pub parameters: NameMap<Parameter>,
    /// Local and inherited qualifiers.
    pub qualifiers: QualifierSet,
    /// The class that declared the method or last overrode it.
    pub class_origin: Name,
    /// True when inherited unchanged from a superclass.
    pub propagated: bool,
}

/// A class, association or indication, with its inheritance resolved: `properties` and
/// `methods` include inherited ones (in superclass-first order) and `qualifiers` the
/// propagated ones, each marked with `propagated`.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    /// The class name, `Schema_Name`.
    pub name: Name,
    /// The direct superclass.
    pub superclass: Option<Name>,
    /// Class qualifiers.
    pub qualifiers: QualifierSet,
    /// Properties and references. Shared with subclasses that inherit them unchanged.
    pub properties: NameMap<Arc<Property>>,
    /// Methods. Shared with subclasses that inherit them unchanged.
    pub methods: NameMap<Arc<Method>>,
}

impl Class {
    /// An empty class.
    pub fn new(name: impl Into<Name>, superclass: Option<Name>) -> Self {
        Class {
            name: name.into(),
            superclass,
            qualifiers: QualifierSet::new(),
            properties: NameMap::new(),
            methods: NameMap::new(),
        }
    }

    /// Whether this is an association (`[Association]`, inherited by subclasses).
    pub fn is_association(&self) -> bool {
        self.qualifiers.is_true("Association")
    }

    /// Whether this is an indication (`[Indication]`).
    pub fn is_indication(&self) -> bool {
        self.qualifiers.is_true("Indication")
    }

    /// Whether instances of exactly this class are forbidden (`[Abstract]`, not inherited).
    pub fn is_abstract(&self) -> bool {
        self.qualifiers.is_true("Abstract")
    }

    /// The property named `name`.
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.get(name).map(|p| &**p)
    }

    /// The method named `name`.
    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods.get(name).map(|m| &**m)
    }

    /// The key properties, in declaration order.
    pub fn keys(&self) -> impl Iterator<Item = &Property> {
        self.properties
            .values()
            .map(|p| &**p)
            .filter(|p| p.is_key())
    }

    /// The reference properties (the roles of an association).
    pub fn references(&self) -> impl Iterator<Item = &Property> {
        self.properties
            .values()
            .map(|p| &**p)
            .filter(|p| p.is_reference())
    }

    /// Properties declared or overridden by this class (not inherited unchanged).
    pub fn local_properties(&self) -> impl Iterator<Item = &Property> {
        self.properties
            .values()
            .map(|p| &**p)
            .filter(|p| !p.propagated)
    }

    /// Removes the qualifier `name` from the class and from every property, method and
    /// parameter (to leave out prose, or to answer a request with IncludeQualifiers=false
    /// one qualifier at a time). Shared features are copied only where they change.
    pub fn remove_qualifier_everywhere(&mut self, name: &str) {
        self.qualifiers.remove(name);
        for p in self.properties.values_mut() {
            if p.qualifiers.get(name).is_some() {
                Arc::make_mut(p).qualifiers.remove(name);
            }
        }
        for m in self.methods.values_mut() {
            let has = m.qualifiers.get(name).is_some()
                || m.parameters
                    .values()
                    .any(|p| p.qualifiers.get(name).is_some());
            if has {
                let m = Arc::make_mut(m);
                m.qualifiers.remove(name);
                for p in m.parameters.values_mut() {
                    p.qualifiers.remove(name);
                }
            }
        }
    }

    /// Methods declared or overridden by this class.
    pub fn local_methods(&self) -> impl Iterator<Item = &Method> {
        self.methods
            .values()
            .map(|m| &**m)
            .filter(|m| !m.propagated)
    }
}
