//! A small element tree for CIM-XML and SOAP documents, read with quick-xml under limits.
//!
//! Requests are bounded by the body size limit, so a tree is the simplest faithful model.
//! Names, attributes and text borrow from the document wherever it holds them as they are
//! (no escapes), so reading a request allocates little beyond the tree's own vectors.
//! Element names are resolved against their XML namespace declarations (CIM-XML uses none;
//! WS-Management depends on them).
//! There is no DTD processing: a DOCTYPE is refused outright, and the only entity references
//! resolved are XML's five predefined ones and character references.

use std::borrow::Cow;

use quick_xml::events::attributes::Attributes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, Reader};

/// An element: name, attributes in document order, child elements and text content, each
/// borrowed from the document (`'a`) where it can be.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element<'a> {
    /// The element name as written, prefix included (CIM-XML uses no XML namespaces).
    pub name: Cow<'a, str>,
    /// The namespace URI the element's name is bound to, if any.
    pub namespace: Option<String>,
    /// Attributes as (name, unescaped value).
    pub attrs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Child elements.
    pub children: Vec<Element<'a>>,
    /// Concatenated character data directly inside this element.
    pub text: Cow<'a, str>,
}

/// Most attributes one element may carry. Real documents carry up to 15 (an OVF envelope's
/// namespace declarations); the limit keeps the duplicate-attribute check, which compares
/// each attribute with those before it, from costing time quadratic in the body's size.
pub const MAX_ATTRIBUTES: usize = 64;

/// Limits on the shape of a document.
#[derive(Clone, Copy, Debug)]
pub struct XmlLimits {
    /// Deepest element nesting allowed.
    pub max_depth: usize,
    /// Most elements allowed in one document.
    pub max_elements: usize,
}

/// Why a document was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML.
    #[error("XML is not well-formed at byte {position}: {message}")]
    Malformed {
        /// Byte offset where the fault was found.
        position: u64,
        /// The parser's explanation.
        message: String,
    },
    /// A document type declaration: DTDs are not processed, so they are refused.
    #[error("a DOCTYPE declaration is not allowed in a request (DTDs are not processed)")]
    Doctype,
    /// Nesting deeper than the limit.
    #[error("XML elements are nested deeper than the limit of {0}")]
    TooDeep(usize),
    /// More elements than the limit.
    #[error("the XML document has more elements than the limit of {0}")]
    TooManyElements(usize),
    /// An element with more attributes than [`MAX_ATTRIBUTES`].
    #[error("XML element {element} has more attributes than the limit of {MAX_ATTRIBUTES}")]
    TooManyAttributes {
        /// The element's name.
        element: String,
    },
}

impl<'a> Element<'a> {
    /// The element with everything it borrows copied: one that outlives its document.
    pub fn into_owned(self) -> Element<'static> {
        Element {
            name: Cow::Owned(self.name.into_owned()),
            namespace: self.namespace,
            attrs: self
                .attrs
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            children: self.children.into_iter().map(Element::into_owned).collect(),
            text: Cow::Owned(self.text.into_owned()),
        }
    }

    /// The attribute `name`. Exact match first, then ignoring ASCII case (old clients spell
    /// `EmbeddedObject` as `EMBEDDEDOBJECT`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .or_else(|| {
                self.attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.as_ref())
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children named `name`.
    pub fn children_named<'s>(
        &'s self,
        name: &'s str,
    ) -> impl Iterator<Item = &'s Element<'a>> + 's {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The name without its prefix.
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or_default()
    }

    /// Whether the element is `local` in namespace `namespace`.
    pub fn is(&self, namespace: &str, local: &str) -> bool {
        self.namespace.as_deref() == Some(namespace) && self.local_name() == local
    }

    /// The first child that is `local` in namespace `namespace`.
    pub fn child_ns(&self, namespace: &str, local: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.is(namespace, local))
    }

    /// All children that are `local` in namespace `namespace`.
    pub fn children_ns<'s>(
        &'s self,
        namespace: &'s str,
        local: &'s str,
    ) -> impl Iterator<Item = &'s Element<'a>> + 's {
        self.children.iter().filter(move |c| c.is(namespace, local))
    }

    /// The attribute whose name without prefix is `local` (SOAP clients differ in whether
    /// they qualify `mustUnderstand`, and attribute prefixes are not resolved here).
    pub fn attr_local(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.rsplit(':').next() == Some(local))
            .map(|(_, v)| v.as_ref())
    }
}

