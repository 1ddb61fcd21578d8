//! CIM-XML (DSP0200) requests and what cimload reads from the responses.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::client::Client;

/// Escapes text for an XML attribute or element.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn namespace_xml(ns: &str) -> String {
    let segs: String = ns
        .split('/')
        .map(|s| format!("<NAMESPACE NAME=\"{}\"/>", escape(s)))
        .collect();
    format!("<LOCALNAMESPACEPATH>{segs}</LOCALNAMESPACEPATH>")
}

/// A whole intrinsic method call message.
pub fn call_xml(method: &str, ns: &str, params: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">\
         <MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"{method}\">{}{params}\
         </IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>",
        namespace_xml(ns)
    )
}

/// An IPARAMVALUE holding a class name.
pub fn class_param(name: &str, class: &str) -> String {
    format!(
        "<IPARAMVALUE NAME=\"{name}\"><CLASSNAME NAME=\"{}\"/></IPARAMVALUE>",
        escape(class)
    )
}

/// An IPARAMVALUE holding one VALUE.
pub fn value_param(name: &str, value: &str) -> String {
    format!(
        "<IPARAMVALUE NAME=\"{name}\"><VALUE>{}</VALUE></IPARAMVALUE>",
        escape(value)
    )
}

/// How much of a response cimload reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Every element: instances, the first instance name, the enumeration context.
    Parsed,
    /// Only whether it succeeded, for the single-object operations: parsing their replies
    /// cost cimload more CPU than the server spent answering them, which capped what the
    /// benchmark could measure on a machine the two share.
    Checked {
        /// The instances a successful reply holds.
        instances: usize,
    },
}

/// Sends one intrinsic call to /cimom and reads the response.
pub async fn call(
    client: &mut Client,
    namespace: &str,
    method: &str,
    body: String,
) -> Result<(Response, usize), String> {
    call_reading(client, namespace, method, body, Reading::Parsed).await
}

/// [`call`], reading the response only as far as `reading` says.
pub async fn call_reading(
    client: &mut Client,
    namespace: &str,
    method: &str,
    body: String,
    reading: Reading,
) -> Result<(Response, usize), String> {
    let object = namespace.replace('/', "%2F");
    let bytes = client
        .post(
            "/cimom",
            &[
                ("Content-Type", "application/xml; charset=\"utf-8\""),
                ("CIMOperation", "MethodCall"),
                ("CIMMethod", method),
                ("CIMObject", &object),
            ],
            body,
        )
        .await?;
    let response = match reading {
        Reading::Parsed => Response::read(&bytes)?,
        Reading::Checked { instances } => Response::check(&bytes, instances)?,
    };
    Ok((response, bytes.len()))
}

/// What cimload needs from a CIM-XML response.
#[derive(Debug, Default)]
pub struct Response {
    /// Instances returned (INSTANCE elements directly in the result, not embedded ones).
    pub instances: usize,
    /// The first INSTANCENAME, as XML to send back.
    pub first_name: Option<String>,
    /// The EnumerationContext output parameter of an open or pull operation.
    pub context: Option<String>,
    /// Whether EndOfSequence is TRUE.
    pub end: bool,
}

impl Response {
    /// Checks a single-object response without parsing it: the message is whole and holds
    /// an IRETURNVALUE and no ERROR (markup can only spell `<ERROR` as that element, since
    /// text escapes `<`). An error is parsed, for its code and description.
    pub fn check(xml: &[u8], instances: usize) -> Result<Response, String> {
        use memchr::memmem::find;
        if find(xml, b"<ERROR").is_some() {
            return Response::read(xml);
        }
        if !xml.trim_ascii_end().ends_with(b"</CIM>") {
            return Err("the response ends before </CIM>".into());
        }
        if find(xml, b"<IRETURNVALUE").is_none() {
            return Err("the response has no IRETURNVALUE".into());
        }
        Ok(Response {
            instances,
            ..Response::default()
        })
    }

