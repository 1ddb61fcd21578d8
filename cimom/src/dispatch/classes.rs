//! Class and qualifier operations.

use std::collections::HashSet;
use std::sync::Arc;

use cim_schema::{Class, Name, QualifierDecl};

use super::result::{ClassItem, Outcome};
use super::Cimom;
use crate::cimxml::encode::{self, ClassFilter};
use crate::error::{CimError, CimResult, StatusCode};

impl Cimom {
    fn class_item(&self, ns: &str, class: Arc<Class>, filter: Arc<ClassFilter>) -> ClassItem {
        ClassItem {
            class,
            schema: self.schema(),
            namespace: ns.to_string(),
            filter,
        }
    }

    pub(super) fn get_class(
        &self,
        ns: &str,
        name: &Name,
        local_only: bool,
        include_qualifiers: bool,
        include_class_origin: bool,
        property_list: Option<Vec<Name>>,
    ) -> CimResult<Outcome> {
        let schema = self.schema();
        let class = schema
            .namespace(ns)?
            .class(name.as_str())
            .cloned()
            .ok_or_else(|| {
                CimError::not_found(format!("class {name} does not exist in namespace {ns}"))
            })?;
        let filter = ClassFilter {
            local_only,
            include_qualifiers,
            include_class_origin,
            properties: property_list.map(|l| l.into_iter().collect()),
        };
        Ok(Outcome::Class(self.class_item(ns, class, Arc::new(filter))))
    }

    fn classes_below(
        &self,
        ns: &str,
        class: Option<&Name>,
        deep: bool,
    ) -> CimResult<Vec<Arc<Class>>> {
        let schema = self.schema();
        let namespace = schema.namespace(ns)?;
        if let Some(c) = class {
            if namespace.class(c.as_str()).is_none() {
                return Err(CimError::invalid_class(c.as_str(), ns));
            }
        }
        Ok(match (class, deep) {
            // descendants() starts with the class itself, which is not its own subclass.
            (Some(c), true) => namespace
                .descendants(c.as_str())
                .into_iter()
                .skip(1)
                .cloned()
                .collect(),
            (None, true) => namespace.classes().cloned().collect(),
            (c, false) => namespace
                .subclasses(c.map(Name::as_str))
                .into_iter()
                .cloned()
                .collect(),
        })
    }

    pub(super) fn enumerate_classes(
        &self,
        ns: &str,
        class: Option<&Name>,
        deep: bool,
        filter: ClassFilter,
    ) -> CimResult<Outcome> {
        let filter = Arc::new(filter);
        let classes = self.classes_below(ns, class, deep)?;
        Ok(Outcome::Classes(
            classes
                .into_iter()
                .map(|c| self.class_item(ns, c, filter.clone()))
                .collect(),
        ))
    }

    pub(super) fn enumerate_class_names(
        &self,
        ns: &str,
        class: Option<&Name>,
        deep: bool,
    ) -> CimResult<Outcome> {
        Ok(Outcome::ClassNames(
            self.classes_below(ns, class, deep)?
                .into_iter()
                .map(|c| c.name.clone())
                .collect(),
        ))
    }

    fn is_builtin_class(&self, ns: &str, class: &str) -> bool {
        self.builtin_classes
            .contains(&(ns.to_lowercase(), Name::new(class)))
    }

    /// The declared form of a class, as CIM-XML, for the store.
    fn class_record(class: &Class) -> Vec<u8> {
        let mut xml = String::new();
        encode::class(
            &mut xml,
            class,
            &ClassFilter {
                local_only: true,
                include_qualifiers: true,
                include_class_origin: false,
                properties: None,
            },
            None,
        );
        xml.into_bytes()
    }

    pub(super) async fn create_class(&self, ns: &str, class: Class) -> CimResult<Outcome> {
        let mut sequence = self.writes.lock().await;
        let mut repo = (*self.schema()).clone();
        let record = Self::class_record(&class);
        let name = class.name.clone();
        repo.add_class(ns, class).map_err(|e| match e {
            cim_schema::Error::ClassAlreadyExists(c) => CimError::new(
                StatusCode::AlreadyExists,
                format!("class {c} already exists in namespace {ns}"),
            ),
            e => e.into(),
        })?;
        *sequence += 1;
        self.store
            .put_class(ns, name.as_str(), *sequence, &record)
            .map_err(Self::store_failed)?;
        self.replace_schema(repo);
        Ok(Outcome::Empty)
    }

    /// Why `class` cannot be replaced or removed, if it cannot.
    fn check_class_removable(&self, ns: &str, class: &str) -> CimResult<()> {
        let schema = self.schema();
        let namespace = schema.namespace(ns)?;
        let c = namespace.class(class).ok_or_else(|| {
            CimError::not_found(format!("class {class} does not exist in namespace {ns}"))
        })?;
        if self.is_builtin_class(ns, class) {
            return Err(CimError::not_supported(format!(
                "class {} is part of cimvirt's built-in schema and cannot be changed",
                c.name
            )));
        }
        if let Some(sub) = namespace.subclasses(Some(class)).first() {
            return Err(CimError::new(
                StatusCode::ClassHasChildren,
                format!(
                    "class {} has subclasses (such as {}); delete them first",
                    c.name, sub.name
                ),
            ));
        }
        let count = self
            .instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .count(ns, class);
        if count > 0 {
            return Err(CimError::new(
                StatusCode::ClassHasInstances,
                format!(
                    "class {} has {count} instance(s); delete them first",
                    c.name
                ),
            ));
        }
        Ok(())
    }

