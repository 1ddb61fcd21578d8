//! The repository: namespaces of qualifier declarations, resolved classes and static
//! instances, with the indexes a CIM server needs (subclasses, association roles).
//!
//! Classes are added as declared (only their own features) and stored resolved: inherited
//! properties, methods and qualifiers are merged in by the flavor rules of DSP0004 5.6.1.3,
//! and whatever DSP0004 forbids is refused with an [`Error`] naming the element.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::class::{Class, Method, Parameter, Property};
use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::name::{Name, NameMap};
use crate::path::ObjectPath;
use crate::qualifier::{Qualifier, QualifierDecl, QualifierSet, Scope};
use crate::types::CimType;
use crate::value::Value;

/// An association that can reach a class through one of its references.
#[derive(Clone, Debug, PartialEq)]
pub struct AssociationRole {
    /// The association class.
    pub association: Name,
    /// The reference property (the role) whose declared class is the indexed class.
    pub role: Name,
}

/// One namespace: qualifier declarations, classes and static instances.
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    /// The namespace name, e.g. `root/virt`.
    pub name: Name,
    qualifiers: NameMap<QualifierDecl>,
    classes: NameMap<Arc<Class>>,
    subclasses: NameMap<Vec<Name>>,
    roles: NameMap<Vec<AssociationRole>>,
    instances: IndexMap<ObjectPath, Instance>,
}

impl Namespace {
    fn new(name: Name) -> Self {
        Namespace {
            name,
            qualifiers: NameMap::new(),
            classes: NameMap::new(),
            subclasses: NameMap::new(),
            roles: NameMap::new(),
            instances: IndexMap::new(),
        }
    }

    /// The qualifier declaration named `name`.
    pub fn qualifier(&self, name: &str) -> Option<&QualifierDecl> {
        self.qualifiers.get(name)
    }

    /// All qualifier declarations, in declaration order.
    pub fn qualifiers(&self) -> impl ExactSizeIterator<Item = &QualifierDecl> {
        self.qualifiers.values()
    }

    /// The resolved class named `name`.
    pub fn class(&self, name: &str) -> Option<&Arc<Class>> {
        self.classes.get(name)
    }

    /// All classes, superclasses before subclasses (the order they were added).
    pub fn classes(&self) -> impl ExactSizeIterator<Item = &Arc<Class>> {
        self.classes.values()
    }

    /// The direct subclasses of `name`, or the classes without a superclass for `None`.
    pub fn subclasses(&self, name: Option<&str>) -> Vec<&Arc<Class>> {
        match name {
            Some(n) => self
                .subclasses
                .get(n)
                .map(|v| {
                    v.iter()
                        .filter_map(|c| self.classes.get(c.as_str()))
                        .collect()
                })
                .unwrap_or_default(),
            None => self
                .classes
                .values()
                .filter(|c| c.superclass.is_none())
                .collect(),
        }
    }

    /// `name` and all classes derived from it, depth first.
    pub fn descendants(&self, name: &str) -> Vec<&Arc<Class>> {
        let mut out = Vec::new();
        let mut stack: Vec<&Arc<Class>> = self.classes.get(name).into_iter().collect();
        while let Some(c) = stack.pop() {
            out.push(c);
            let mut subs = self.subclasses(Some(c.name.as_str()));
            subs.reverse();
            stack.extend(subs);
        }
        out
    }

    /// Whether `class` is `ancestor` or derives from it.
    pub fn is_subclass_of(&self, class: &str, ancestor: &str) -> bool {
        let mut current = self.classes.get(class);
        while let Some(c) = current {
            if c.name.matches(ancestor) {
                return true;
            }
            current = c
                .superclass
                .as_ref()
                .and_then(|s| self.classes.get(s.as_str()));
        }
        false
    }