    /// Reads a response; an ERROR element is returned as the error.
    pub fn read(xml: &[u8]) -> Result<Response, String> {
        let mut reader = Reader::from_reader(xml);
        let mut out = Response::default();
        let mut stack: Vec<Vec<u8>> = Vec::new();
        let mut param: Option<String> = None;
        let mut name_start = None;
        loop {
            let start = reader.buffer_position() as usize;
            let event = reader.read_event().map_err(|e| format!("bad XML: {e}"))?;
            let (tag, empty) = match &event {
                Event::Start(t) => (t, false),
                Event::Empty(t) => (t, true),
                Event::End(_) => {
                    let name = stack.pop().unwrap_or_default();
                    if let (b"INSTANCENAME", Some(from), None) =
                        (name.as_slice(), name_start, &out.first_name)
                    {
                        let to = reader.buffer_position() as usize;
                        out.first_name = Some(String::from_utf8_lossy(&xml[from..to]).into_owned());
                    }
                    if name == b"PARAMVALUE" {
                        param = None;
                    }
                    continue;
                }
                Event::Text(t) => {
                    if stack.last().is_some_and(|n| n == b"VALUE") {
                        let text = t.decode().map_err(|e| e.to_string())?;
                        match param.as_deref() {
                            Some("EnumerationContext") => out.context = Some(text.into_owned()),
                            Some("EndOfSequence") => out.end = text.eq_ignore_ascii_case("TRUE"),
                            _ => {}
                        }
                    }
                    continue;
                }
                Event::Eof => break,
                _ => continue,
            };
            let name = tag.local_name().as_ref().to_vec();
            let attr = |key: &[u8]| {
                tag.try_get_attribute(key)
                    .ok()
                    .flatten()
                    .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
            };
            match name.as_slice() {
                b"ERROR" => {
                    return Err(format!(
                        "CIM error {}: {}",
                        attr(b"CODE").unwrap_or_default(),
                        attr(b"DESCRIPTION").unwrap_or_default()
                    ))
                }
                b"INSTANCE"
                    if stack.last().is_some_and(|p| {
                        matches!(
                            p.as_slice(),
                            b"IRETURNVALUE" | b"VALUE.NAMEDINSTANCE" | b"VALUE.INSTANCEWITHPATH"
                        )
                    }) =>
                {
                    out.instances += 1
                }
                b"INSTANCENAME" if name_start.is_none() => {
                    name_start = Some(start);
                    if empty {
                        let to = reader.buffer_position() as usize;
                        out.first_name =
                            Some(String::from_utf8_lossy(&xml[start..to]).into_owned());
                    }
                }
                b"PARAMVALUE" => param = attr(b"NAME"),
                _ => {}
            }
            if !empty {
                stack.push(name);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"<?xml version=\"1.0\"?><CIM><MESSAGE ID=\"1\"><SIMPLERSP>\
        <IMETHODRESPONSE NAME=\"GetInstance\"><IRETURNVALUE><INSTANCE CLASSNAME=\"X\"/>\
        </IRETURNVALUE></IMETHODRESPONSE></SIMPLERSP></MESSAGE></CIM>\n";

    #[test]
    fn a_checked_reply_counts_what_the_caller_says() {
        assert_eq!(Response::check(OK, 1).expect("a success").instances, 1);
    }

    #[test]
    fn a_checked_error_carries_its_code() {
        let error = b"<CIM><MESSAGE ID=\"1\"><SIMPLERSP><IMETHODRESPONSE NAME=\"GetClass\">\
            <ERROR CODE=\"6\" DESCRIPTION=\"no such class\"/></IMETHODRESPONSE></SIMPLERSP>\
            </MESSAGE></CIM>";
        let e = Response::check(error, 0).expect_err("an error");
        assert!(e.contains("CIM error 6: no such class"), "{e}");
    }

    #[test]
    fn a_checked_reply_must_be_whole() {
        assert!(Response::check(&OK[..OK.len() - 10], 1).is_err());
        let no_result = b"<CIM><MESSAGE ID=\"1\"><SIMPLERSP/></MESSAGE></CIM>";
        assert!(Response::check(no_result, 1).is_err());
    }
}
