//! The provider interface, in process: instance, association and method providers
//! registered with the object manager, and what the object manager does for them
//! centrally (paths, property filtering, polymorphism, argument typing, pulls).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cim_schema::{Class, Instance, Method, Name, ObjectPath, Value};
use cimom::auth::{Access, Right, User};
use cimom::dispatch::operation::{
    AssociationFilter, InstanceOptions, OpenOptions, Operation, UntypedValue,
};
use cimom::dispatch::provider::{
    AssociationProvider, InstanceProvider, InstanceSink, MethodProvider, MethodResult,
    ProviderContext, Registry,
};
use cimom::dispatch::result::{Item, Outcome};
use cimom::dispatch::Cimom;
use cimom::error::{CimResult, StatusCode};
use cimom::store::Store;
use provider::config::Limits;

const NS: &str = "root/virt";

fn vm(name: &str, state: u16) -> Instance {
    let mut i = Instance::new("KVM_ComputerSystem");
    i.set("Name", name);
    i.set("CreationClassName", "KVM_ComputerSystem");
    i.set("EnabledState", Value::UInt16(state));
    i.set("ElementName", format!("VM {name}").as_str());
    i
}

fn vm_path(name: &str) -> ObjectPath {
    ObjectPath::class(None, "KVM_ComputerSystem")
        .with_key("Name", name)
        .with_key("CreationClassName", "KVM_ComputerSystem")
}

struct Machines;

#[async_trait]
impl InstanceProvider for Machines {
    async fn enumerate_instances(
        &self,
        _: &ProviderContext,
        _: &Arc<Class>,
        sink: &InstanceSink,
    ) -> CimResult<()> {
        for (name, state) in [("vm1", 2), ("vm2", 3)] {
            if !sink.send(vm(name, state)).await {
                break;
            }
        }
        Ok(())
    }
}

struct Settings;

#[async_trait]
impl InstanceProvider for Settings {
    async fn enumerate_instances(
        &self,
        _: &ProviderContext,
        class: &Arc<Class>,
        sink: &InstanceSink,
    ) -> CimResult<()> {
        for name in ["vm1", "vm2"] {
            let mut i = Instance::new(class.name.clone());
            i.set("InstanceID", format!("KVM:{name}").as_str());
            sink.send(i).await;
        }
        Ok(())
    }
}

/// KVM_SettingsDefineState, answered by both an association provider (counting its calls)
/// and, for plain enumeration, an instance provider.
#[derive(Default)]
struct Defines {
    association_calls: AtomicUsize,
}

fn define_state(name: &str) -> Instance {
    let mut i = Instance::new("KVM_SettingsDefineState");
    i.set("ManagedElement", Value::Reference(vm_path(name)));
    i.set(
        "SettingData",
        Value::Reference(
            ObjectPath::class(None, "KVM_VirtualSystemSettingData")
                .with_key("InstanceID", format!("KVM:{name}").as_str()),
        ),
    );
    i
}

#[async_trait]
impl InstanceProvider for Defines {
    async fn enumerate_instances(
        &self,
        _: &ProviderContext,
        _: &Arc<Class>,
        sink: &InstanceSink,
    ) -> CimResult<()> {
        for name in ["vm1", "vm2"] {
            sink.send(define_state(name)).await;
        }
        Ok(())
    }
}

#[async_trait]
impl AssociationProvider for Defines {
    async fn references(
        &self,
        _: &ProviderContext,
        _: &Arc<Class>,
        target: &ObjectPath,
        _: Option<&Name>,
        sink: &InstanceSink,
    ) -> CimResult<()> {
        self.association_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(Value::String(name)) = target.key("Name") {
            sink.send(define_state(name)).await;
        }
        Ok(())
    }
}

/// A call a method provider received: `Class.Method` and the arguments.
type Call = (String, Vec<(Name, Option<Value>)>);

/// Records the arguments it receives.
#[derive(Default)]
struct Methods {
    seen: Mutex<Vec<Call>>,
}

#[async_trait]
impl MethodProvider for Methods {
    async fn invoke_method(
        &self,
        _: &ProviderContext,
        _: &Arc<Class>,
        target: &ObjectPath,
        method: &Method,
        arguments: Vec<(Name, Option<Value>)>,
    ) -> CimResult<MethodResult> {
        self.seen
            .lock()
            .unwrap()
            .push((format!("{}.{}", target.class_name, method.name), arguments));
        Ok(MethodResult {
            return_value: Value::UInt32(0),
            out: vec![(
                Name::new("ResultingSystem"),
                Value::Reference(vm_path("vm3")),
            )],
        })
    }
}