/// Where a document's events come from: a reader that resolves XML namespaces (SOAP), or
/// one that does not (CIM-XML, which uses none: resolving them would be work for nothing).
enum Source<'a> {
    Namespaced(NsReader<&'a [u8]>),
    Plain(Reader<&'a [u8]>),
}

impl<'a> Source<'a> {
    fn new(input: &'a [u8], namespaces: bool) -> Self {
        let mut source = if namespaces {
            Source::Namespaced(NsReader::from_reader(input))
        } else {
            Source::Plain(Reader::from_reader(input))
        };
        let config = match &mut source {
            Source::Namespaced(r) => r.config_mut(),
            Source::Plain(r) => r.config_mut(),
        };
        // End tags are matched against the tree's own stack (in `build`): quick-xml's
        // check would keep a second copy of every open name.
        config.check_end_names = false;
        config.expand_empty_elements = false;
        source
    }

    /// The next event, with the namespace its element's name is bound to.
    fn next(&mut self) -> Result<(Option<String>, Event<'a>), String> {
        match self {
            Source::Plain(reader) => reader
                .read_event()
                .map(|event| (None, event))
                .map_err(|e| e.to_string()),
            Source::Namespaced(reader) => match reader.read_resolved_event() {
                Ok((ResolveResult::Bound(ns), event)) => Ok((
                    Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
                    event,
                )),
                Ok((ResolveResult::Unbound, event)) => Ok((None, event)),
                Ok((ResolveResult::Unknown(prefix), _)) => Err(format!(
                    "namespace prefix '{}' is not declared",
                    String::from_utf8_lossy(&prefix)
                )),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    fn position(&self) -> u64 {
        match self {
            Source::Namespaced(r) => r.buffer_position(),
            Source::Plain(r) => r.buffer_position(),
        }
    }
}

/// Parses a whole document into its root element, resolving XML namespaces.
pub fn parse<'a>(input: &'a [u8], limits: &XmlLimits) -> Result<Element<'a>, XmlError> {
    build(Source::new(input, true), input, limits)
}

/// Parses a whole CIM-XML document into its root element: CIM-XML declares no XML
/// namespaces, so none are resolved and every element's `namespace` is `None`.
pub fn parse_cim_xml<'a>(input: &'a [u8], limits: &XmlLimits) -> Result<Element<'a>, XmlError> {
    build(Source::new(input, false), input, limits)
}

fn build<'a>(
    mut reader: Source<'a>,
    input: &'a [u8],
    limits: &XmlLimits,
) -> Result<Element<'a>, XmlError> {
    // UTF-8 is checked once, for the whole document; names, values and text are then
    // slices of it.
    let input = std::str::from_utf8(input).map_err(|e| XmlError::Malformed {
        position: e.valid_up_to() as u64,
        message: format!("the document is not UTF-8: {e}"),
    })?;
    let mut stack: Vec<Element<'a>> = Vec::new();
    let mut root: Option<Element<'a>> = None;
    let mut count = 0usize;
    let malformed = |reader: &Source<'a>, message: String| XmlError::Malformed {
        position: reader.position(),
        message,
    };
    let refused = |reader: &Source<'a>, start: &BytesStart<'_>, fault| match fault {
        ElementFault::Malformed(message) => malformed(reader, message),
        ElementFault::TooManyAttributes => XmlError::TooManyAttributes {
            element: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
        },
    };
    loop {
        let (namespace, event) = reader.next().map_err(|m| malformed(&reader, m))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(malformed(&reader, "content after the root element".into()));
            }
            Event::Start(start) => {
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                stack.push(
                    element(input, &start, namespace).map_err(|f| refused(&reader, &start, f))?,
                );
            }
            Event::Empty(start) => {
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                let e =
                    element(input, &start, namespace).map_err(|f| refused(&reader, &start, f))?;
                attach(&mut stack, &mut root, e);
            }
            Event::End(end) => {
                let e = stack
                    .pop()
                    .ok_or_else(|| malformed(&reader, "unexpected end tag".into()))?;
                if end.name().as_ref() != e.name.as_bytes() {
                    return Err(malformed(
                        &reader,
                        format!(
                            "end tag </{}> does not match start tag <{}>",
                            String::from_utf8_lossy(end.name().as_ref()),
                            e.name
                        ),
                    ));
                }
                attach(&mut stack, &mut root, e);
            }
            Event::Text(text) => {
                let s = match slice_of(input, &text) {
                    Some(s) => Cow::Borrowed(s),
                    None => text
                        .decode()
                        .map_err(|e| malformed(&reader, e.to_string()))?,
                };
                match stack.last_mut() {
                    Some(top) => append(&mut top.text, s),
                    None if s.trim().is_empty() => {}
                    None => return Err(malformed(&reader, "text outside the root element".into())),
                }
            }
            Event::CData(data) => {
                let s = match slice_of(input, &data) {
                    Some(s) => Cow::Borrowed(s),
                    None => data
                        .decode()
                        .map_err(|e| malformed(&reader, e.to_string()))?,
                };
                match stack.last_mut() {
                    Some(top) => append(&mut top.text, s),
                    None => {
                        return Err(malformed(&reader, "CDATA outside the root element".into()))
                    }
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r
                    .resolve_char_ref()
                    .map_err(|e| malformed(&reader, e.to_string()))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| malformed(&reader, e.to_string()))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| {
                                malformed(&reader, format!("undefined entity '&{name};'"))
                            })?
                            .to_string()
                    }
                };
                match stack.last_mut() {
                    Some(top) => top.text.to_mut().push_str(&resolved),
                    None => {
                        return Err(malformed(
                            &reader,
                            "reference outside the root element".into(),
                        ))
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            // XML 1.0 [23]: an XML declaration must give the version.
            Event::Decl(decl) if decl.version().is_err() => {
                return Err(malformed(
                    &reader,
                    "the XML declaration gives no version".into(),
                ));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed(
            &reader,
            format!("element <{}> is not closed", stack[stack.len() - 1].name),
        ));
    }
    root.ok_or_else(|| malformed(&reader, "the document has no root element".into()))
}

