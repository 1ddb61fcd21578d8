//! The WBEM server as a library, serving a provider of its own with no KVM anywhere: a
//! small schema compiled here, one instance provider, the HTTP listener, and CIM-XML
//! requests sent as bytes, as any client sends them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cim_schema::mof::{Compiler, Embedded};
use cim_schema::{Class, Instance, ObjectPath, Repository, Value};
use cimom::auth::{
    put_user, Access, AuthSettings, Authenticator, HashSettings, Right, ThrottleSettings,
};
use cimom::cimxml::dom::XmlLimits;
use cimom::dispatch::provider::{
    build_instance, InstanceProvider, InstanceSink, ProviderContext, Registry,
};
use cimom::dispatch::pull::PullLimits;
use cimom::dispatch::{Cimom, CimomConfig};
use cimom::error::{CimError, CimResult};
use cimom::http::{self, HttpLimits, Listener, Scheme, Services};
use cimom::store::Store;
use cimom::wsman::WsmanConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMESPACE: &str = "root/demo";

const MOF: &str = r#"
Qualifier Key : boolean = false, Scope(property, reference), Flavor(DisableOverride);
Qualifier Description : string = null, Scope(any), Flavor(Translatable);

[Description("A widget of the demonstration provider.")]
class Demo_Widget {
    [Key] string Id;
    uint32 Size;
};
"#;

/// Three widgets, made up on each request.
struct Widgets;

impl Widgets {
    fn all(class: &Class) -> Vec<Instance> {
        (1..=3u32)
            .map(|n| {
                build_instance(
                    class,
                    vec![
                        ("Id", Value::from(format!("w{n}").as_str())),
                        ("Size", Value::UInt32(n * 10)),
                    ],
                )
            })
            .collect()
    }
}

#[async_trait]
impl InstanceProvider for Widgets {
    async fn enumerate_instances(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        sink: &InstanceSink,
    ) -> CimResult<()> {
        for widget in Widgets::all(class) {
            if !sink.send(widget).await {
                break;
            }
        }
        Ok(())
    }

    async fn get_instance(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        path: &ObjectPath,
    ) -> CimResult<Instance> {
        Widgets::all(class)
            .into_iter()
            .find(|w| w.path(class, None) == path.local())
            .ok_or_else(|| CimError::not_found(format!("no widget {path}")))
    }
}

fn schema() -> Repository {
    let mut repo = Repository::new();
    Compiler::new(&mut repo, NAMESPACE)
        .with_sources(Embedded::new(&[("demo.mof", MOF)]))
        .compile_files(&["demo.mof"])
        .unwrap_or_else(|d| panic!("{}", cim_schema::mof::render(&d)));
    repo
}

fn cheap_hashing() -> HashSettings {
    HashSettings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

/// Starts the server on a loopback port; its address and the stop switch.
async fn start(dir: &std::path::Path) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let store = Arc::new(Store::open(&dir.join("demo.redb")).unwrap());
    let rights = vec![Right {
        namespace: NAMESPACE.into(),
        access: Access::ReadOnly,
    }];
    put_user(&store, "reader", "demo-password", rights, &cheap_hashing()).unwrap();
    let auth = Authenticator::new(
        &store,
        AuthSettings {
            remember: Duration::from_secs(60),
            workers: 1,
            max_wait: Duration::from_secs(5),
            throttle: ThrottleSettings {
                concurrent_per_client: 4,
                free_failures: 5,
                first_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(100),
                forget_after: Duration::from_secs(60),
            },
            hashing: cheap_hashing(),
            worker_setup: None,
        },
    )
    .unwrap();
    let mut registry = Registry::default();
    registry.register_instances(NAMESPACE, "Demo_Widget", Arc::new(Widgets));
    let config = CimomConfig {
        pull: PullLimits {
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(60),
            max_object_count: 100,
            max_contexts: 8,
        },
        stream_buffer: 16,
        xml: XmlLimits {
            max_depth: 64,
            max_elements: 100_000,
        },
        indication_queue_limit: 10,
    };
    let cimom = Arc::new(Cimom::open(schema(), store, registry, config).unwrap());
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let limits = HttpLimits {
        max_request_bytes: 1 << 20,
        max_connections: 16,
        max_connections_per_client: 16,
        idle_timeout: Duration::from_secs(5),
        max_anonymous_request_bytes: 4096,
        header_read_timeout: Duration::from_secs(5),
        body_read_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(1),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let services = Services {
        cimom,
        auth,
        wsman: WsmanConfig::default(),
        endpoints: vec![],
    };
    let listeners = vec![Listener {
        scheme: Scheme::Http,
        socket,
    }];
    tokio::spawn(http::serve(listeners, None, services, limits, stopped));
    (addr, stop)
}

/// Sends a CIM-XML intrinsic call in the demo namespace; the status line and the body.
async fn call(
    addr: std::net::SocketAddr,
    user: &str,
    method: &str,
    params: &str,
) -> (String, String) {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="{method}"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="demo"/></LOCALNAMESPACEPATH>{params}</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#
    );
    use base64::Engine as _;
    let credentials = base64::engine::general_purpose::STANDARD.encode(user);
    let request = format!(
        "POST /cimom HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/xml; charset=\"utf-8\"\r\nCIMOperation: MethodCall\r\nCIMMethod: {method}\r\nCIMObject: root%2Fdemo\r\nAuthorization: Basic {credentials}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_provider_of_its_own_is_served_over_cim_xml() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = start(dir.path()).await;
    let class = r#"<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="Demo_Widget"/></IPARAMVALUE>"#;

    let (status, body) = call(addr, "reader:demo-password", "EnumerateInstances", class).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(body.matches("<VALUE.NAMEDINSTANCE>").count(), 3, "{body}");
    assert!(
        body.contains(r#"<PROPERTY NAME="Size" TYPE="uint32"><VALUE>20</VALUE>"#),
        "{body}"
    );

    let widget = r#"<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="Demo_Widget"><KEYBINDING NAME="Id"><KEYVALUE VALUETYPE="string">w3</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>"#;
    let (status, body) = call(addr, "reader:demo-password", "GetInstance", widget).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(
        body.contains("<VALUE>30</VALUE>") && !body.contains("<ERROR"),
        "{body}"
    );

    let missing = widget.replace(">w3<", ">w9<");
    let (_, body) = call(addr, "reader:demo-password", "GetInstance", &missing).await;
    assert!(body.contains(r#"<ERROR CODE="6""#), "not found: {body}");

    let (status, _) = call(addr, "reader:wrong", "EnumerateInstances", class).await;
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    stop.send(true).unwrap();
}
