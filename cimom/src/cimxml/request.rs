//! Decoding a CIM-XML request message into an [`Operation`].
//!
//! Faults of the envelope (CIM/MESSAGE/SIMPLEREQ) are protocol errors answered with an HTTP
//! status and a `CIMError` header; faults in the parameters of a well-formed call are CIM
//! errors answered inside a normal response.

use cim_schema::{duplicate_name, Instance, Name, ObjectPath, Value};

use super::decode::{self, required_attr, Decoder};
use super::dom::{self, Element, XmlError, XmlLimits};
use crate::dispatch::operation::{
    AssociationFilter, FilterQuery, InstanceOptions, OpenOptions, Operation, UntypedValue,
};
use crate::error::{CimError, CimResult};

/// A fault of the message envelope (DSP0200 7.5 CIMError header values).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not well-formed XML.
    #[error("request-not-well-formed: {0}")]
    NotWellFormed(String),
    /// Well-formed but not a valid CIM-XML request.
    #[error("request-not-valid: {0}")]
    NotValid(String),
    /// CIMVERSION is not 2.x.
    #[error("unsupported-cim-version: {0}")]
    UnsupportedCimVersion(String),
    /// DTDVERSION is not 2.x.
    #[error("unsupported-dtd-version: {0}")]
    UnsupportedDtdVersion(String),
    /// PROTOCOLVERSION is not 1.x.
    #[error("unsupported-protocol-version: {0}")]
    UnsupportedProtocolVersion(String),
    /// MULTIREQ.
    #[error("multiple-requests-unsupported")]
    MultipleRequests,
}

impl EnvelopeError {
    /// The `CIMError` header value.
    pub fn header(&self) -> &'static str {
        match self {
            EnvelopeError::NotWellFormed(_) => "request-not-well-formed",
            EnvelopeError::NotValid(_) => "request-not-valid",
            EnvelopeError::UnsupportedCimVersion(_) => "unsupported-cim-version",
            EnvelopeError::UnsupportedDtdVersion(_) => "unsupported-dtd-version",
            EnvelopeError::UnsupportedProtocolVersion(_) => "unsupported-protocol-version",
            EnvelopeError::MultipleRequests => "multiple-requests-unsupported",
        }
    }

    /// The HTTP status: 501 for what the server does not implement, else 400.
    pub fn status(&self) -> u16 {
        match self {
            EnvelopeError::NotWellFormed(_) | EnvelopeError::NotValid(_) => 400,
            _ => 501,
        }
    }
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// MESSAGE ID, echoed in the response.
    pub id: String,
    /// MESSAGE PROTOCOLVERSION.
    pub protocol_version: String,
    /// The method name (intrinsic operation or extrinsic method).
    pub method: String,
    /// IMETHODCALL (true) or METHODCALL.
    pub intrinsic: bool,
    /// The target namespace.
    pub namespace: String,
    /// For METHODCALL: the target class (for the CIMObject header check).
    pub target_class: Option<Name>,
    /// The operation, or why its parameters are invalid.
    pub operation: CimResult<Operation>,
}

fn not_valid(msg: impl Into<String>) -> EnvelopeError {
    EnvelopeError::NotValid(msg.into())
}

fn child<'e, 'd>(e: &'e Element<'d>, name: &str) -> Result<&'e Element<'d>, EnvelopeError> {
    e.child(name)
        .ok_or_else(|| not_valid(format!("<{}> lacks <{name}>", e.name)))
}

fn major_is(version: &str, major: &str) -> bool {
    version.trim().split('.').next() == Some(major)
}

