//! The keys a server may choose for the indication classes clients create in the interop
//! namespace (DSP1054 7.2, 7.3): a filter or listener destination created without its
//! scoping system, its creation class or its name gets them, as OpenPegasus gives them
//! (`cimcli ci CIM_IndicationFilter Name=f Query=...` names no system).

use cim_schema::{Instance, Repository, Value};

use super::interop::ServerIdentity;

/// The classes whose instances are scoped by the object manager's system.
const SYSTEM_SCOPED: &[&str] = &["CIM_IndicationFilter", "CIM_ListenerDestination"];

/// Fills the keys of `instance`, created in the interop namespace `ns` of `schema`, that the
/// client left out or NULL: SystemCreationClassName (`CIM_ComputerSystem`, as the object
/// manager's own), SystemName (this host), CreationClassName (the instance's class) and
/// Name (a new UUID, as OpenPegasus names handlers). Values the client gave are kept;
/// instances of other classes are left as they are.
pub fn fill(schema: &Repository, ns: &str, instance: &mut Instance) {
    let Ok(namespace) = schema.namespace(ns) else {
        return;
    };
    let class = instance.class_name.to_string();
    if !SYSTEM_SCOPED
        .iter()
        .any(|scoped| namespace.is_subclass_of(&class, scoped))
    {
        return;
    }
    for key in [
        "SystemCreationClassName",
        "SystemName",
        "CreationClassName",
        "Name",
    ] {
        if instance.get(key).is_none() {
            let value = match key {
                "SystemCreationClassName" => "CIM_ComputerSystem".to_owned(),
                "SystemName" => ServerIdentity::current().hostname,
                "CreationClassName" => class.clone(),
                _ => uuid::Uuid::new_v4().to_string(),
            };
            instance.set(key, Value::from(value.as_str()));
        }
    }
}