/// Appends `more` to `text`, borrowing it when `text` is still empty.
fn append<'a>(text: &mut Cow<'a, str>, more: Cow<'a, str>) {
    if text.is_empty() {
        *text = more;
    } else {
        text.to_mut().push_str(&more);
    }
}

fn attach<'a>(stack: &mut [Element<'a>], root: &mut Option<Element<'a>>, e: Element<'a>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(e),
        None => *root = Some(e),
    }
}

/// The element start tag `start` of document `input` opens, borrowing from the document:
/// a reader of a byte slice hands out tags that lie in it.
fn element<'a>(
    input: &'a str,
    start: &BytesStart<'_>,
    namespace: Option<String>,
) -> Result<Element<'a>, ElementFault> {
    let name_len = start.name().as_ref().len();
    match slice_of(input, start) {
        Some(tag) => element_of(tag, name_len, namespace),
        None => {
            let tag = String::from_utf8(start.to_vec())
                .map_err(|e| ElementFault::Malformed(e.to_string()))?;
            element_of(&tag, name_len, namespace).map(Element::into_owned)
        }
    }
}

/// Why a start tag does not make an element.
enum ElementFault {
    Malformed(String),
    TooManyAttributes,
}

/// `part` as the slice of `input` it is, if it lies in `input` (on character boundaries).
fn slice_of<'a>(input: &'a str, part: &[u8]) -> Option<&'a str> {
    let offset = (part.as_ptr() as usize).checked_sub(input.as_ptr() as usize)?;
    input.get(offset..offset.checked_add(part.len())?)
}