/// Decodes a request body.
pub fn parse(body: &[u8], limits: &XmlLimits) -> Result<Request, EnvelopeError> {
    let root = dom::parse_cim_xml(body, limits).map_err(|e| match e {
        XmlError::Malformed { .. } => EnvelopeError::NotWellFormed(e.to_string()),
        _ => EnvelopeError::NotValid(e.to_string()),
    })?;
    if root.name != "CIM" {
        return Err(not_valid(format!(
            "the root element is <{}>, not <CIM>",
            root.name
        )));
    }
    let cim_version = root
        .attr("CIMVERSION")
        .ok_or_else(|| not_valid("<CIM> lacks CIMVERSION"))?;
    if !major_is(cim_version, "2") {
        return Err(EnvelopeError::UnsupportedCimVersion(
            cim_version.to_string(),
        ));
    }
    let dtd_version = root
        .attr("DTDVERSION")
        .ok_or_else(|| not_valid("<CIM> lacks DTDVERSION"))?;
    if !major_is(dtd_version, "2") {
        return Err(EnvelopeError::UnsupportedDtdVersion(
            dtd_version.to_string(),
        ));
    }
    let message = child(&root, "MESSAGE")?;
    let id = message
        .attr("ID")
        .ok_or_else(|| not_valid("<MESSAGE> lacks ID"))?;
    let protocol_version = message
        .attr("PROTOCOLVERSION")
        .ok_or_else(|| not_valid("<MESSAGE> lacks PROTOCOLVERSION"))?;
    if !major_is(protocol_version, "1") {
        return Err(EnvelopeError::UnsupportedProtocolVersion(
            protocol_version.to_string(),
        ));
    }
    if message.child("MULTIREQ").is_some() {
        return Err(EnvelopeError::MultipleRequests);
    }
    let simple = message.child("SIMPLEREQ").ok_or_else(|| {
        not_valid("<MESSAGE> holds no <SIMPLEREQ>; this server accepts requests only")
    })?;
    let call = simple
        .children
        .iter()
        .find(|c| c.name != "CORRELATOR")
        .ok_or_else(|| not_valid("<SIMPLEREQ> holds no method call"))?;
    check_names_and_flags(call)?;
    let limits_copy = *limits;
    match call.name.as_ref() {
        "IMETHODCALL" => {
            let method = call
                .attr("NAME")
                .ok_or_else(|| not_valid("<IMETHODCALL> lacks NAME"))?;
            let namespace = decode::local_namespace_path(child(call, "LOCALNAMESPACEPATH")?)
                .map_err(|e| not_valid(e.description))?;
            let operation = intrinsic(method, call, &limits_copy);
            Ok(Request {
                id: id.to_string(),
                protocol_version: protocol_version.to_string(),
                method: method.to_string(),
                intrinsic: true,
                namespace,
                target_class: None,
                operation,
            })
        }
        "METHODCALL" => {
            let method = call
                .attr("NAME")
                .ok_or_else(|| not_valid("<METHODCALL> lacks NAME"))?;
            let target = call
                .children
                .iter()
                .find(|c| c.name == "LOCALINSTANCEPATH" || c.name == "LOCALCLASSPATH")
                .ok_or_else(|| {
                    not_valid("<METHODCALL> lacks LOCALINSTANCEPATH or LOCALCLASSPATH")
                })?;
            let path = decode::object_path(target).map_err(|e| not_valid(e.description))?;
            let namespace = path.namespace.clone().unwrap_or_default();
            let target_class = Some(path.class_name.clone());
            let operation = extrinsic(method, path, call, &limits_copy);
            Ok(Request {
                id: id.to_string(),
                protocol_version: protocol_version.to_string(),
                method: method.to_string(),
                intrinsic: false,
                namespace,
                target_class,
                operation,
            })
        }
        other => Err(not_valid(format!("<{other}> is not a method call"))),
    }
}

/// The intrinsic parameters that are booleans (DSP0200 5.3): present, they must hold a VALUE.
const BOOLEAN_PARAMETERS: &[&str] = &[
    "LocalOnly",
    "DeepInheritance",
    "IncludeQualifiers",
    "IncludeClassOrigin",
    "ContinueOnError",
    "ReturnQueryResultClass",
];

/// Refuses as invalid what the DTD admits but no request can mean: a boolean parameter with
/// no VALUE, and a class name that is not a CIM identifier (an empty CLASSNAME, say).
/// DSP0200 is silent on both; this answers them as OpenPegasus does (400
/// `request-not-valid`) rather than as a CIM error about a class that cannot exist.
fn check_names_and_flags(call: &Element) -> Result<(), EnvelopeError> {
    for p in call.children_named("IPARAMVALUE") {
        let name = p.attr("NAME").unwrap_or_default();
        if p.children.is_empty()
            && BOOLEAN_PARAMETERS
                .iter()
                .any(|b| b.eq_ignore_ascii_case(name))
        {
            return Err(not_valid(format!(
                "the boolean parameter {name} has no VALUE"
            )));
        }
    }
    check_class_names(call)
}

