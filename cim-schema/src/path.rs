//! Object paths and their WBEM URI forms (DSP0207).
//!
//! Untyped:  `//acme.com:5989/root/cimv2:CIM_Foo.Name="a\"b",Id=7`
//! Typed:    `/(instance)root/cimv2:CIM_Foo.Id=(uint16)7,Name=(string)"a\"b"`
//!
//! Keys are kept in canonical order (by name, ignoring case), so two paths of the same
//! instance print identically. Reference keys hold a whole nested path, quoted and escaped.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};

use crate::datetime::DateTime;
use crate::name::{eq_ignore_case, hash_ignore_case, is_identifier, Name};
use crate::types::CimType;
use crate::value::Value;

/// Nesting limit for reference keys inside reference keys, against hostile input.
const MAX_REFERENCE_DEPTH: usize = 16;

/// One key of an instance path.
#[derive(Clone, Debug)]
pub struct KeyBinding {
    /// The key property's name.
    pub name: Name,
    /// Its value: a scalar, or a reference to another instance.
    pub value: Value,
}

/// The path of a class or an instance: where it lives and, for instances, its keys.
#[derive(Clone, Debug)]
pub struct ObjectPath {
    /// `host[:port]` of the server, if the path is not local.
    pub host: Option<String>,
    /// The namespace (`root/virt`), if given.
    pub namespace: Option<String>,
    /// The class.
    pub class_name: Name,
    /// The keys in canonical order; empty for a class path or a keyless singleton.
    pub keys: Vec<KeyBinding>,
}

/// Why a string is not a WBEM URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WBEM URI at position {position}: {message}")]
pub struct PathError {
    /// Byte offset in the input.
    pub position: usize,
    /// What was wrong.
    pub message: String,
}

impl ObjectPath {
    /// A local path; keys are sorted into canonical order.
    pub fn new(
        namespace: Option<String>,
        class_name: impl Into<Name>,
        keys: Vec<KeyBinding>,
    ) -> Self {
        let mut path = ObjectPath {
            host: None,
            namespace,
            class_name: class_name.into(),
            keys,
        };
        path.keys.sort_by(|a, b| a.name.cmp(&b.name));
        path
    }

    /// A class path (no keys).
    pub fn class(namespace: Option<String>, class_name: impl Into<Name>) -> Self {
        ObjectPath::new(namespace, class_name, Vec::new())
    }

    /// Adds a key, keeping canonical order; replaces a key of the same name.
    pub fn with_key(mut self, name: impl Into<Name>, value: impl Into<Value>) -> Self {
        let name = name.into();
        let value = value.into();
        match self.keys.binary_search_by(|k| k.name.cmp(&name)) {
            Ok(i) => self.keys[i].value = value,
            Err(i) => self.keys.insert(i, KeyBinding { name, value }),
        }
        self
    }

    /// The value of key `name`.
    pub fn key(&self, name: &str) -> Option<&Value> {
        self.keys
            .iter()
            .find(|k| k.name.matches(name))
            .map(|k| &k.value)
    }

    /// Parses a WBEM URI, typed or untyped (see the module documentation). Also accepts the
    /// `namespace:class.keys` form without the leading slash that many tools print.
    pub fn parse(uri: &str) -> Result<Self, PathError> {
        Parser {
            s: uri,
            pos: 0,
            depth: 0,
        }
        .path()
    }

    /// The untyped WBEM URI.
    pub fn to_uri(&self) -> String {
        let mut out = String::new();
        self.write_uri(&mut out, false);
        out
    }

    /// The typed WBEM URI: every key value carries its CIM type.
    pub fn to_typed_uri(&self) -> String {
        let mut out = String::new();
        self.write_uri(&mut out, true);
        out
    }

