//! The interop namespace (DSP1033 Profile Registration): the object manager, its
//! namespaces, the indication service (DSP1054) with its capabilities, and the registered
//! profiles, served by a provider like any other.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use cim_schema::{Class, Instance, Name, ObjectPath, Value};

use super::indication::settings::IndicationSettings;
use super::provider::{
    build_instance as build, keys_of, InstanceProvider, InstanceSink, ProviderContext, Registry,
};
use crate::error::{CimError, CimResult};
use crate::INTEROP_NAMESPACE;

/// CIM_RegisteredProfile.AdvertiseTypes 2, "Not Advertised" (3 is SLP, 4 WS-Identify).
const ADVERTISE_NOT_ADVERTISED: u16 = 2;

/// Central elements that come and go (a profile's VMs, say): asked for whenever the
/// ElementConformsToProfile associations are enumerated.
#[derive(Clone)]
pub struct CentralElements(pub Arc<dyn Fn() -> Vec<ObjectPath> + Send + Sync>);

impl std::fmt::Debug for CentralElements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CentralElements(..)")
    }
}

/// A management profile the server implements.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The class its instance has (CIM_RegisteredProfile or a subclass).
    pub class: Name,
    /// InstanceID, e.g. `CIM:DSP1033-ProfileRegistration-1.0.0`.
    pub instance_id: String,
    /// RegisteredOrganization (2 = DMTF).
    pub organization: u16,
    /// RegisteredName.
    pub name: String,
    /// RegisteredVersion.
    pub version: String,
    /// The central elements that conform to it (with their namespaces), and the class of
    /// the ElementConformsToProfile associations that say so.
    pub conformance: Vec<(Name, ObjectPath)>,
    /// Central elements that change at run time, with their association class.
    pub dynamic_conformance: Option<(Name, CentralElements)>,
    /// The profile that scopes this one (a component profile's autonomous profile), by
    /// InstanceID, and the ReferencedProfile class that says so.
    pub scoping: Option<(Name, String)>,
}

/// Who the server is.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    /// The host name.
    pub hostname: String,
    /// The product version.
    pub version: String,
}