    /// The associations whose references are declared with class `name` (not its
    /// superclasses), with the role through which they reach it.
    pub fn association_roles(&self, name: &str) -> &[AssociationRole] {
        self.roles.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The associations that can reach an instance of `name`: roles declared with `name` or
    /// any of its superclasses.
    pub fn associations_reaching(&self, name: &str) -> Vec<&AssociationRole> {
        let mut out = Vec::new();
        let mut current = self.classes.get(name);
        while let Some(c) = current {
            out.extend(self.association_roles(c.name.as_str()));
            current = c
                .superclass
                .as_ref()
                .and_then(|s| self.classes.get(s.as_str()));
        }
        out
    }

    /// The static instance at `path` (host and namespace ignored).
    pub fn instance(&self, path: &ObjectPath) -> Option<&Instance> {
        self.instances.get(&path.local())
    }

    /// All static instances with their paths, in creation order.
    pub fn instances(&self) -> impl Iterator<Item = (&ObjectPath, &Instance)> {
        self.instances.iter()
    }

    /// Number of static instances.
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }
}

/// Namespaces of classes, qualifier declarations and static instances.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Repository {
    namespaces: NameMap<Namespace>,
}

impl Repository {
    /// An empty repository.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a namespace if it does not exist yet.
    pub fn create_namespace(&mut self, name: &str) -> &mut Namespace {
        let name = name.trim_matches('/');
        if !self.namespaces.contains(name) {
            self.namespaces
                .insert(Name::new(name), Namespace::new(Name::new(name)));
        }
        self.namespaces
            .get_mut(name)
            .expect("namespace was just created")
    }

    /// Removes a namespace with everything in it; returns whether it existed.
    pub fn remove_namespace(&mut self, name: &str) -> bool {
        self.namespaces.remove(name.trim_matches('/')).is_some()
    }

    /// The namespace named `name`.
    pub fn namespace(&self, name: &str) -> Result<&Namespace> {
        self.namespaces
            .get(name.trim_matches('/'))
            .ok_or_else(|| Error::NamespaceNotFound(name.to_string()))
    }

    fn namespace_mut(&mut self, name: &str) -> Result<&mut Namespace> {
        self.namespaces
            .get_mut(name.trim_matches('/'))
            .ok_or_else(|| Error::NamespaceNotFound(name.to_string()))
    }