    fn write_uri(&self, out: &mut String, typed: bool) {
        if let Some(host) = &self.host {
            out.push_str("//");
            out.push_str(host);
        }
        out.push('/');
        if typed {
            out.push_str(if self.keys.is_empty() {
                "(class)"
            } else {
                "(instance)"
            });
        }
        if let Some(ns) = &self.namespace {
            out.push_str(ns);
        }
        out.push(':');
        out.push_str(self.class_name.as_str());
        for (i, key) in self.keys.iter().enumerate() {
            out.push(if i == 0 { '.' } else { ',' });
            out.push_str(key.name.as_str());
            out.push('=');
            if typed {
                let ty = key.value.cim_type().unwrap_or(CimType::String);
                let _ = write!(out, "({ty})");
            }
            write_key_value(out, &key.value, typed);
        }
    }

    /// The canonical form used to compare and hash paths: case-folded names, keys in order,
    /// integers compared by value whatever their width, datetimes by their string form.
    fn canonical(&self) -> String {
        let mut out = String::new();
        if let Some(host) = &self.host {
            out.push_str(&host.to_lowercase());
        }
        out.push('/');
        if let Some(ns) = &self.namespace {
            out.push_str(&ns.trim_matches('/').to_lowercase());
        }
        out.push(':');
        out.push_str(&self.class_name.as_str().to_lowercase());
        for key in &self.keys {
            out.push(',');
            out.push_str(&key.name.as_str().to_lowercase());
            out.push('=');
            write_canonical_value(&mut out, &key.value);
        }
        out
    }

    /// This path without host and namespace: how paths compare inside one namespace.
    pub fn local(&self) -> ObjectPath {
        ObjectPath {
            host: None,
            namespace: None,
            ..self.clone()
        }
    }
}

// Equality and hashing go field by field, without building the canonical string: they run on
// every instance lookup. They follow `canonical()`'s rules: case-folded host, namespace
// (without its slashes), class and key names, and key values as `KeyForm`.
impl PartialEq for ObjectPath {
    fn eq(&self, other: &Self) -> bool {
        self.class_name == other.class_name
            && self.keys.len() == other.keys.len()
            && eq_ignore_case(host_of(self), host_of(other))
            && eq_ignore_case(namespace_of(self), namespace_of(other))
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.name == b.name && KeyForm::of(&a.value) == KeyForm::of(&b.value))
    }
}
impl Eq for ObjectPath {}

impl Hash for ObjectPath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_ignore_case(host_of(self), state);
        hash_ignore_case(namespace_of(self), state);
        self.class_name.hash(state);
        for key in &self.keys {
            key.name.hash(state);
            KeyForm::of(&key.value).hash(state);
        }
    }
}

fn host_of(path: &ObjectPath) -> &str {
    path.host.as_deref().unwrap_or("")
}

fn namespace_of(path: &ObjectPath) -> &str {
    path.namespace.as_deref().unwrap_or("").trim_matches('/')
}

/// What a key value compares as, by the rule of `write_canonical_value`: references by
/// their path, integers by value whatever their width, strings and datetimes by their text
/// (a string key and a datetime key of the same text are the same key), anything else by
/// its canonical text.
#[derive(PartialEq, Eq, Hash)]
enum KeyForm<'a> {
    Reference(&'a ObjectPath),
    Integer(i128),
    Quoted(std::borrow::Cow<'a, str>),
    Other(String),
}

impl<'a> KeyForm<'a> {
    fn of(value: &'a Value) -> Self {
        match value {
            Value::Reference(p) => KeyForm::Reference(p),
            Value::String(s) => KeyForm::Quoted(std::borrow::Cow::Borrowed(s)),
            Value::DateTime(dt) => KeyForm::Quoted(dt.to_string().into()),
            v => match v.as_i128() {
                Some(i) => KeyForm::Integer(i),
                None => {
                    let mut text = String::new();
                    write_key_value(&mut text, v, true);
                    KeyForm::Other(text)
                }
            },
        }
    }
}

impl PartialOrd for ObjectPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ObjectPath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.canonical().cmp(&other.canonical())
    }
}