    pub(super) async fn modify_class(&self, ns: &str, class: Class) -> CimResult<Outcome> {
        let mut sequence = self.writes.lock().await;
        self.check_class_removable(ns, class.name.as_str())?;
        let mut repo = (*self.schema()).clone();
        let record = Self::class_record(&class);
        let name = class.name.clone();
        repo.remove_class(ns, name.as_str())?;
        repo.add_class(ns, class)?;
        *sequence += 1;
        self.store
            .put_class(ns, name.as_str(), *sequence, &record)
            .map_err(Self::store_failed)?;
        self.replace_schema(repo);
        Ok(Outcome::Empty)
    }

    pub(super) async fn delete_class(&self, ns: &str, class: &Name) -> CimResult<Outcome> {
        let _guard = self.writes.lock().await;
        self.check_class_removable(ns, class.as_str())?;
        let schema = self.schema();
        let referrer = schema.namespace(ns)?.classes().find(|c| {
            c.name != *class
                && c.references()
                    .any(|r| r.reference_class.as_ref() == Some(class))
        });
        if let Some(referrer) = referrer {
            return Err(CimError::failed(format!(
                "class {class} is the target of references in class {}; delete that first",
                referrer.name
            )));
        }
        let mut repo = (*self.schema()).clone();
        repo.remove_class(ns, class.as_str())?;
        self.store
            .delete_class(ns, class.as_str())
            .map_err(Self::store_failed)?;
        self.replace_schema(repo);
        Ok(Outcome::Empty)
    }

    pub(super) fn get_qualifier(&self, ns: &str, name: &Name) -> CimResult<Outcome> {
        self.schema()
            .namespace(ns)?
            .qualifier(name.as_str())
            .cloned()
            .map(Outcome::Qualifier)
            .ok_or_else(|| {
                CimError::not_found(format!(
                    "qualifier {name} is not declared in namespace {ns}"
                ))
            })
    }

    pub(super) fn enumerate_qualifiers(&self, ns: &str) -> CimResult<Outcome> {
        Ok(Outcome::Qualifiers(
            self.schema().namespace(ns)?.qualifiers().cloned().collect(),
        ))
    }

    pub(super) async fn set_qualifier(&self, ns: &str, decl: QualifierDecl) -> CimResult<Outcome> {
        let _guard = self.writes.lock().await;
        let schema = self.schema();
        if let Some(existing) = schema.namespace(ns)?.qualifier(decl.name.as_str()) {
            if *existing == decl {
                return Ok(Outcome::Empty);
            }
            if self
                .builtin_qualifiers
                .contains(&(ns.to_lowercase(), decl.name.clone()))
            {
                return Err(CimError::not_supported(format!(
                    "qualifier {} is part of cimvirt's built-in schema and cannot be changed",
                    decl.name
                )));
            }
        }
        let mut xml = String::new();
        encode::qualifier_declaration(&mut xml, &decl);
        let mut repo = (*schema).clone();
        repo.remove_qualifier(ns, decl.name.as_str())?;
        let name = decl.name.clone();
        repo.set_qualifier(ns, decl)?;
        self.store
            .put_qualifier(ns, name.as_str(), xml.as_bytes())
            .map_err(Self::store_failed)?;
        self.replace_schema(repo);
        Ok(Outcome::Empty)
    }

    pub(super) async fn delete_qualifier(&self, ns: &str, name: &Name) -> CimResult<Outcome> {
        let _guard = self.writes.lock().await;
        let schema = self.schema();
        let namespace = schema.namespace(ns)?;
        if namespace.qualifier(name.as_str()).is_none() {
            return Err(CimError::not_found(format!(
                "qualifier {name} is not declared in namespace {ns}"
            )));
        }
        if self
            .builtin_qualifiers
            .contains(&(ns.to_lowercase(), name.clone()))
        {
            return Err(CimError::not_supported(format!(
                "qualifier {name} is part of cimvirt's built-in schema and cannot be deleted"
            )));
        }
        if let Some(user) = namespace.classes().find(|c| uses_qualifier(c, name)) {
            return Err(CimError::failed(format!(
                "qualifier {name} is used by class {}; remove it there first",
                user.name
            )));
        }
        let mut repo = (*schema).clone();
        repo.remove_qualifier(ns, name.as_str())?;
        self.store
            .delete_qualifier(ns, name.as_str())
            .map_err(Self::store_failed)?;
        self.replace_schema(repo);
        Ok(Outcome::Empty)
    }
}

fn uses_qualifier(c: &Class, name: &Name) -> bool {
    let mut sets = vec![&c.qualifiers];
    sets.extend(c.properties.values().map(|p| &p.qualifiers));
    for m in c.methods.values() {
        sets.push(&m.qualifiers);
        sets.extend(m.parameters.values().map(|p| &p.qualifiers));
    }
    let seen: HashSet<&Name> = sets
        .iter()
        .flat_map(|s| s.iter().map(|q| &q.name))
        .collect();
    seen.contains(name)
}