fn check_class_names(e: &Element) -> Result<(), EnvelopeError> {
    let attribute = match e.name.as_ref() {
        "CLASSNAME" | "CLASS" => Some("NAME"),
        "INSTANCENAME" | "INSTANCE" => Some("CLASSNAME"),
        _ => None,
    };
    if let Some((attribute, class)) = attribute.and_then(|a| Some((a, e.attr(a)?))) {
        if !cim_schema::is_identifier(class) {
            return Err(not_valid(format!(
                "<{} {attribute}=\"{class}\"> does not name a class: a class name is a CIM identifier",
                e.name
            )));
        }
    }
    e.children.iter().try_for_each(check_class_names)
}

/// The IPARAMVALUEs of one call, consumed by name.
struct Params<'e> {
    method: &'e str,
    /// The parameters given, each with whether the operation has read it.
    values: Vec<(&'e str, &'e Element<'e>, bool)>,
    decoder: Decoder<'e>,
}

fn text_bool(e: &Element, name: &str) -> CimResult<bool> {
    match e.text.trim() {
        t if t.eq_ignore_ascii_case("true") => Ok(true),
        t if t.eq_ignore_ascii_case("false") => Ok(false),
        t => Err(CimError::invalid_parameter(format!(
            "parameter {name} must be TRUE or FALSE, not '{t}'"
        ))),
    }
}