impl ServerIdentity {
    /// This host and this build.
    pub fn current() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        ServerIdentity {
            hostname,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The Name of the CIM_IndicationService of the server on `hostname`.
pub fn indication_service_name(hostname: &str) -> String {
    format!("cimvirt:{hostname}:indications")
}

/// The path of the one CIM_IndicationServiceCapabilities instance.
fn indication_capabilities_path() -> ObjectPath {
    ObjectPath::class(Some(INTEROP_NAMESPACE.to_string()), INDICATION_CAPABILITIES)
        .with_key("InstanceID", "cimvirt:IndicationServiceCapabilities")
}

/// What the indication service lets clients do (DSP1054): the four delivery settings can
/// be set (ModifyInstance on the service), filters can always be created, subscriptions
/// are kept in the database across restarts, and destinations and subscriptions are not
/// counted (NULL: no limit of their own; each destination's queue is bounded).
fn indication_capabilities(class: &Class) -> Instance {
    let path = indication_capabilities_path();
    let mut values = keys_of(&path);
    values.extend([
        (
            "ElementName",
            Value::from("cimvirt indication service capabilities"),
        ),
        ("FilterCreationEnabledIsSettable", Value::Boolean(false)),
        ("DeliveryRetryAttemptsIsSettable", Value::Boolean(true)),
        ("DeliveryRetryIntervalIsSettable", Value::Boolean(true)),
        ("SubscriptionRemovalActionIsSettable", Value::Boolean(true)),
        (
            "SubscriptionRemovalTimeIntervalIsSettable",
            Value::Boolean(true),
        ),
        ("SubscriptionsPersisted", Value::Boolean(true)),
    ]);
    let mut capabilities = build(class, values);
    for unlimited in ["MaxListenerDestinations", "MaxActiveSubscriptions"] {
        if let Some(p) = capabilities.properties.get_mut(unlimited) {
            p.value = None;
        }
    }
    capabilities
}

/// The interop provider.
pub struct Interop {
    identity: ServerIdentity,
    indication_settings: Arc<IndicationSettings>,
    profiles: RwLock<Vec<Profile>>,
}

const OBJECT_MANAGER: &str = "CIM_ObjectManager";
const INDICATION_SERVICE: &str = "CIM_IndicationService";
const INDICATION_CAPABILITIES: &str = "CIM_IndicationServiceCapabilities";
const ELEMENT_CAPABILITIES: &str = "CIM_ElementCapabilities";
const NAMESPACE: &str = "CIM_Namespace";
const NAMESPACE_IN_MANAGER: &str = "CIM_NamespaceInManager";
const PROFILE_CLASSES: &[&str] = &["CIM_RegisteredProfile", "KVM_RegisteredProfile"];
const CONFORMS_CLASSES: &[&str] = &[
    "CIM_ElementConformsToProfile",
    "KVM_ElementConformsToProfile",
];
const REFERENCED_CLASSES: &[&str] = &["KVM_ReferencedProfile"];

impl Interop {
    /// A provider advertising Profile Registration 1.0.0 with the object manager as its
    /// central element.
    pub fn new(
        identity: ServerIdentity,
        indication_settings: Arc<IndicationSettings>,
    ) -> Arc<Self> {
        let interop = Arc::new(Interop {
            identity,
            indication_settings,
            profiles: RwLock::new(Vec::new()),
        });
        let om = interop.object_manager_path();
        interop.register_profile(Profile {
            class: Name::new("CIM_RegisteredProfile"),
            instance_id: "CIM:DSP1033-ProfileRegistration-1.0.0".into(),
            organization: 2,
            name: "Profile Registration".into(),
            version: "1.0.0".into(),
            conformance: vec![(Name::new("CIM_ElementConformsToProfile"), om)],
            dynamic_conformance: None,
            scoping: None,
        });
        let indications = interop.indication_service_path();
        interop.register_profile(Profile {
            class: Name::new("CIM_RegisteredProfile"),
            instance_id: "CIM:DSP1054-Indications-1.1.0".into(),
            organization: 2,
            name: "Indications".into(),
            version: "1.1.0".into(),
            conformance: vec![(Name::new("CIM_ElementConformsToProfile"), indications)],
            dynamic_conformance: None,
            scoping: None,
        });
        interop
    }

    /// Adds a profile (later issues register theirs here).
    pub fn register_profile(&self, profile: Profile) {
        self.profiles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(profile);
    }

    /// The registered profiles, as they are now.
    fn profiles(&self) -> Vec<Profile> {
        self.profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Registers this provider for its classes in the interop namespace.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        let classes = [
            OBJECT_MANAGER,
            INDICATION_SERVICE,
            INDICATION_CAPABILITIES,
            ELEMENT_CAPABILITIES,
            NAMESPACE,
            NAMESPACE_IN_MANAGER,
        ]
        .into_iter()
        .chain(PROFILE_CLASSES.iter().copied())
        .chain(CONFORMS_CLASSES.iter().copied())
        .chain(REFERENCED_CLASSES.iter().copied());
        for class in classes {
            registry.register_instances(INTEROP_NAMESPACE, class, self.clone());
        }
    }

    fn object_manager_name(&self) -> String {
        format!("cimvirt:{}", self.identity.hostname)
    }

    /// The path of the one CIM_ObjectManager instance.
    pub fn object_manager_path(&self) -> ObjectPath {
        ObjectPath::class(Some(INTEROP_NAMESPACE.to_string()), OBJECT_MANAGER)
            .with_key("SystemCreationClassName", "CIM_ComputerSystem")
            .with_key("SystemName", self.identity.hostname.as_str())
            .with_key("CreationClassName", OBJECT_MANAGER)
            .with_key("Name", self.object_manager_name().as_str())
    }

    /// The path of the one CIM_IndicationService instance (DSP1054).
    pub fn indication_service_path(&self) -> ObjectPath {
        ObjectPath::class(Some(INTEROP_NAMESPACE.to_string()), INDICATION_SERVICE)
            .with_key("SystemCreationClassName", "CIM_ComputerSystem")
            .with_key("SystemName", self.identity.hostname.as_str())
            .with_key("CreationClassName", INDICATION_SERVICE)
            .with_key(
                "Name",
                indication_service_name(&self.identity.hostname).as_str(),
            )
    }

    /// The CIM_IndicationService instance, with the delivery settings in force.
    fn indication_service(&self, class: &Class) -> Instance {
        let path = self.indication_service_path();
        let mut values = keys_of(&path);
        values.extend([
            ("ElementName", Value::from("cimvirt indication service")),
            ("FilterCreationEnabled", Value::Boolean(true)),
            ("Started", Value::Boolean(true)),
            ("EnabledState", Value::UInt16(2)),
        ]);
        values.extend(self.indication_settings.get().properties());
        build(class, values)
    }

    fn namespace_path(&self, ns: &str) -> ObjectPath {
        ObjectPath::class(Some(INTEROP_NAMESPACE.to_string()), NAMESPACE)
            .with_key("SystemCreationClassName", "CIM_ComputerSystem")
            .with_key("SystemName", self.identity.hostname.as_str())
            .with_key("ObjectManagerCreationClassName", OBJECT_MANAGER)
            .with_key("ObjectManagerName", self.object_manager_name().as_str())
            .with_key("CreationClassName", NAMESPACE)
            .with_key("Name", ns)
    }

    fn profile_path(p: &Profile) -> ObjectPath {
        ObjectPath::class(Some(INTEROP_NAMESPACE.to_string()), p.class.clone())
            .with_key("InstanceID", p.instance_id.as_str())
    }
}

#[async_trait]
impl InstanceProvider for Interop {
    async fn enumerate_instances(
        &self,
        ctx: &ProviderContext,
        class: &Arc<Class>,
        sink: &InstanceSink,
    ) -> CimResult<()> {
        let name = class.name.as_str();
        let mut out = Vec::new();
        if class.name == *OBJECT_MANAGER {
            let path = self.object_manager_path();
            let mut values = keys_of(&path);
            values.extend([
                ("ElementName", Value::from("cimvirt")),
                (
                    "Description",
                    Value::from(
                        format!("cimvirt WBEM server version {}", self.identity.version).as_str(),
                    ),
                ),
                ("Started", Value::Boolean(true)),
                ("EnabledState", Value::UInt16(2)),
            ]);
            out.push(build(class, values));
        } else if class.name == *INDICATION_SERVICE {
            out.push(self.indication_service(class));
        } else if class.name == *INDICATION_CAPABILITIES {
            out.push(indication_capabilities(class));
        } else if class.name == *ELEMENT_CAPABILITIES {
            out.push(build(
                class,
                vec![
                    (
                        "ManagedElement",
                        Value::Reference(self.indication_service_path()),
                    ),
                    (
                        "Capabilities",
                        Value::Reference(indication_capabilities_path()),
                    ),
                    // 2: Default, 3: Current.
                    (
                        "Characteristics",
                        Value::array([Value::UInt16(2), Value::UInt16(3)]),
                    ),
                ],
            ));
        } else if class.name == *NAMESPACE || class.name == *NAMESPACE_IN_MANAGER {
            for ns in ctx.schema.namespaces() {
                let path = self.namespace_path(ns.name.as_str());
                if class.name == *NAMESPACE {
                    let mut values = keys_of(&path);
                    values.push(("ClassInfo", Value::UInt16(0)));
                    out.push(build(class, values));
                } else {
                    out.push(build(
                        class,
                        vec![
                            ("Antecedent", Value::Reference(self.object_manager_path())),
                            ("Dependent", Value::Reference(path)),
                        ],
                    ));
                }
            }
        } else if PROFILE_CLASSES.iter().any(|c| class.name == **c) {
            let profiles = self.profiles();
            for p in profiles.iter().filter(|p| p.class == class.name) {
                out.push(build(
                    class,
                    vec![
                        ("InstanceID", Value::from(p.instance_id.as_str())),
                        ("RegisteredOrganization", Value::UInt16(p.organization)),
                        ("RegisteredName", Value::from(p.name.as_str())),
                        ("RegisteredVersion", Value::from(p.version.as_str())),
                        // Nothing speaks SLP or lists profiles in Identify here.
                        (
                            "AdvertiseTypes",
                            Value::array([Value::UInt16(ADVERTISE_NOT_ADVERTISED)]),
                        ),
                    ],
                ));
            }
        } else if CONFORMS_CLASSES.iter().any(|c| class.name == **c) {
            let profiles = self.profiles();
            for p in &profiles {
                let dynamic = p
                    .dynamic_conformance
                    .iter()
                    .filter(|(a, _)| *a == class.name)
                    .flat_map(|(a, central)| {
                        (central.0)().into_iter().map(move |e| (a.clone(), e))
                    });
                let all: Vec<(Name, ObjectPath)> =
                    p.conformance.iter().cloned().chain(dynamic).collect();
                for (_, element) in all.iter().filter(|(a, _)| *a == class.name) {
                    out.push(build(
                        class,
                        vec![
                            (
                                "ConformantStandard",
                                Value::Reference(Self::profile_path(p)),
                            ),
                            ("ManagedElement", Value::Reference(element.clone())),
                        ],
                    ));
                }
            }
        } else if REFERENCED_CLASSES.iter().any(|c| class.name == **c) {
            let profiles = self.profiles();
            // DSP1033: the Antecedent is the referenced (component) profile, the Dependent
            // the profile that references (scopes) it.
            for p in &profiles {
                let Some((assoc, scoping)) = &p.scoping else {
                    continue;
                };
                let Some(scope) = profiles.iter().find(|s| s.instance_id == *scoping) else {
                    continue;
                };
                if *assoc == class.name {
                    out.push(build(
                        class,
                        vec![
                            ("Antecedent", Value::Reference(Self::profile_path(p))),
                            ("Dependent", Value::Reference(Self::profile_path(scope))),
                        ],
                    ));
                }
            }
        } else {
            tracing::debug!(
                class = name,
                "interop provider asked for a class it does not serve"
            );
        }
        for inst in out {
            if !sink.send(inst).await {
                break;
            }
        }
        Ok(())
    }

    /// Only the indication service can be modified, and only its delivery settings
    /// (DeliveryRetryAttempts, DeliveryRetryInterval, SubscriptionRemovalAction,
    /// SubscriptionRemovalTimeInterval); the change is stored before it is acknowledged.
    async fn modify_instance(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        path: &ObjectPath,
        instance: Instance,
        property_list: Option<&[Name]>,
    ) -> CimResult<()> {
        if class.name != *INDICATION_SERVICE {
            return Err(CimError::not_supported(format!(
                "instances of {} cannot be modified",
                class.name
            )));
        }
        let current = self.indication_service(class);
        if path.local() != current.path(class, None) {
            return Err(CimError::not_found(format!(
                "instance {path} does not exist"
            )));
        }
        let settings =
            self.indication_settings
                .get()
                .modified(&current, &instance, property_list)?;
        self.indication_settings.set(settings).map_err(|e| {
            CimError::failed(format!("storing the indication service's settings: {e}"))
        })?;
        tracing::info!(?settings, "indication service settings changed");
        Ok(())
    }
}
