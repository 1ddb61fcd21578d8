//! The unit of work a cimload worker repeats: one request, or a whole enumeration made of
//! an open and pulls until the end.

use clap::ValueEnum;

use crate::client::{Client, Target};
use crate::{cimxml, wsman};

/// An operation cimload can drive.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Op {
    /// CIM-XML EnumerateClassNames, deep.
    EnumerateClassNames,
    /// CIM-XML GetClass.
    GetClass,
    /// CIM-XML GetInstance of the class's first instance.
    GetInstance,
    /// CIM-XML EnumerateInstances: every instance in one response.
    EnumerateInstances,
    /// CIM-XML OpenEnumerateInstances then PullInstancesWithPath until the end.
    PullInstances,
    /// WS-Man Get of the class's first instance.
    WsmanGet,
    /// WS-Man Enumerate (optimized) then Pull until the end, objects only.
    WsmanEnumerate,
    /// WS-Man Enumerate and Pull in EnumerateObjectAndEPR mode.
    WsmanEnumerateWithEpr,
}

impl Op {
    /// How the operation is named in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::EnumerateClassNames => "EnumerateClassNames",
            Op::GetClass => "GetClass",
            Op::GetInstance => "GetInstance",
            Op::EnumerateInstances => "EnumerateInstances",
            Op::PullInstances => "OpenEnumerateInstances+Pull",
            Op::WsmanGet => "Get",
            Op::WsmanEnumerate => "Enumerate+Pull",
            Op::WsmanEnumerateWithEpr => "Enumerate+Pull (ObjectAndEPR)",
        }
    }

    /// The protocol the operation speaks.
    pub fn protocol(self) -> &'static str {
        match self {
            Op::WsmanGet | Op::WsmanEnumerate | Op::WsmanEnumerateWithEpr => "WS-Man",
            _ => "CIM-XML",
        }
    }
}

/// What one unit of work returned.
pub struct Done {
    /// Response bytes, all requests together.
    pub bytes: usize,
    /// Instances received.
    pub instances: usize,
}

/// One prepared unit of work.
pub enum Workload {
    /// One CIM-XML intrinsic call.
    CimXml {
        method: &'static str,
        body: String,
        reading: cimxml::Reading,
    },
    /// OpenEnumerateInstances and PullInstancesWithPath, `max` instances per response.
    CimXmlPull { class: String, max: u32 },
    /// WS-Man Get.
    WsmanGet { address: wsman::Address },
    /// WS-Man Enumerate and Pull, `max` items per response.
    WsmanEnumerate {
        address: wsman::Address,
        mode: Option<&'static str>,
        max: u32,
    },
}