struct Fixture {
    cimom: Arc<Cimom>,
    defines: Arc<Defines>,
    methods: Arc<Methods>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let mut registry = Registry::default();
    let defines = Arc::new(Defines::default());
    let methods = Arc::new(Methods::default());
    registry.register_instances(NS, "KVM_ComputerSystem", Arc::new(Machines));
    registry.register_instances(NS, "KVM_VirtualSystemSettingData", Arc::new(Settings));
    registry.register_instances(NS, "KVM_SettingsDefineState", defines.clone());
    registry.register_associations(NS, "KVM_SettingsDefineState", defines.clone());
    registry.register_methods(NS, "KVM_ComputerSystem", methods.clone());
    registry.register_methods(NS, "KVM_VirtualSystemManagementService", methods.clone());
    let cimom = Arc::new(
        Cimom::open(
            provider::schema::load().unwrap(),
            store,
            registry,
            Limits::default().cimom(),
        )
        .unwrap(),
    );
    Fixture {
        cimom,
        defines,
        methods,
        _dir: dir,
    }
}

/// A user who may read and write in the test namespace, and nowhere else.
fn user() -> User {
    User {
        name: "test".into(),
        password_hash: String::new(),
        rights: vec![Right {
            namespace: NS.into(),
            access: Access::ReadWrite,
        }],
    }
}

async fn items(outcome: Outcome) -> Vec<Item> {
    match outcome {
        Outcome::Stream(mut rx, _) => {
            let mut out = Vec::new();
            while let Some(item) = rx.recv().await {
                out.push(item.expect("no error in the stream"));
            }
            out
        }
        Outcome::Pull(p) => p.items,
        _ => panic!("not a stream"),
    }
}