impl<'e> Params<'e> {
    fn new(method: &'e str, call: &'e Element<'e>, limits: &'e XmlLimits) -> CimResult<Self> {
        let mut values: Vec<(&str, &Element<'_>, bool)> = Vec::new();
        for p in call.children_named("IPARAMVALUE") {
            values.push((required_attr(p, "NAME")?, p, false));
        }
        if let Some((name, _, _)) = duplicate_name(&values, |v| v.0) {
            return Err(CimError::invalid_parameter(format!(
                "parameter {name} is given twice"
            )));
        }
        Ok(Params {
            method,
            values,
            decoder: Decoder {
                limits,
                namespace: None,
            },
        })
    }

    /// The content element of parameter `name`; `None` when absent or NULL.
    fn get(&mut self, name: &str) -> Option<&'e Element<'e>> {
        let (_, e, used) = self
            .values
            .iter_mut()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))?;
        *used = true;
        e.children.first().filter(|c| c.name != "VALUE.NULL")
    }

    fn required(&mut self, name: &str) -> CimResult<&'e Element<'e>> {
        let method = self.method;
        self.get(name).ok_or_else(|| {
            CimError::invalid_parameter(format!("{method} requires parameter {name}"))
        })
    }

    /// Refuses parameters the operation does not define.
    fn finish(&self) -> CimResult<()> {
        if let Some((n, _, _)) = self.values.iter().find(|(_, _, used)| !used) {
            return Err(CimError::invalid_parameter(format!(
                "{} has no parameter {n}",
                self.method
            )));
        }
        Ok(())
    }

    fn bool(&mut self, name: &str, default: bool) -> CimResult<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(e) if e.name == "VALUE" => text_bool(e, name),
            Some(e) => Err(CimError::invalid_parameter(format!(
                "parameter {name} must be a VALUE, not <{}>",
                e.name
            ))),
        }
    }

    fn string(&mut self, name: &str) -> CimResult<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(e) if e.name == "VALUE" => Ok(Some(e.text.to_string())),
            Some(e) => Err(CimError::invalid_parameter(format!(
                "parameter {name} must be a VALUE, not <{}>",
                e.name
            ))),
        }
    }

    fn required_string(&mut self, name: &str) -> CimResult<String> {
        let method = self.method;
        self.string(name)?.ok_or_else(|| {
            CimError::invalid_parameter(format!("{method} requires parameter {name}"))
        })
    }

    fn u32(&mut self, name: &str) -> CimResult<Option<u32>> {
        match self.string(name)? {
            None => Ok(None),
            Some(t) => t.trim().parse().map(Some).map_err(|_| {
                CimError::invalid_parameter(format!("parameter {name} must be a uint32, not '{t}'"))
            }),
        }
    }

    fn name(&mut self, name: &str) -> CimResult<Option<Name>> {
        match self.get(name) {
            None => Ok(None),
            Some(e) if e.name == "CLASSNAME" => decode::class_name(e).map(Some),
            // Some clients send role and class filters as plain values.
            Some(e) if e.name == "VALUE" => Ok(Some(Name::new(e.text.trim()))),
            Some(e) => Err(CimError::invalid_parameter(format!(
                "parameter {name} must be a CLASSNAME, not <{}>",
                e.name
            ))),
        }
    }

    fn required_class_name(&mut self, name: &str) -> CimResult<Name> {
        let method = self.method;
        self.name(name)?.ok_or_else(|| {
            CimError::invalid_parameter(format!("{method} requires parameter {name}"))
        })
    }

    /// An INSTANCENAME; the longer path forms are accepted too (their namespace and host
    /// are ignored, as the request's namespace applies).
    fn instance_name(&mut self, name: &str) -> CimResult<ObjectPath> {
        let path = decode::object_path(self.required(name)?)?.local();
        if path.keys.is_empty() {
            return Err(CimError::invalid_parameter(format!(
                "parameter {name} must be an instance path, not the class {}",
                path.class_name
            )));
        }
        Ok(path)
    }

    fn object_name(&mut self, name: &str) -> CimResult<ObjectPath> {
        decode::object_path(self.required(name)?)
    }

    fn property_list(&mut self, name: &str) -> CimResult<Option<Vec<Name>>> {
        match self.get(name) {
            None => Ok(None),
            Some(e) if e.name == "VALUE.ARRAY" => Ok(Some(
                e.children
                    .iter()
                    .filter(|v| v.name == "VALUE")
                    .map(|v| Name::new(v.text.trim()))
                    .collect(),
            )),
            Some(e) => Err(CimError::invalid_parameter(format!(
                "parameter {name} must be a VALUE.ARRAY, not <{}>",
                e.name
            ))),
        }
    }

    fn instance(&mut self, name: &str) -> CimResult<Instance> {
        let e = self.required(name)?;
        if e.name != "INSTANCE" {
            return Err(CimError::invalid_parameter(format!(
                "parameter {name} must be an INSTANCE, not <{}>",
                e.name
            )));
        }
        self.decoder.instance(e)
    }

    fn untyped(&mut self, name: &str) -> CimResult<Option<UntypedValue>> {
        self.get(name).map(untyped_value).transpose()
    }

    fn instance_options(&mut self, local_only_default: bool) -> CimResult<InstanceOptions> {
        Ok(InstanceOptions {
            local_only: self.bool("LocalOnly", local_only_default)?,
            deep_inheritance: self.bool("DeepInheritance", true)?,
            include_class_origin: self.bool("IncludeClassOrigin", false)?,
            property_list: self.property_list("PropertyList")?,
        })
    }

    fn association_filter(&mut self, associators: bool) -> CimResult<AssociationFilter> {
        Ok(if associators {
            AssociationFilter {
                assoc_class: self.name("AssocClass")?,
                result_class: self.name("ResultClass")?,
                role: self.string("Role")?.map(|s| Name::new(s.trim())),
                result_role: self.string("ResultRole")?.map(|s| Name::new(s.trim())),
            }
        } else {
            AssociationFilter {
                assoc_class: self.name("ResultClass")?,
                result_class: None,
                role: self.string("Role")?.map(|s| Name::new(s.trim())),
                result_role: None,
            }
        })
    }

    fn open_options(&mut self) -> CimResult<OpenOptions> {
        let language = self.string("FilterQueryLanguage")?;
        let query = self.string("FilterQuery")?;
        let filter = match (language, query) {
            (None, None) => None,
            (Some(language), Some(query)) => Some(FilterQuery { language, query }),
            _ => {
                return Err(CimError::invalid_parameter(
                    "FilterQueryLanguage and FilterQuery must be given together",
                ))
            }
        };
        Ok(OpenOptions {
            filter,
            operation_timeout: self.u32("OperationTimeout")?,
            continue_on_error: self.bool("ContinueOnError", false)?,
            max_object_count: self.u32("MaxObjectCount")?.unwrap_or(0),
        })
    }
}