impl Workload {
    /// Prepares `op` on `class`; Get looks up the class's first instance.
    pub async fn prepare(target: &Target, op: Op, class: &str, max: u32) -> Result<Self, String> {
        let ns = target.namespace.as_str();
        let cimxml = |method: &'static str, params: String| Workload::CimXml {
            method,
            body: cimxml::call_xml(method, ns, &params),
            reading: match method {
                "GetClass" => cimxml::Reading::Checked { instances: 0 },
                "GetInstance" => cimxml::Reading::Checked { instances: 1 },
                _ => cimxml::Reading::Parsed,
            },
        };
        let class_uri = || wsman::Address {
            resource_uri: format!("{}{class}", wsman::DMTF_CLASS_PREFIX),
            selectors: Vec::new(),
            namespace: ns.to_string(),
        };
        Ok(match op {
            Op::EnumerateClassNames => cimxml(
                "EnumerateClassNames",
                cimxml::value_param("DeepInheritance", "TRUE"),
            ),
            Op::GetClass => cimxml(
                "GetClass",
                cimxml::class_param("ClassName", class)
                    + &cimxml::value_param("LocalOnly", "FALSE"),
            ),
            Op::EnumerateInstances => cimxml(
                "EnumerateInstances",
                cimxml::class_param("ClassName", class),
            ),
            Op::GetInstance => {
                let mut c = Client::connect(target).await?;
                let body = cimxml::call_xml(
                    "EnumerateInstanceNames",
                    ns,
                    &cimxml::class_param("ClassName", class),
                );
                let (names, _) = cimxml::call(&mut c, ns, "EnumerateInstanceNames", body).await?;
                let name = names
                    .first_name
                    .ok_or(format!("class {class} has no instances"))?;
                cimxml(
                    "GetInstance",
                    format!("<IPARAMVALUE NAME=\"InstanceName\">{name}</IPARAMVALUE>"),
                )
            }
            Op::PullInstances => Workload::CimXmlPull {
                class: class.to_string(),
                max,
            },
            Op::WsmanGet => {
                let mut c = Client::connect(target).await?;
                let address = class_uri();
                let request = wsman::envelope(
                    &target.url,
                    wsman::ENUMERATE,
                    &address,
                    &wsman::enumerate_body(Some("EnumerateEPR"), 1),
                );
                let (first, _) = wsman::send(&mut c, request).await?;
                let selectors: Vec<_> = first
                    .first_selectors
                    .into_iter()
                    .filter(|(name, _)| name != "__cimnamespace")
                    .collect();
                if selectors.is_empty() {
                    return Err(format!("class {class} has no instances"));
                }
                if let Some(context) = first.context.filter(|_| !first.end) {
                    let release = format!(
                        "<n:Release><n:EnumerationContext>{}</n:EnumerationContext></n:Release>",
                        cimxml::escape(&context)
                    );
                    let action = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release";
                    wsman::send(
                        &mut c,
                        wsman::envelope(&target.url, action, &address, &release),
                    )
                    .await?;
                }
                Workload::WsmanGet {
                    address: wsman::Address {
                        selectors,
                        ..address
                    },
                }
            }
            Op::WsmanEnumerate | Op::WsmanEnumerateWithEpr => Workload::WsmanEnumerate {
                address: class_uri(),
                mode: (op == Op::WsmanEnumerateWithEpr).then_some("EnumerateObjectAndEPR"),
                max,
            },
        })
    }

    /// Does the work once on `client`.
    pub async fn run_once(&self, client: &mut Client, target: &Target) -> Result<Done, String> {
        let ns = target.namespace.as_str();
        match self {
            Workload::CimXml {
                method,
                body,
                reading,
            } => {
                let (r, bytes) =
                    cimxml::call_reading(client, ns, method, body.clone(), *reading).await?;
                Ok(Done {
                    bytes,
                    instances: r.instances,
                })
            }
            Workload::CimXmlPull { class, max } => {
                let max = max.to_string();
                let open = cimxml::call_xml(
                    "OpenEnumerateInstances",
                    ns,
                    &(cimxml::class_param("ClassName", class)
                        + &cimxml::value_param("MaxObjectCount", &max)),
                );
                let (mut r, mut bytes) =
                    cimxml::call(client, ns, "OpenEnumerateInstances", open).await?;
                let mut instances = r.instances;
                while !r.end {
                    let context = r.context.ok_or("the open or pull returned no context")?;
                    let pull = cimxml::call_xml(
                        "PullInstancesWithPath",
                        ns,
                        &(cimxml::value_param("EnumerationContext", &context)
                            + &cimxml::value_param("MaxObjectCount", &max)),
                    );
                    let (next, n) = cimxml::call(client, ns, "PullInstancesWithPath", pull).await?;
                    bytes += n;
                    instances += next.instances;
                    r = next;
                }
                Ok(Done { bytes, instances })
            }
            Workload::WsmanGet { address } => {
                let request = wsman::envelope(&target.url, wsman::GET, address, "");
                let (r, bytes) = wsman::send(client, request).await?;
                if !r.has_body {
                    return Err("Get returned an empty body".into());
                }
                Ok(Done {
                    bytes,
                    instances: 1,
                })
            }
            Workload::WsmanEnumerate { address, mode, max } => {
                let body = wsman::enumerate_body(*mode, *max);
                let request = wsman::envelope(&target.url, wsman::ENUMERATE, address, &body);
                let (mut r, mut bytes) = wsman::send(client, request).await?;
                let mut instances = r.items;
                while !r.end {
                    let context = r.context.ok_or("the enumeration returned no context")?;
                    let body = wsman::pull_body(&context, *max);
                    let request = wsman::envelope(&target.url, wsman::PULL, address, &body);
                    let (next, n) = wsman::send(client, request).await?;
                    bytes += n;
                    instances += next.items;
                    r = next;
                }
                Ok(Done { bytes, instances })
            }
        }
    }
}