fn instance_of(item: &Item) -> (&ObjectPath, &Instance, Vec<String>) {
    match item {
        Item::Instance { object, filter, .. } => {
            let shown = object
                .instance
                .properties
                .keys()
                .filter(|n| filter.includes(n))
                .map(|n| n.to_string())
                .collect();
            (&object.path, &object.instance, shown)
        }
        _ => panic!("not an instance"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn polymorphic_enumeration_filters_provider_instances_centrally() {
    let f = fixture();
    let op = Operation::EnumerateInstances {
        class: Name::new("CIM_ComputerSystem"),
        options: InstanceOptions {
            deep_inheritance: false,
            property_list: Some(vec![
                Name::new("name"),
                Name::new("EnabledState"),
                Name::new("RequestedState"),
            ]),
            ..Default::default()
        },
    };
    let got = items(f.cimom.serve(&user(), NS, op, "test").await.unwrap()).await;
    assert_eq!(got.len(), 2);
    let (path, inst, shown) = instance_of(&got[0]);
    assert_eq!(path, &vm_path("vm1"));
    assert_eq!(inst.class_name.as_str(), "KVM_ComputerSystem");
    // ElementName is outside the PropertyList; RequestedState has no value from the provider
    // but is listed, and instances only carry what providers set.
    assert_eq!(shown, ["Name", "EnabledState"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_instance_through_enumeration_and_not_found() {
    let f = fixture();
    let get = |name: &str| Operation::GetInstance {
        path: vm_path(name),
        options: InstanceOptions::default(),
    };
    let Outcome::Instance(item) = f
        .cimom
        .serve(&user(), NS, get("vm2"), "test")
        .await
        .unwrap()
    else {
        panic!("not an instance");
    };
    assert_eq!(
        instance_of(&item).1.get("EnabledState"),
        Some(&Value::UInt16(3))
    );
    let err = f
        .cimom
        .serve(&user(), NS, get("vm9"), "test")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, StatusCode::NotFound);
    // Create, modify and delete are the provider's to allow; the default says no.
    let err = f
        .cimom
        .serve(
            &user(),
            NS,
            Operation::CreateInstance {
                instance: vm("vm3", 2),
            },
            "test",
        )
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, StatusCode::NotSupported);
}

#[tokio::test(flavor = "multi_thread")]
async fn associations_use_the_association_provider() {
    let f = fixture();
    let op = Operation::AssociatorNames {
        object: vm_path("vm1"),
        filter: AssociationFilter {
            assoc_class: Some(Name::new("CIM_SettingsDefineState")),
            ..Default::default()
        },
    };
    let got = items(f.cimom.serve(&user(), NS, op, "test").await.unwrap()).await;
    let paths: Vec<String> = got
        .iter()
        .map(|i| match i {
            Item::Path(p) => p.to_uri(),
            _ => panic!("not a path"),
        })
        .collect();
    assert_eq!(
        paths,
        [r#"/root/virt:KVM_VirtualSystemSettingData.InstanceID="KVM:vm1""#]
    );
    assert_eq!(f.defines.association_calls.load(Ordering::SeqCst), 1);
    let refs = Operation::References {
        object: vm_path("vm2"),
        filter: AssociationFilter::default(),
        options: InstanceOptions::default(),
        include_qualifiers: false,
    };
    let got = items(f.cimom.serve(&user(), NS, refs, "test").await.unwrap()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        instance_of(&got[0]).1.class_name.as_str(),
        "KVM_SettingsDefineState"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn method_arguments_arrive_typed_and_embedded_instances_parsed() {
    let f = fixture();
    let call = |target: ObjectPath, method: &str, parameters| Operation::InvokeMethod {
        target,
        method: Name::new(method),
        parameters,
    };
    let out = f
        .cimom
        .serve(
            &user(),
            NS,
            call(
                vm_path("vm1"),
                "RequestStateChange",
                vec![(
                    Name::new("requestedstate"),
                    Some(UntypedValue::Text("3".into())),
                )],
            ),
            "test",
        )
        .await
        .unwrap();
    let Outcome::Method { return_value, out } = out else {
        panic!("not a method result");
    };
    assert_eq!(return_value, Value::UInt32(0));
    assert_eq!(out[0].0.as_str(), "ResultingSystem");
    let vssd = "<INSTANCE CLASSNAME=\"KVM_VirtualSystemSettingData\">\
                <PROPERTY NAME=\"ElementName\" TYPE=\"string\"><VALUE>web</VALUE></PROPERTY></INSTANCE>";
    let service = ObjectPath::class(None, "KVM_VirtualSystemManagementService");
    f.cimom
        .serve(
            &user(),
            NS,
            call(
                service.clone(),
                "DefineSystem",
                vec![
                    (
                        Name::new("SystemSettings"),
                        Some(UntypedValue::Text(vssd.into())),
                    ),
                    (
                        Name::new("ResourceSettings"),
                        Some(UntypedValue::TextArray(vec![])),
                    ),
                ],
            ),
            "test",
        )
        .await
        .unwrap();
    let seen = f.methods.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "KVM_ComputerSystem.RequestStateChange");
    assert_eq!(
        seen[0].1,
        vec![(Name::new("RequestedState"), Some(Value::UInt16(3)))]
    );
    assert_eq!(seen[1].0, "KVM_VirtualSystemManagementService.DefineSystem");
    let Some(Value::Instance(settings)) = &seen[1].1[0].1 else {
        panic!("SystemSettings was not parsed: {:?}", seen[1].1);
    };
    assert_eq!(settings.get("ElementName"), Some(&Value::from("web")));

    // Errors the object manager answers before any provider runs.
    let bad = |target, method, parameters| {
        let cimom = f.cimom.clone();
        async move {
            cimom
                .serve(&user(), NS, call(target, method, parameters), "test")
                .await
                .err()
                .unwrap()
                .code
        }
    };
    assert_eq!(
        bad(
            vm_path("vm1"),
            "RequestStateChange",
            vec![(
                Name::new("RequestedState"),
                Some(UntypedValue::Text("x".into()))
            )]
        )
        .await,
        StatusCode::TypeMismatch
    );
    assert_eq!(
        bad(
            vm_path("vm1"),
            "RequestStateChange",
            vec![(Name::new("Job"), None)]
        )
        .await,
        StatusCode::InvalidParameter,
        "Job is an output parameter"
    );
    assert_eq!(
        bad(
            service.clone(),
            "DefineSystem",
            vec![(
                Name::new("SystemSettings"),
                Some(UntypedValue::Text("not xml".into()))
            )]
        )
        .await,
        StatusCode::InvalidParameter
    );
    assert_eq!(
        bad(vm_path("vm1"), "Frobnicate", vec![]).await,
        StatusCode::MethodNotFound
    );
    // Declared, but no provider registered for it.
    assert_eq!(
        bad(
            ObjectPath::class(None, "KVM_VirtualSystemSnapshotService"),
            "DestroySnapshot",
            vec![]
        )
        .await,
        StatusCode::MethodNotAvailable
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_over_provider_results() {
    let f = fixture();
    let open = Operation::OpenEnumerateInstancePaths {
        class: Name::new("CIM_ComputerSystem"),
        open: OpenOptions {
            max_object_count: 1,
            ..Default::default()
        },
    };
    let Outcome::Pull(first) = f.cimom.serve(&user(), NS, open, "test").await.unwrap() else {
        panic!("not a pull result");
    };
    assert_eq!(first.items.len(), 1);
    let context = first.context.expect("more to come");
    let pull = Operation::PullInstancePaths {
        context: context.clone(),
        max_object_count: 5,
    };
    let Outcome::Pull(rest) = f.cimom.serve(&user(), NS, pull, "test").await.unwrap() else {
        panic!("not a pull result");
    };
    assert_eq!(rest.items.len(), 1);
    assert!(rest.context.is_none(), "the enumeration ended");
    let again = Operation::PullInstancePaths {
        context,
        max_object_count: 5,
    };
    assert_eq!(
        f.cimom
            .serve(&user(), NS, again, "test")
            .await
            .err()
            .unwrap()
            .code,
        StatusCode::InvalidEnumerationContext
    );
}