fn element_of<'a>(
    tag: &'a str,
    name_len: usize,
    namespace: Option<String>,
) -> Result<Element<'a>, ElementFault> {
    let mut attrs: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
    // Duplicates are checked here, against the keys as written (as quick-xml's own check
    // would), so that a tag's attributes cost no allocation beyond their vector.
    for attr in Attributes::new(tag, name_len).with_checks(false) {
        let attr = attr.map_err(|e| ElementFault::Malformed(e.to_string()))?;
        if attrs.len() == MAX_ATTRIBUTES {
            return Err(ElementFault::TooManyAttributes);
        }
        let key = match slice_of(tag, attr.key.0) {
            Some(key) => key,
            None => std::str::from_utf8(attr.key.0)
                .map_err(|e| ElementFault::Malformed(e.to_string()))?,
        };
        if attrs.iter().any(|(k, _)| k == key) {
            return Err(ElementFault::Malformed(format!(
                "duplicate attribute '{key}' in element <{}>",
                &tag[..name_len]
            )));
        }
        let value = match slice_of(tag, &attr.value) {
            Some(raw) => quick_xml::escape::unescape(raw).map_err(|e| e.to_string()),
            None => attr.unescape_value().map_err(|e| e.to_string()),
        }
        .map_err(ElementFault::Malformed)?;
        attrs.push((Cow::Borrowed(key), value));
    }
    Ok(Element {
        name: Cow::Borrowed(&tag[..name_len]),
        namespace,
        attrs,
        children: Vec::new(),
        text: Cow::Borrowed(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: XmlLimits = XmlLimits {
        max_depth: 8,
        max_elements: 20,
    };

    #[test]
    fn reads_elements_attributes_text_and_references() {
        let doc = br#"<?xml version="1.0"?><A x="1 &amp; 2"><B>a&lt;b&#x41;</B><C/></A>"#;
        let root = parse(doc, &LIMITS).unwrap();
        assert_eq!(root.name, "A");
        assert_eq!(root.attr("x"), Some("1 & 2"));
        assert_eq!(root.child("B").unwrap().text, "a<bA");
        assert!(root.child("C").is_some());
    }

    #[test]
    fn names_attributes_and_text_borrow_from_the_document_unless_escaped() {
        let doc = br#"<A n="plain" e="a&amp;b"><B>text</B><C>x&lt;y</C></A>"#;
        let root = parse(doc, &LIMITS).unwrap();
        assert!(matches!(root.name, Cow::Borrowed("A")));
        assert!(matches!(root.attrs[0].1, Cow::Borrowed("plain")));
        assert!(matches!(&root.attrs[1].1, Cow::Owned(v) if v == "a&b"));
        assert!(matches!(root.children[0].text, Cow::Borrowed("text")));
        assert_eq!(root.children[1].text, "x<y");
        let owned: Element<'static> = root.clone().into_owned();
        assert_eq!(owned, root);
    }

    #[test]
    fn cim_xml_is_read_without_namespaces() {
        let doc = br#"<CIM><s:E xmlns:s="urn:s"><q:F/></s:E></CIM>"#;
        let root = parse_cim_xml(doc, &LIMITS).unwrap();
        assert_eq!(root.children[0].name, "s:E");
        assert_eq!(root.children[0].namespace, None);
        assert_eq!(root.children[0].children[0].name, "q:F");
        assert_eq!(
            parse_cim_xml(b"<a>&x;</a>", &LIMITS),
            parse(b"<a>&x;</a>", &LIMITS),
            "the same refusals"
        );
    }

    #[test]
    fn resolves_namespaces() {
        let doc = br#"<s:E xmlns:s="urn:s" xmlns="urn:d"><s:H a:m="1" xmlns:a="urn:a"/><B/></s:E>"#;
        let root = parse(doc, &LIMITS).unwrap();
        assert!(root.is("urn:s", "E"));
        assert!(root.child_ns("urn:s", "H").is_some());
        assert_eq!(root.children[0].attr_local("m"), Some("1"));
        assert_eq!(root.children[1].namespace.as_deref(), Some("urn:d"));
        assert!(matches!(
            parse(b"<q:a/>", &LIMITS),
            Err(XmlError::Malformed { .. })
        ));
    }

    #[test]
    fn refuses_doctype_entities_depth_and_count() {
        let dtd = br#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>"#;
        assert_eq!(parse(dtd, &LIMITS), Err(XmlError::Doctype));
        assert!(matches!(
            parse(b"<a>&x;</a>", &LIMITS),
            Err(XmlError::Malformed { .. })
        ));
        let deep = "<a>".repeat(9) + &"</a>".repeat(9);
        assert_eq!(parse(deep.as_bytes(), &LIMITS), Err(XmlError::TooDeep(8)));
        let wide = format!("<a>{}</a>", "<b/>".repeat(20));
        assert_eq!(
            parse(wide.as_bytes(), &LIMITS),
            Err(XmlError::TooManyElements(20))
        );
        for unmatched in [
            parse(b"<a><b></a>", &LIMITS),
            parse_cim_xml(b"<a><b></a>", &LIMITS),
        ] {
            assert!(
                matches!(&unmatched, Err(XmlError::Malformed { message, .. })
                    if message == "end tag </a> does not match start tag <b>"),
                "{unmatched:?}"
            );
        }
        assert!(matches!(
            parse(b"", &LIMITS),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"<a/><b/>", &LIMITS),
            Err(XmlError::Malformed { .. })
        ));
    }

    #[test]
    fn attributes_are_limited_in_number_and_unique() {
        let tag = |n: usize| {
            let attrs: String = (0..n).map(|i| format!(" a{i}=\"v\"")).collect();
            format!("<root><e{attrs}/></root>")
        };
        let doc = tag(MAX_ATTRIBUTES);
        let most = parse_cim_xml(doc.as_bytes(), &LIMITS).unwrap();
        assert_eq!(most.children[0].attrs.len(), MAX_ATTRIBUTES);
        assert_eq!(
            parse_cim_xml(tag(MAX_ATTRIBUTES + 1).as_bytes(), &LIMITS),
            Err(XmlError::TooManyAttributes {
                element: "e".into()
            })
        );
        // Hundreds of thousands are refused as soon as the limit is passed.
        assert!(matches!(
            parse(tag(300_000).as_bytes(), &LIMITS),
            Err(XmlError::TooManyAttributes { .. })
        ));
        let twice = parse(br#"<a x="1" y="2" x="3"/>"#, &LIMITS);
        assert!(
            matches!(&twice, Err(XmlError::Malformed { message, .. }) if message.contains("duplicate attribute 'x'")),
            "{twice:?}"
        );
    }
}