    /// All namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.values()
    }

    /// The class `name` in namespace `ns`.
    pub fn class(&self, ns: &str, name: &str) -> Result<&Arc<Class>> {
        self.namespace(ns)?
            .class(name)
            .ok_or_else(|| Error::ClassNotFound(name.to_string()))
    }

    /// Adds a qualifier declaration. Declaring the same qualifier again identically is
    /// allowed (DMTF schemas are often compiled on top of each other); differently is not.
    pub fn set_qualifier(&mut self, ns: &str, decl: QualifierDecl) -> Result<()> {
        let namespace = self.create_namespace(ns);
        if let Some(existing) = namespace.qualifiers.get(decl.name.as_str()) {
            if *existing != decl {
                return Err(Error::QualifierAlreadyDeclared(decl.name.to_string()));
            }
            return Ok(());
        }
        namespace.qualifiers.insert(decl.name.clone(), decl);
        Ok(())
    }

    /// Adds a class given as declared: only its own properties, methods and qualifiers, each
    /// with `propagated == false`. Returns the resolved class.
    pub fn add_class(&mut self, ns: &str, declared: Class) -> Result<Arc<Class>> {
        let namespace = self.namespace(ns)?;
        if namespace.classes.contains(declared.name.as_str()) {
            return Err(Error::ClassAlreadyExists(declared.name.to_string()));
        }
        let resolved = Arc::new(Resolver { ns: namespace }.resolve(declared)?);
        let namespace = self.namespace_mut(ns)?;
        if let Some(sup) = &resolved.superclass {
            let subs = namespace.subclasses.get_or_insert_with(sup, Vec::new);
            subs.push(resolved.name.clone());
        }
        if resolved.is_association() {
            for r in resolved.references() {
                let target = r
                    .reference_class
                    .clone()
                    .unwrap_or_else(|| resolved.name.clone());
                let role = AssociationRole {
                    association: resolved.name.clone(),
                    role: r.name.clone(),
                };
                namespace
                    .roles
                    .get_or_insert_with(&target, Vec::new)
                    .push(role);
            }
        }
        namespace
            .classes
            .insert(resolved.name.clone(), resolved.clone());
        Ok(resolved)
    }

    /// Removes a qualifier declaration; returns it, if it existed. Classes that use it
    /// keep their qualifier values.
    pub fn remove_qualifier(&mut self, ns: &str, name: &str) -> Result<Option<QualifierDecl>> {
        Ok(self.namespace_mut(ns)?.qualifiers.remove(name))
    }

    /// Removes a class with its index entries and returns it. The caller checks that no
    /// class derives from it or refers to it: those would be left pointing at nothing.
    pub fn remove_class(&mut self, ns: &str, name: &str) -> Result<Arc<Class>> {
        let namespace = self.namespace_mut(ns)?;
        let class = namespace
            .classes
            .remove(name)
            .ok_or_else(|| Error::ClassNotFound(name.to_string()))?;
        if let Some(sup) = &class.superclass {
            if let Some(subs) = namespace.subclasses.get_mut(sup.as_str()) {
                subs.retain(|s| s != &class.name);
            }
        }
        namespace.subclasses.remove(name);
        for roles in namespace.roles.values_mut() {
            roles.retain(|r| r.association != class.name);
        }
        Ok(class)
    }

    /// Checks an instance against its class as [`Repository::create_instance`] does and
    /// returns it completed with class defaults, with its path, without storing it.
    pub fn complete_instance(
        &self,
        ns: &str,
        instance: Instance,
    ) -> Result<(ObjectPath, Instance)> {
        let namespace = self.namespace(ns)?;
        let class = namespace
            .class(instance.class_name.as_str())
            .ok_or_else(|| Error::ClassNotFound(instance.class_name.to_string()))?
            .clone();
        if class.is_abstract() {
            return Err(Error::AbstractInstance(class.name.to_string()));
        }
        let mut complete = Instance::from_class_defaults(&class);
        for (name, given) in instance.properties.iter() {
            let decl = class
                .property(name.as_str())
                .ok_or_else(|| Error::NoSuchProperty {
                    class: class.name.to_string(),
                    property: name.to_string(),
                })?;
            if let Some(v) = &given.value {
                check_value(
                    &format!("{}.{}", class.name, decl.name),
                    decl.ty,
                    decl.array.is_some(),
                    v,
                )?;
            }
            if let Some(p) = complete.properties.get_mut(name.as_str()) {
                p.value = given.value.clone();
            }
        }
        for key in class.keys() {
            if complete.get(key.name.as_str()).is_none() {
                return Err(Error::MissingKey {
                    class: class.name.to_string(),
                    property: key.name.to_string(),
                });
            }
        }
        let path = complete.path(&class, None);
        Ok((path, complete))
    }

    /// Adds a static instance after checking it against its class: the class exists and is
    /// concrete, every property exists and has the declared type, every key has a value.
    /// Properties not given take the class defaults. Returns the instance's path.
    pub fn create_instance(&mut self, ns: &str, instance: Instance) -> Result<ObjectPath> {
        let (path, instance) = self.complete_instance(ns, instance)?;
        let namespace = self.namespace_mut(ns)?;
        if namespace.instances.contains_key(&path) {
            return Err(Error::InstanceAlreadyExists(path.to_string()));
        }
        namespace.instances.insert(path.clone(), instance);
        Ok(path)
    }
}

/// Checks that a value fits a declared type and arrayness.
pub fn check_value(element: &str, ty: CimType, is_array: bool, value: &Value) -> Result<()> {
    let mismatch = || Error::ValueType {
        element: element.to_string(),
        expected: type_text(ty, is_array),
        found: match value.cim_type() {
            Some(t) => type_text(t, value.is_array()),
            None => "an array of NULLs".to_string(),
        },
    };
    match value {
        Value::Array(items) if is_array => {
            if items
                .iter()
                .flatten()
                .all(|v| !v.is_array() && v.cim_type() == Some(ty))
            {
                Ok(())
            } else {
                Err(mismatch())
            }
        }
        _ if !is_array && value.cim_type() == Some(ty) => Ok(()),
        _ => Err(mismatch()),
    }
}