impl fmt::Display for ObjectPath {
    /// The untyped WBEM URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

fn write_quoted(out: &mut String, s: &str, quote: char) {
    out.push(quote);
    for c in s.chars() {
        if c == quote || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(quote);
}

fn write_key_value(out: &mut String, value: &Value, typed: bool) {
    match value {
        Value::String(s) => write_quoted(out, s, '"'),
        Value::Char16(c) => write_quoted(out, &c.to_string(), '\''),
        Value::Boolean(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Value::DateTime(dt) => write_quoted(out, &dt.to_string(), '"'),
        Value::Reference(p) => {
            let mut inner = String::new();
            p.write_uri(&mut inner, typed);
            write_quoted(out, &inner, '"');
        }
        Value::Real32(v) => {
            let _ = write!(out, "{v:?}");
        }
        Value::Real64(v) => {
            let _ = write!(out, "{v:?}");
        }
        v => match v.as_i128() {
            Some(i) => {
                let _ = write!(out, "{i}");
            }
            // Arrays and embedded instances cannot be keys; print them as their debug form
            // rather than fail, so a bad path is still visible in logs.
            None => write_quoted(out, &format!("{v:?}"), '"'),
        },
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, PathError> {
        Err(PathError {
            position: self.pos,
            message: message.into(),
        })
    }

    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, prefix: &str) -> bool {
        if self.rest().starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
    }

    fn path(&mut self) -> Result<ObjectPath, PathError> {
        // Optional scheme, only where an authority follows.
        if let Some(i) = self.rest().find("://") {
            let scheme = &self.rest()[..i];
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
            {
                self.pos += i + 1;
            }
        }
        let mut host = None;
        if self.eat("//") {
            let end = self.rest().find('/').unwrap_or(self.rest().len());
            if end == 0 {
                return self.err("empty authority after '//'");
            }
            host = Some(self.rest()[..end].to_string());
            self.pos += end;
            if !self.eat("/") {
                return self.err("expected '/' after the authority");
            }
        } else {
            self.eat("/");
        }
        let mut typed_kind = None;
        for kind in ["(namespace)", "(class)", "(instance)"] {
            if self.eat(kind) {
                typed_kind = Some(kind);
            }
        }
        let colon = match self.rest().find(':') {
            Some(c) => c,
            None => return self.err("expected ':' before the class name"),
        };
        let ns = &self.rest()[..colon];
        // DSP0207: identifiers joined by single slashes; an empty segment would print as
        // something that parses differently ("//ns" reads as an authority).
        if !ns.is_empty() && !ns.split('/').all(is_identifier) {
            return self.err(format!(
                "'{ns}' is not a namespace name (identifiers separated by '/')"
            ));
        }
        let namespace = (!ns.is_empty()).then(|| ns.to_string());
        self.pos += colon + 1;
        let class_end = self.rest().find(['.', ',']).unwrap_or(self.rest().len());
        let class = &self.rest()[..class_end];
        if !is_identifier(class) {
            return self.err(format!("'{class}' is not a class name"));
        }
        let class_name = Name::new(class);
        self.pos += class_end;
        let mut keys = Vec::new();
        if self.eat(".") {
            loop {
                keys.push(self.key_binding()?);
                if self.pos == self.s.len() {
                    break;
                }
                if !self.eat(",") {
                    return self.err("expected ',' between keys");
                }
            }
        } else if self.pos != self.s.len() {
            return self.err("expected '.' before the keys");
        }
        if typed_kind == Some("(instance)") && keys.is_empty() {
            return self.err("a typed instance path needs keys");
        }
        let mut path = ObjectPath::new(namespace, class_name, Vec::new());
        path.host = host;
        for k in keys {
            if path.key(k.name.as_str()).is_some() {
                return self.err(format!("key '{}' is given twice", k.name));
            }
            path = path.with_key(k.name, k.value);
        }
        Ok(path)
    }

    fn key_binding(&mut self) -> Result<KeyBinding, PathError> {
        let eq = match self.rest().find('=') {
            Some(e) => e,
            None => return self.err("expected 'name=value'"),
        };
        let name = &self.rest()[..eq];
        if !is_identifier(name) {
            return self.err(format!("'{name}' is not a key name"));
        }
        let name = Name::new(name);
        self.pos += eq + 1;
        let mut ty = None;
        if self.rest().starts_with('(') {
            let close = match self.rest().find(')') {
                Some(c) => c,
                None => return self.err("expected ')' after the type"),
            };
            let t = &self.rest()[1..close];
            ty = Some(t.parse::<CimType>().or_else(|e| self.err(e.to_string()))?);
            self.pos += close + 1;
        }
        let value = self.key_value(ty)?;
        Ok(KeyBinding { name, value })
    }

    fn quoted(&mut self, quote: char) -> Result<String, PathError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        self.pos = start;
        self.err("unterminated quoted value")
    }

    fn key_value(&mut self, ty: Option<CimType>) -> Result<Value, PathError> {
        let start = self.pos;
        if self.rest().starts_with('"') {
            let text = self.quoted('"')?;
            return self.typed_string(text, ty, start);
        }
        if self.rest().starts_with('\'') {
            let text = self.quoted('\'')?;
            let mut chars = text.chars();
            return match (chars.next(), chars.next(), ty) {
                (Some(c), None, None | Some(CimType::Char16)) => Ok(Value::Char16(c)),
                _ => {
                    self.pos = start;
                    self.err("a char16 key holds exactly one character")
                }
            };
        }
        let end = self.rest().find(',').unwrap_or(self.rest().len());
        let token = &self.rest()[..end];
        let value = match ty {
            None | Some(CimType::Boolean) if token.eq_ignore_ascii_case("true") => {
                Value::Boolean(true)
            }
            None | Some(CimType::Boolean) if token.eq_ignore_ascii_case("false") => {
                Value::Boolean(false)
            }
            Some(t) if t.is_integer() => parse_integer(token)
                .and_then(|i| Value::integer(t, i))
                .ok_or(())
                .or_else(|_| self.err(format!("'{token}' is not a {t} value")))?,
            Some(CimType::Real32) => match finite_real(token).map(|r| r as f32) {
                Some(r) if r.is_finite() => Value::Real32(r),
                _ => return self.err(format!("'{token}' is not a finite real32")),
            },
            Some(CimType::Real64) => match finite_real(token) {
                Some(r) => Value::Real64(r),
                None => return self.err(format!("'{token}' is not a finite real64")),
            },
            None => match parse_integer(token) {
                Some(i) if i >= 0 => Value::integer(CimType::UInt64, i)
                    .ok_or(())
                    .or_else(|_| self.err("integer key out of range"))?,
                Some(i) => Value::integer(CimType::SInt64, i)
                    .ok_or(())
                    .or_else(|_| self.err("integer key out of range"))?,
                None => match finite_real(token) {
                    Some(r) if token.contains(['.', 'e', 'E']) => Value::Real64(r),
                    _ => return self.err(format!("'{token}' is not a key value")),
                },
            },
            Some(t) => return self.err(format!("a {t} key value must be quoted")),
        };
        self.pos += end;
        Ok(value)
    }

    fn typed_string(
        &mut self,
        text: String,
        ty: Option<CimType>,
        start: usize,
    ) -> Result<Value, PathError> {
        match ty {
            Some(CimType::String) => Ok(Value::String(text.into())),
            Some(CimType::DateTime) => DateTime::parse(&text).map(Value::DateTime).or_else(|e| {
                self.pos = start;
                self.err(e.to_string())
            }),
            Some(CimType::Reference) => self.nested(&text, start),
            // Untyped URIs cannot tell a string that looks like a path from a reference;
            // read it as a reference when it is one, and as a string otherwise.
            None if looks_like_instance_path(&text) => {
                let pos = self.pos;
                self.nested(&text, start).or_else(|_| {
                    self.pos = pos;
                    Ok(Value::String(text.into()))
                })
            }
            None => Ok(Value::String(text.into())),
            Some(t) => {
                self.pos = start;
                self.err(format!("a {t} key value is not quoted"))
            }
        }
    }

    fn nested(&mut self, text: &str, start: usize) -> Result<Value, PathError> {
        if self.depth >= MAX_REFERENCE_DEPTH {
            self.pos = start;
            return self.err("reference keys nested too deeply");
        }
        let mut inner = Parser {
            s: text,
            pos: 0,
            depth: self.depth + 1,
        };
        inner.path().map(Value::Reference).map_err(|e| PathError {
            position: start,
            message: format!("in reference key: {}", e.message),
        })
    }
}

/// Whether an untyped quoted key value is a nested instance path rather than a string, the
/// way DSP0207 consumers tell them apart: `[/]namespace:Class.key=...`.
fn looks_like_instance_path(s: &str) -> bool {
    let s = s
        .strip_prefix("//")
        .map_or(s, |rest| rest.find('/').map_or("", |i| &rest[i..]));
    let s = s.strip_prefix('/').unwrap_or(s);
    let Some((ns, rest)) = s.split_once(':') else {
        return false;
    };
    let Some((class, keys)) = rest.split_once('.') else {
        return false;
    };
    ns.split('/')
        .all(|seg| seg.is_empty() || is_identifier(seg))
        && is_identifier(class)
        && keys.split_once('=').is_some_and(|(k, _)| is_identifier(k))
}

/// A real number that is finite: URIs have no spelling for infinities or NaN.
fn finite_real(token: &str) -> Option<f64> {
    token.parse::<f64>().ok().filter(|r| r.is_finite())
}

/// Decimal, `0x` hex or `b`-suffixed binary, with an optional sign.
fn parse_integer(token: &str) -> Option<i128> {
    let (neg, digits) = match token.as_bytes().first()? {
        b'-' => (true, &token[1..]),
        b'+' => (false, &token[1..]),
        _ => (false, token),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = digits.strip_suffix(['b', 'B']) {
        i128::from_str_radix(bin, 2).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -magnitude } else { magnitude })
}

/// A key value in the form paths compare by: integers by value whatever their width,
/// datetimes by their string form, references by their own canonical form.
fn write_canonical_value(out: &mut String, value: &Value) {
    match value {
        Value::Reference(p) => {
            out.push('<');
            out.push_str(&p.canonical());
            out.push('>');
        }
        v if v.as_i128().is_some() => {
            let _ = write!(out, "#{}", v.as_i128().unwrap_or_default());
        }
        Value::DateTime(dt) => {
            let _ = write!(out, "\"{dt}\"");
        }
        v => write_key_value(out, v, true),
    }
}

/// Whether two key values are the same key, by the rule paths compare with.
pub fn key_values_equal(a: &Value, b: &Value) -> bool {
    KeyForm::of(a) == KeyForm::of(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untyped_uri_round_trips_with_canonical_key_order() {
        let p = ObjectPath::parse(
            r#"//acme.com:5989/root/cimv2:CIM_Foo.Name="a\"b\\c",Id=7,Flag=true"#,
        )
        .unwrap();
        assert_eq!(p.host.as_deref(), Some("acme.com:5989"));
        assert_eq!(p.namespace.as_deref(), Some("root/cimv2"));
        assert_eq!(p.key("name"), Some(&Value::String("a\"b\\c".into())));
        assert_eq!(
            p.to_uri(),
            r#"//acme.com:5989/root/cimv2:CIM_Foo.Flag=TRUE,Id=7,Name="a\"b\\c""#
        );
        assert_eq!(ObjectPath::parse(&p.to_uri()).unwrap(), p);
    }

    #[test]
    fn scheme_and_leading_slash_are_optional() {
        let a = ObjectPath::parse("https://h:5989/root/virt:KVM_ComputerSystem.Name=\"vm1\",CreationClassName=\"KVM_ComputerSystem\"").unwrap();
        let b = ObjectPath::parse(
            "root/virt:kvm_computersystem.name=\"vm1\",creationclassname=\"KVM_ComputerSystem\"",
        )
        .unwrap();
        assert_eq!(a.local(), b.local());
        assert_eq!(ObjectPath::parse("/:CIM_Foo").unwrap().namespace, None);
    }

    #[test]
    fn nested_references_round_trip_typed_and_untyped() {
        let inner = ObjectPath::new(Some("root/virt".into()), "KVM_ComputerSystem", vec![])
            .with_key("Name", "vm \"1\"")
            .with_key("CreationClassName", "KVM_ComputerSystem");
        let outer = ObjectPath::new(Some("root/virt".into()), "KVM_SystemDevice", vec![])
            .with_key("GroupComponent", inner.clone())
            .with_key("Count", Value::UInt16(3));
        let untyped = outer.to_uri();
        let reparsed = ObjectPath::parse(&untyped).unwrap();
        assert_eq!(reparsed, outer);
        assert_eq!(
            reparsed.key("GroupComponent"),
            Some(&Value::Reference(inner))
        );
        let typed = outer.to_typed_uri();
        assert!(typed.starts_with("/(instance)root/virt:KVM_SystemDevice.Count=(uint16)3,GroupComponent=(reference)\""), "{typed}");
        let t = ObjectPath::parse(&typed).unwrap();
        assert_eq!(t.key("Count"), Some(&Value::UInt16(3)));
        assert_eq!(t, outer);
    }

    #[test]
    fn typed_values_are_checked() {
        assert!(ObjectPath::parse("/(instance)ns:C.K=(uint8)300").is_err());
        assert!(ObjectPath::parse("/(instance)ns:C.K=(datetime)\"2023\"").is_err());
        let p = ObjectPath::parse(
            "/(instance)ns:C.K=(datetime)\"20231012143000.000000+000\",C=(char16)'x'",
        )
        .unwrap();
        assert!(matches!(p.key("K"), Some(Value::DateTime(_))));
        assert_eq!(p.key("C"), Some(&Value::Char16('x')));
    }

    #[test]
    fn malformed_uris_are_refused_with_a_position() {
        for bad in [
            "",
            "/ns",
            "/ns:",
            "/ns:C.",
            "/ns:C.K",
            "/ns:C.K=\"open",
            "/ns:C.K=1,",
            "/ns:C.K=1,K=2",
            "/ns:1C",
            "//",
            "/n s:C",
            "/ns:C.K=(bogus)1",
            "/ns:C.K=abc",
            "/ns:C.K='ab'",
        ] {
            assert!(ObjectPath::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn deep_reference_nesting_is_bounded_not_a_stack_overflow() {
        let nest = |typed: bool| {
            let mut uri = "/ns:C.K=1".to_string();
            for _ in 0..18 {
                let mut q = String::new();
                write_quoted(&mut q, &uri, '"');
                uri = if typed {
                    format!("/ns:C.R=(reference){q}")
                } else {
                    format!("/ns:C.R={q}")
                };
            }
            uri
        };
        // Typed: the nesting is explicit, so going too deep is an error.
        let err = ObjectPath::parse(&nest(true)).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err}");
        // Untyped: past the limit the innermost value stays a string.
        let mut p = ObjectPath::parse(&nest(false)).unwrap();
        let mut depth = 0;
        while let Some(Value::Reference(inner)) = p.key("R").cloned() {
            p = inner;
            depth += 1;
        }
        assert_eq!(depth, MAX_REFERENCE_DEPTH);
        assert!(matches!(p.key("R"), Some(Value::String(_))));
    }

    #[test]
    fn a_string_that_only_looks_like_a_path_stays_a_string() {
        // Found by fuzzing.
        let p = ObjectPath::parse(r#"/ns:C.B="/ns:D.N=\":KMMKVMa.e=0Xx\"""#).unwrap();
        let Some(Value::Reference(d)) = p.key("B") else {
            panic!("{p:?}")
        };
        assert_eq!(d.key("N"), Some(&Value::String(":KMMKVMa.e=0Xx".into())));
    }

    #[test]
    fn integer_keys_compare_by_value() {
        let a = ObjectPath::class(None, "C").with_key("K", Value::UInt8(5));
        let b = ObjectPath::class(None, "c").with_key("k", Value::UInt64(5));
        assert_eq!(a, b);
        assert!(key_values_equal(&Value::UInt8(5), &Value::SInt32(5)));
        assert!(!key_values_equal(&Value::UInt8(5), &Value::from("5")));
        // A datetime key and its string spelling are the same key, in paths and here.
        let dt = DateTime::parse("20231012143000.000000+000").unwrap();
        assert!(key_values_equal(
            &Value::DateTime(dt),
            &Value::from("20231012143000.000000+000")
        ));
        assert_eq!(
            ObjectPath::class(None, "C").with_key("T", Value::DateTime(dt)),
            ObjectPath::class(None, "C").with_key("T", "20231012143000.000000+000")
        );
    }

    #[test]
    fn equal_paths_hash_alike_and_different_keys_differ() {
        use std::collections::hash_map::RandomState;
        use std::hash::BuildHasher;
        let hasher = RandomState::new();
        let mut a = ObjectPath::parse(r#"//Host/root/virt:KVM_Disk.DeviceID="vm1/disk0",Index=3,Ref="/root/virt:KVM_ComputerSystem.Name=\"VM1\"""#).unwrap();
        // Namespaces compare without their slashes.
        a.namespace = Some("/root/virt/".into());
        let b = ObjectPath::parse(r#"//host/Root/Virt:kvm_disk.deviceid="vm1/disk0",index=3,ref="root/virt:kvm_computersystem.name=\"VM1\"""#).unwrap();
        let b = ObjectPath {
            keys: b
                .keys
                .into_iter()
                .map(|k| match k.value {
                    Value::UInt64(i) => KeyBinding {
                        name: k.name,
                        value: Value::UInt16(i as u16),
                    },
                    _ => k,
                })
                .collect(),
            ..b
        };
        assert_eq!(a, b);
        assert_eq!(hasher.hash_one(&a), hasher.hash_one(&b));
        assert_eq!(a.canonical(), b.canonical());
        // Key values keep their case, and a nested path's key too.
        for other in [
            r#"//host/root/virt:KVM_Disk.DeviceID="VM1/disk0",Index=3,Ref="/root/virt:KVM_ComputerSystem.Name=\"VM1\"""#,
            r#"//host/root/virt:KVM_Disk.DeviceID="vm1/disk0",Index=4,Ref="/root/virt:KVM_ComputerSystem.Name=\"VM1\"""#,
            r#"//host/root/virt:KVM_Disk.DeviceID="vm1/disk0",Index=3,Ref="/root/virt:KVM_ComputerSystem.Name=\"vm1\"""#,
            r#"//other/root/virt:KVM_Disk.DeviceID="vm1/disk0",Index=3,Ref="/root/virt:KVM_ComputerSystem.Name=\"VM1\"""#,
            r#"//host/root/virt:KVM_Disk.DeviceID="vm1/disk0",Index="3",Ref="/root/virt:KVM_ComputerSystem.Name=\"VM1\"""#,
        ] {
            let c = ObjectPath::parse(other).unwrap();
            assert_ne!(a, c, "{other}");
            assert_ne!(a.canonical(), c.canonical(), "{other}");
        }
    }
}