/// An IPARAMVALUE or PARAMVALUE content element as an untyped value.
fn untyped_value(e: &Element) -> CimResult<UntypedValue> {
    Ok(match e.name.as_ref() {
        "VALUE" => UntypedValue::Text(e.text.to_string()),
        "VALUE.ARRAY" => UntypedValue::TextArray(
            e.children
                .iter()
                .map(|v| (v.name == "VALUE").then(|| v.text.to_string()))
                .collect(),
        ),
        "VALUE.REFERENCE" => UntypedValue::Typed(Value::Reference(decode::value_reference(e)?)),
        "VALUE.REFARRAY" => UntypedValue::Typed(Value::Array(
            e.children
                .iter()
                .map(|r| match r.name.as_ref() {
                    "VALUE.NULL" => Ok(None),
                    _ => decode::value_reference(r).map(|p| Some(Value::Reference(p))),
                })
                .collect::<CimResult<_>>()?,
        )),
        "CLASSNAME" | "INSTANCENAME" => {
            UntypedValue::Typed(Value::Reference(decode::object_path(e)?))
        }
        other => {
            return Err(CimError::invalid_parameter(format!(
                "<{other}> is not a parameter value"
            )))
        }
    })
}

fn intrinsic(method: &str, call: &Element, limits: &XmlLimits) -> CimResult<Operation> {
    let mut p = Params::new(method, call, limits)?;
    let op = match method {
        "GetClass" => Operation::GetClass {
            class: p.required_class_name("ClassName")?,
            local_only: p.bool("LocalOnly", true)?,
            include_qualifiers: p.bool("IncludeQualifiers", true)?,
            include_class_origin: p.bool("IncludeClassOrigin", false)?,
            property_list: p.property_list("PropertyList")?,
        },
        "EnumerateClasses" => Operation::EnumerateClasses {
            class: p.name("ClassName")?,
            deep_inheritance: p.bool("DeepInheritance", false)?,
            local_only: p.bool("LocalOnly", true)?,
            include_qualifiers: p.bool("IncludeQualifiers", true)?,
            include_class_origin: p.bool("IncludeClassOrigin", false)?,
        },
        "EnumerateClassNames" => Operation::EnumerateClassNames {
            class: p.name("ClassName")?,
            deep_inheritance: p.bool("DeepInheritance", false)?,
        },
        "CreateClass" | "ModifyClass" => {
            let e = p.required(if method == "CreateClass" {
                "NewClass"
            } else {
                "ModifiedClass"
            })?;
            if e.name != "CLASS" {
                return Err(CimError::invalid_parameter(format!(
                    "{method} takes a CLASS, not <{}>",
                    e.name
                )));
            }
            let class = p.decoder.class(e)?;
            if method == "CreateClass" {
                Operation::CreateClass { class }
            } else {
                Operation::ModifyClass { class }
            }
        }
        "DeleteClass" => Operation::DeleteClass {
            class: p.required_class_name("ClassName")?,
        },
        "GetQualifier" => Operation::GetQualifier {
            name: Name::new(&p.required_string("QualifierName")?),
        },
        "DeleteQualifier" => Operation::DeleteQualifier {
            name: Name::new(&p.required_string("QualifierName")?),
        },
        "SetQualifier" => {
            let e = p.required("QualifierDeclaration")?;
            Operation::SetQualifier {
                declaration: p.decoder.qualifier_declaration(e)?,
            }
        }
        "EnumerateQualifiers" => Operation::EnumerateQualifiers,
        "GetInstance" => {
            let path = p.instance_name("InstanceName")?;
            // Instance qualifiers are deprecated (DSP0200 1.2); the flag is checked, not used.
            let _ = p.bool("IncludeQualifiers", false)?;
            let mut options = p.instance_options(false)?;
            options.deep_inheritance = true;
            Operation::GetInstance { path, options }
        }
        "EnumerateInstances" => {
            let class = p.required_class_name("ClassName")?;
            let _ = p.bool("IncludeQualifiers", false)?;
            Operation::EnumerateInstances {
                class,
                options: p.instance_options(false)?,
            }
        }
        "EnumerateInstanceNames" => Operation::EnumerateInstanceNames {
            class: p.required_class_name("ClassName")?,
        },
        "CreateInstance" => Operation::CreateInstance {
            instance: p.instance("NewInstance")?,
        },
        "ModifyInstance" => {
            let e = p.required("ModifiedInstance")?;
            if e.name != "VALUE.NAMEDINSTANCE" {
                return Err(CimError::invalid_parameter(format!(
                    "ModifiedInstance must be a VALUE.NAMEDINSTANCE, not <{}>",
                    e.name
                )));
            }
            let path = decode::instance_name(e.child("INSTANCENAME").ok_or_else(|| {
                CimError::invalid_parameter("ModifiedInstance lacks INSTANCENAME")
            })?)?;
            let instance =
                p.decoder.instance(e.child("INSTANCE").ok_or_else(|| {
                    CimError::invalid_parameter("ModifiedInstance lacks INSTANCE")
                })?)?;
            let _ = p.bool("IncludeQualifiers", true)?;
            Operation::ModifyInstance {
                path,
                instance,
                property_list: p.property_list("PropertyList")?,
            }
        }
        "DeleteInstance" => Operation::DeleteInstance {
            path: p.instance_name("InstanceName")?,
        },
        "GetProperty" => Operation::GetProperty {
            path: p.instance_name("InstanceName")?,
            property: Name::new(p.required_string("PropertyName")?.trim()),
        },
        "SetProperty" => Operation::SetProperty {
            path: p.instance_name("InstanceName")?,
            property: Name::new(p.required_string("PropertyName")?.trim()),
            value: p.untyped("NewValue")?,
        },
        "Associators" | "References" => {
            let object = p.object_name("ObjectName")?;
            let filter = p.association_filter(method == "Associators")?;
            let include_qualifiers = p.bool("IncludeQualifiers", false)?;
            let options = InstanceOptions {
                include_class_origin: p.bool("IncludeClassOrigin", false)?,
                property_list: p.property_list("PropertyList")?,
                ..Default::default()
            };
            if method == "Associators" {
                Operation::Associators {
                    object,
                    filter,
                    options,
                    include_qualifiers,
                }
            } else {
                Operation::References {
                    object,
                    filter,
                    options,
                    include_qualifiers,
                }
            }
        }
        "AssociatorNames" => Operation::AssociatorNames {
            object: p.object_name("ObjectName")?,
            filter: p.association_filter(true)?,
        },
        "ReferenceNames" => Operation::ReferenceNames {
            object: p.object_name("ObjectName")?,
            filter: p.association_filter(false)?,
        },
        "ExecQuery" => Operation::ExecQuery {
            language: p.required_string("QueryLanguage")?,
            query: p.required_string("Query")?,
        },
        "OpenEnumerateInstances" => Operation::OpenEnumerateInstances {
            class: p.required_class_name("ClassName")?,
            options: InstanceOptions {
                local_only: false,
                deep_inheritance: p.bool("DeepInheritance", true)?,
                include_class_origin: p.bool("IncludeClassOrigin", false)?,
                property_list: p.property_list("PropertyList")?,
            },
            open: p.open_options()?,
        },
        "OpenEnumerateInstancePaths" => Operation::OpenEnumerateInstancePaths {
            class: p.required_class_name("ClassName")?,
            open: p.open_options()?,
        },
        "OpenReferenceInstances" | "OpenAssociatorInstances" => {
            let object = p.instance_name("InstanceName")?;
            let filter = p.association_filter(method == "OpenAssociatorInstances")?;
            let options = InstanceOptions {
                include_class_origin: p.bool("IncludeClassOrigin", false)?,
                property_list: p.property_list("PropertyList")?,
                ..Default::default()
            };
            let open = p.open_options()?;
            if method == "OpenAssociatorInstances" {
                Operation::OpenAssociatorInstances {
                    object,
                    filter,
                    options,
                    open,
                }
            } else {
                Operation::OpenReferenceInstances {
                    object,
                    filter,
                    options,
                    open,
                }
            }
        }
        "OpenReferenceInstancePaths" | "OpenAssociatorInstancePaths" => {
            let object = p.instance_name("InstanceName")?;
            let filter = p.association_filter(method == "OpenAssociatorInstancePaths")?;
            let open = p.open_options()?;
            if method == "OpenAssociatorInstancePaths" {
                Operation::OpenAssociatorInstancePaths {
                    object,
                    filter,
                    open,
                }
            } else {
                Operation::OpenReferenceInstancePaths {
                    object,
                    filter,
                    open,
                }
            }
        }
        "OpenQueryInstances" => {
            let query = p.required_string("FilterQuery")?;
            let language = p.required_string("FilterQueryLanguage")?;
            let return_query_result_class = p.bool("ReturnQueryResultClass", false)?;
            Operation::OpenQueryInstances {
                language,
                query,
                return_query_result_class,
                open: OpenOptions {
                    filter: None,
                    operation_timeout: p.u32("OperationTimeout")?,
                    continue_on_error: p.bool("ContinueOnError", false)?,
                    max_object_count: p.u32("MaxObjectCount")?.unwrap_or(0),
                },
            }
        }
        "PullInstancesWithPath" | "PullInstancePaths" | "PullInstances" => {
            let context = p.required_string("EnumerationContext")?;
            let max_object_count = p.u32("MaxObjectCount")?.ok_or_else(|| {
                CimError::invalid_parameter(format!("{method} requires parameter MaxObjectCount"))
            })?;
            match method {
                "PullInstancesWithPath" => Operation::PullInstancesWithPath {
                    context,
                    max_object_count,
                },
                "PullInstancePaths" => Operation::PullInstancePaths {
                    context,
                    max_object_count,
                },
                _ => Operation::PullInstances {
                    context,
                    max_object_count,
                },
            }
        }
        "EnumerationCount" => Operation::EnumerationCount {
            context: p.required_string("EnumerationContext")?,
        },
        "CloseEnumeration" => Operation::CloseEnumeration {
            context: p.required_string("EnumerationContext")?,
        },
        other => {
            return Err(CimError::not_supported(format!(
                "'{other}' is not an intrinsic operation of DSP0200"
            )))
        }
    };
    p.finish()?;
    Ok(op)
}