fn type_text(ty: CimType, is_array: bool) -> String {
    if is_array {
        format!("{ty}[]")
    } else {
        ty.to_string()
    }
}

/// Resolves a declared class against its superclass within one namespace.
struct Resolver<'a> {
    ns: &'a Namespace,
}

/// What kind of element a qualifier is applied to, for scope checks.
#[derive(Clone, Copy)]
enum ElementKind {
    Class { association: bool, indication: bool },
    Property,
    Reference,
    Method,
    Parameter,
}

impl ElementKind {
    /// The scopes any of which admit a qualifier on this element. An association or an
    /// indication is also a class, so `Scope(class)` qualifiers apply to them as well.
    fn scope(self) -> Scope {
        match self {
            ElementKind::Class {
                association,
                indication,
            } => {
                let mut s = Scope::CLASS;
                if association {
                    s = s.union(Scope::ASSOCIATION);
                }
                if indication {
                    s = s.union(Scope::INDICATION);
                }
                s
            }
            ElementKind::Property => Scope::PROPERTY,
            ElementKind::Reference => Scope::REFERENCE,
            ElementKind::Method => Scope::METHOD,
            ElementKind::Parameter => Scope::PARAMETER,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ElementKind::Class {
                association: true, ..
            } => "association",
            ElementKind::Class {
                indication: true, ..
            } => "indication",
            ElementKind::Class { .. } => "class",
            ElementKind::Property => "property",
            ElementKind::Reference => "reference",
            ElementKind::Method => "method",
            ElementKind::Parameter => "parameter",
        }
    }
}

