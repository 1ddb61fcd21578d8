//! Instances of classes.

use crate::class::Class;
use crate::name::{Name, NameMap};
use crate::path::{KeyBinding, ObjectPath};
use crate::types::CimType;
use crate::value::Value;

/// One property value of an instance, with the type it was declared with (needed where the
/// value is NULL or an empty array).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceProperty {
    /// The property's name.
    pub name: Name,
    /// Its type.
    pub ty: CimType,
    /// Whether the property is an array.
    pub is_array: bool,
    /// For a reference, the class it refers to.
    pub reference_class: Option<Name>,
    /// The value (NULL is `None`).
    pub value: Option<Value>,
}

/// An instance of a class: a class name and property values.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// The instance's class.
    pub class_name: Name,
    /// Property values, in the class's property order where built from a class.
    pub properties: NameMap<InstanceProperty>,
}

impl Instance {
    /// An instance with no property values.
    pub fn new(class_name: impl Into<Name>) -> Self {
        Instance {
            class_name: class_name.into(),
            properties: NameMap::new(),
        }
    }

    /// An instance of `class` with every property set to its class default.
    pub fn from_class_defaults(class: &Class) -> Self {
        let mut inst = Instance {
            class_name: class.name.clone(),
            properties: NameMap::with_capacity(class.properties.len()),
        };
        for p in class.properties.values() {
            inst.properties.insert(
                p.name.clone(),
                InstanceProperty {
                    name: p.name.clone(),
                    ty: p.ty,
                    is_array: p.array.is_some(),
                    reference_class: p.reference_class.clone(),
                    value: p.default.clone(),
                },
            );
        }
        inst
    }

    /// The value of property `name`, if set and not NULL.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.properties.get(name).and_then(|p| p.value.as_ref())
    }

    /// Sets a non-null value, typed by the value itself; keeps the declared type of an
    /// existing property.
    pub fn set(&mut self, name: impl Into<Name>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        if let Some(p) = self.properties.get_mut(name.as_str()) {
            p.value = Some(value);
            return;
        }
        let ty = value.cim_type().unwrap_or(CimType::String);
        let is_array = value.is_array();
        self.properties.insert(
            name.clone(),
            InstanceProperty {
                name,
                ty,
                is_array,
                reference_class: None,
                value: Some(value),
            },
        );
    }

    /// The instance's path from the key properties of its class. Keys without a value are
    /// left out (callers validate completeness; see `Repository::create_instance`).
    pub fn path(&self, class: &Class, namespace: Option<&str>) -> ObjectPath {
        let keys = class
            .keys()
            .filter_map(|k| {
                self.get(k.name.as_str()).map(|v| KeyBinding {
                    name: k.name.clone(),
                    value: v.clone(),
                })
            })
            .collect();
        ObjectPath::new(namespace.map(str::to_string), self.class_name.clone(), keys)
    }
}