fn extrinsic(
    method: &str,
    target: ObjectPath,
    call: &Element,
    limits: &XmlLimits,
) -> CimResult<Operation> {
    let decoder = Decoder {
        limits,
        namespace: None,
    };
    let mut parameters: Vec<(Name, Option<UntypedValue>)> = Vec::new();
    for p in call.children_named("PARAMVALUE") {
        let name = Name::new(required_attr(p, "NAME")?);
        let value = match p.children.first() {
            None => None,
            Some(v) if v.name == "VALUE.NULL" => None,
            Some(v) if v.name == "INSTANCE" => Some(UntypedValue::Typed(Value::Instance(
                Box::new(decoder.instance(v)?),
            ))),
            Some(v) => {
                let typed = p
                    .attr("PARAMTYPE")
                    .filter(|t| !matches!(*t, "reference" | "object" | "instance"))
                    .filter(|_| p.attr("EmbeddedObject").is_none());
                match typed {
                    Some(t) if v.name == "VALUE" || v.name == "VALUE.ARRAY" => {
                        let ty = decode::cim_type(t)?;
                        UntypedValue::Typed(
                            decoder
                                .value(v, ty, false)?
                                .unwrap_or(Value::Array(Vec::new())),
                        )
                        .into()
                    }
                    _ => Some(untyped_value(v)?),
                }
            }
        };
        parameters.push((name, value));
    }
    if let Some((name, _)) = duplicate_name(&parameters, |(n, _)| n.as_str()) {
        return Err(CimError::invalid_parameter(format!(
            "parameter {name} is given twice"
        )));
    }
    Ok(Operation::InvokeMethod {
        target,
        method: Name::new(method),
        parameters,
    })
}