impl Resolver<'_> {
    fn resolve(&self, declared: Class) -> Result<Class> {
        let class_name = declared.name.clone();
        let superclass = match &declared.superclass {
            Some(s) => {
                Some(
                    self.ns
                        .class(s.as_str())
                        .ok_or_else(|| Error::SuperclassNotFound {
                            class: class_name.to_string(),
                            superclass: s.to_string(),
                        })?,
                )
            }
            None => None,
        };
        let association = declared.qualifiers.is_true("Association")
            || superclass.is_some_and(|s| s.is_association());
        if let Some(sup) = superclass {
            if declared.qualifiers.is_true("Association") && !sup.is_association() {
                return Err(Error::AssociationMismatch {
                    class: class_name.to_string(),
                    superclass: sup.name.to_string(),
                });
            }
        }
        let indication = declared.qualifiers.is_true("Indication")
            || superclass.is_some_and(|s| s.is_indication());
        let kind = ElementKind::Class {
            association,
            indication,
        };
        let element = class_name.to_string();
        self.check_qualifiers(&declared.qualifiers, &element, kind)?;

        let mut class = Class::new(class_name.clone(), superclass.map(|s| s.name.clone()));
        class.qualifiers = self.merge_qualifiers(
            superclass.map(|s| (&s.qualifiers, s.name.as_str())),
            declared.qualifiers,
            &element,
        )?;

        // Inherited features first, shared with the superclass where they are already the
        // inherited form.
        if let Some(sup) = superclass {
            for (name, p) in sup.properties.iter() {
                let inherited = if p.propagated {
                    p.clone()
                } else {
                    Arc::new(inherit_property(p))
                };
                class.properties.insert(name.clone(), inherited);
            }
            for (name, m) in sup.methods.iter() {
                let inherited = if m.propagated {
                    m.clone()
                } else {
                    Arc::new(inherit_method(m))
                };
                class.methods.insert(name.clone(), inherited);
            }
        }
        let superclass_has_keys = superclass.is_some_and(|s| s.keys().next().is_some());

        for p in declared.properties.into_values() {
            let p = Arc::try_unwrap(p).unwrap_or_else(|p| (*p).clone());
            let element = format!("{class_name}.{}", p.name);
            let kind = if p.is_reference() {
                ElementKind::Reference
            } else {
                ElementKind::Property
            };
            self.check_qualifiers(&p.qualifiers, &element, kind)?;
            self.check_reference_class(&class_name, p.reference_class.as_ref(), &element)?;
            let overridden =
                self.overridden(&class.properties, &p.name, &p.qualifiers, &element)?;
            let resolved = match overridden {
                Some(parent) => {
                    if parent.ty != p.ty || parent.array.is_some() != p.array.is_some() {
                        return Err(Error::OverrideType {
                            element,
                            expected: type_text(parent.ty, parent.array.is_some()),
                            found: type_text(p.ty, p.array.is_some()),
                        });
                    }
                    if let (Some(parent_rc), Some(rc)) =
                        (&parent.reference_class, &p.reference_class)
                    {
                        if !rc.matches(class_name.as_str())
                            && !self.ns.is_subclass_of(rc.as_str(), parent_rc.as_str())
                        {
                            return Err(Error::OverrideType {
                                element,
                                expected: format!("{parent_rc} REF"),
                                found: format!("{rc} REF"),
                            });
                        }
                    }
                    let origin = parent.class_origin.to_string();
                    let qualifiers = self.merge_qualifiers(
                        Some((&parent.qualifiers, &origin)),
                        p.qualifiers,
                        &element,
                    )?;
                    Property {
                        default: p.default.or_else(|| parent.default.clone()),
                        qualifiers,
                        class_origin: class_name.clone(),
                        propagated: false,
                        ..p
                    }
                }
                None => {
                    if superclass_has_keys && p.qualifiers.is_true("Key") {
                        return Err(Error::KeyBelowKeyedClass {
                            class: class_name.to_string(),
                            property: p.name.to_string(),
                            superclass: superclass.map(|s| s.name.to_string()).unwrap_or_default(),
                        });
                    }
                    Property {
                        class_origin: class_name.clone(),
                        propagated: false,
                        ..p
                    }
                }
            };
            if let Some(v) = &resolved.default {
                check_value(&element, resolved.ty, resolved.array.is_some(), v)?;
            }
            class
                .properties
                .insert(resolved.name.clone(), Arc::new(resolved));
        }

        for m in declared.methods.into_values() {
            let m = Arc::try_unwrap(m).unwrap_or_else(|m| (*m).clone());
            let element = format!("{class_name}.{}()", m.name);
            self.check_qualifiers(&m.qualifiers, &element, ElementKind::Method)?;
            for param in m.parameters.values() {
                let element = format!("{class_name}.{}({})", m.name, param.name);
                self.check_qualifiers(&param.qualifiers, &element, ElementKind::Parameter)?;
                self.check_reference_class(&class_name, param.reference_class.as_ref(), &element)?;
            }
            let overridden = self.overridden(&class.methods, &m.name, &m.qualifiers, &element)?;
            let resolved = match overridden {
                Some(parent) => {
                    if parent.return_type != m.return_type {
                        return Err(Error::OverrideType {
                            element,
                            expected: parent.return_type.to_string(),
                            found: m.return_type.to_string(),
                        });
                    }
                    let origin = parent.class_origin.to_string();
                    let qualifiers = self.merge_qualifiers(
                        Some((&parent.qualifiers, &origin)),
                        m.qualifiers,
                        &element,
                    )?;
                    let mut parameters = NameMap::new();
                    for param in m.parameters.into_values() {
                        let element = format!("{class_name}.{}({})", m.name, param.name);
                        let qualifiers = match parent.parameters.get(param.name.as_str()) {
                            Some(pp) => self.merge_qualifiers(
                                Some((&pp.qualifiers, &origin)),
                                param.qualifiers,
                                &element,
                            )?,
                            None => param.qualifiers,
                        };
                        parameters.insert(
                            param.name.clone(),
                            Parameter {
                                qualifiers,
                                ..param
                            },
                        );
                    }
                    Method {
                        parameters,
                        qualifiers,
                        class_origin: class_name.clone(),
                        propagated: false,
                        ..m
                    }
                }
                None => Method {
                    class_origin: class_name.clone(),
                    propagated: false,
                    ..m
                },
            };
            class
                .methods
                .insert(resolved.name.clone(), Arc::new(resolved));
        }
        Ok(class)
    }

    /// Checks every local qualifier of an element: declared, in scope, of the declared type.
    fn check_qualifiers(
        &self,
        qualifiers: &QualifierSet,
        element: &str,
        kind: ElementKind,
    ) -> Result<()> {
        for q in qualifiers.iter() {
            let decl =
                self.ns
                    .qualifier(q.name.as_str())
                    .ok_or_else(|| Error::QualifierNotDeclared {
                        qualifier: q.name.to_string(),
                        element: element.to_string(),
                    })?;
            if !decl.scope.intersects(kind.scope()) {
                return Err(Error::QualifierScope {
                    qualifier: decl.name.to_string(),
                    element: element.to_string(),
                    scope: decl.scope.to_string(),
                    kind: kind.describe(),
                });
            }
            if let Some(v) = &q.value {
                check_value(element, decl.ty, decl.array.is_some(), v).map_err(|_| {
                    Error::QualifierType {
                        qualifier: decl.name.to_string(),
                        element: element.to_string(),
                        expected: type_text(decl.ty, decl.array.is_some()),
                        found: v
                            .cim_type()
                            .map_or("NULL".to_string(), |t| type_text(t, v.is_array())),
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Merges an element's local qualifiers with those it inherits: inherited ToSubclass
    /// qualifiers are kept (marked propagated) unless given locally; a local value for a
    /// DisableOverride qualifier must equal the inherited one.
    fn merge_qualifiers(
        &self,
        inherited: Option<(&QualifierSet, &str)>,
        local: QualifierSet,
        element: &str,
    ) -> Result<QualifierSet> {
        let Some((parent, parent_class)) = inherited else {
            return Ok(local);
        };
        let mut merged = inherit_qualifiers(parent);
        for q in local {
            if let Some(p) = merged.get(q.name.as_str()) {
                if !p.flavor.overridable && p.value != q.value {
                    return Err(Error::QualifierOverride {
                        qualifier: q.name.to_string(),
                        element: element.to_string(),
                        superclass: parent_class.to_string(),
                    });
                }
            }
            merged.insert(q);
        }
        Ok(merged)
    }

    /// The inherited feature (property or method) that a local one overrides: the one of
    /// the same name. An Override qualifier must name it, as DSP0004 requires.
    fn overridden<'f, T>(
        &self,
        inherited: &'f NameMap<Arc<T>>,
        name: &Name,
        qualifiers: &QualifierSet,
        element: &str,
    ) -> Result<Option<&'f T>> {
        if let Some(named) = qualifiers.str("Override") {
            if !name.matches(named) || !inherited.contains(named) {
                return Err(Error::OverrideNotFound {
                    element: element.to_string(),
                    named: named.to_string(),
                });
            }
        }
        Ok(inherited.get(name.as_str()).map(|f| &**f))
    }

    /// A reference's class must exist (or be the class being defined).
    fn check_reference_class(
        &self,
        class: &Name,
        reference_class: Option<&Name>,
        element: &str,
    ) -> Result<()> {
        match reference_class {
            Some(rc) if !rc.matches(class.as_str()) && self.ns.class(rc.as_str()).is_none() => {
                Err(Error::ReferenceClassNotFound {
                    element: element.to_string(),
                    class: rc.to_string(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The form in which a subclass inherits a property: Restricted qualifiers dropped, the rest
/// marked propagated.
fn inherit_property(p: &Property) -> Property {
    Property {
        qualifiers: inherit_qualifiers(&p.qualifiers),
        propagated: true,
        ..p.clone()
    }
}

fn inherit_method(m: &Method) -> Method {
    let parameters = m
        .parameters
        .iter()
        .map(|(n, p)| {
            (
                n.clone(),
                Parameter {
                    qualifiers: inherit_qualifiers(&p.qualifiers),
                    ..p.clone()
                },
            )
        })
        .collect();
    Method {
        qualifiers: inherit_qualifiers(&m.qualifiers),
        parameters,
        propagated: true,
        ..m.clone()
    }
}

fn inherit_qualifiers(qs: &QualifierSet) -> QualifierSet {
    let mut out = QualifierSet::new();
    for q in qs.iter().filter(|q| q.flavor.to_subclass) {
        out.insert(Qualifier {
            propagated: true,
            ..q.clone()
        });
    }
    out
}
