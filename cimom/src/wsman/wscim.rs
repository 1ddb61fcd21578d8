//! The WS-CIM mapping (DSP0230): CIM instances, values, datetimes and references as
//! WS-Management XML, both ways.

use std::fmt::Write as _;
use std::time::Duration;

use cim_schema::{
    Class, DateTime, Instance, InstanceProperty, Interval, KeyBinding, ObjectPath, Timestamp, Value,
};

use super::fault::Fault;
use super::names;
use super::resource;
use crate::cimxml::dom::Element;
use crate::cimxml::encode::{attr, text, InstanceFilter};
use crate::dispatch::operation::UntypedValue;

/// Writes an instance as the element `p:CLASS` in the class's resource URI namespace.
pub fn write_instance(out: &mut String, inst: &Instance, filter: &InstanceFilter, namespace: &str) {
    write_instance_as(out, inst, inst.class_name.as_str(), filter, namespace);
}

/// Writes an instance under the element name of `class` (a superclass of the instance's
/// class when subclass properties are excluded).
pub fn write_instance_as(
    out: &mut String,
    inst: &Instance,
    class: &str,
    filter: &InstanceFilter,
    namespace: &str,
) {
    out.push_str("<p:");
    out.push_str(class);
    out.push_str(" xmlns:p=\"");
    resource::write_class_uri(out, class);
    out.push('"');
    attr(out, "xmlns:cim", names::CIM_COMMON);
    out.push_str(" xsi:type=\"p:");
    out.push_str(class);
    out.push_str("_Type\">");
    for p in inst.properties.values() {
        if filter.includes(&p.name) {
            write_property(out, p, namespace, "");
        }
    }
    out.push_str("</p:");
    out.push_str(class);
    out.push('>');
}

/// Writes the `p:NAME` elements of one property: one per array element, `xsi:nil` for
/// NULL. `declarations` goes into each start tag (a fragment declares `p` itself).
pub fn write_property(out: &mut String, p: &InstanceProperty, namespace: &str, declarations: &str) {
    write_named(
        out,
        p.name.as_str(),
        p.value.as_ref(),
        namespace,
        declarations,
    );
}

/// Writes the `p:NAME` elements of a property or parameter `name` holding `value`: one
/// per array element, `xsi:nil` for NULL (a NULL array element too, so positions hold).
pub fn write_named(
    out: &mut String,
    name: &str,
    value: Option<&Value>,
    namespace: &str,
    declarations: &str,
) {
    let one = |out: &mut String, v: Option<&Value>| {
        out.push_str("<p:");
        out.push_str(name);
        out.push_str(declarations);
        match v {
            None => out.push_str(" xsi:nil=\"true\"/>"),
            Some(v) => {
                out.push('>');
                write_value(out, v, namespace);
                out.push_str("</p:");
                out.push_str(name);
                out.push('>');
            }
        }
    };
    match value {
        None => one(out, None),
        Some(Value::Array(items)) => {
            for item in items {
                one(out, item.as_ref());
            }
        }
        Some(v) => one(out, Some(v)),
    }
}

/// Writes the content of a property or parameter element holding scalar `v`.
pub fn write_value(out: &mut String, v: &Value, namespace: &str) {
    match v {
        Value::Reference(path) => write_epr_content(out, path, namespace),
        Value::Instance(inst) => write_instance(out, inst, &InstanceFilter::all(), namespace),
        Value::DateTime(DateTime::Timestamp(t)) => {
            out.push_str("<cim:Datetime>");
            out.push_str(&xs_datetime(t));
            out.push_str("</cim:Datetime>");
        }
        Value::DateTime(DateTime::Interval(i)) => {
            out.push_str("<cim:Interval>");
            out.push_str(&xs_duration(i));
            out.push_str("</cim:Interval>");
        }
        v => write_scalar(out, v),
    }
}

/// Writes the XML Schema text of a scalar, escaped; strings and integers go straight
/// into `out` (they are most of what an enumeration writes).
fn write_scalar(out: &mut String, v: &Value) {
    match v {
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(_)
        | Value::UInt8(_)
        | Value::SInt8(_)
        | Value::UInt16(_)
        | Value::SInt16(_)
        | Value::UInt32(_)
        | Value::SInt32(_)
        | Value::UInt64(_)
        | Value::SInt64(_) => crate::cimxml::encode::scalar_into(out, v),
        v => text(out, &scalar_text(v)),
    }
}

/// The XML Schema text of a scalar (booleans in lower case, reals as xs:double).
pub fn scalar_text(v: &Value) -> String {
    let real = |r: f64| {
        if r.is_nan() {
            "NaN".to_string()
        } else if r.is_infinite() {
            if r > 0.0 { "INF" } else { "-INF" }.to_string()
        } else {
            r.to_string()
        }
    };
    match v {
        Value::Boolean(b) => b.to_string(),
        Value::String(s) => s.to_string(),
        Value::Char16(c) => c.to_string(),
        Value::Real32(r) => real(f64::from(*r)),
        Value::Real64(r) => real(*r),
        Value::DateTime(DateTime::Timestamp(t)) => xs_datetime(t),
        Value::DateTime(DateTime::Interval(i)) => xs_duration(i),
        v => crate::cimxml::encode::scalar_text(v),
    }
}

/// `wsa:Address` and `wsa:ReferenceParameters` of the instance at `path`.
pub fn write_epr_content(out: &mut String, path: &ObjectPath, namespace: &str) {
    out.push_str("<wsa:Address>");
    out.push_str(names::ANONYMOUS);
    out.push_str("</wsa:Address><wsa:ReferenceParameters><wsman:ResourceURI>");
    resource::write_class_uri(out, path.class_name.as_str());
    out.push_str("</wsman:ResourceURI><wsman:SelectorSet>");
    for kb in &path.keys {
        out.push_str("<wsman:Selector");
        attr(out, "Name", kb.name.as_str());
        out.push('>');
        match &kb.value {
            Value::Reference(r) => {
                out.push_str("<wsa:EndpointReference>");
                let ns = r.namespace.as_deref().unwrap_or(namespace);
                write_epr_content(out, r, ns);
                out.push_str("</wsa:EndpointReference>");
            }
            v => write_scalar(out, v),
        }
        out.push_str("</wsman:Selector>");
    }
    let ns = path.namespace.as_deref().unwrap_or(namespace);
    out.push_str("<wsman:Selector Name=\"");
    out.push_str(names::NAMESPACE_SELECTOR);
    out.push_str("\">");
    text(out, ns);
    out.push_str("</wsman:Selector></wsman:SelectorSet></wsa:ReferenceParameters>");
}

/// xs:dateTime of a CIM timestamp.
pub fn xs_datetime(t: &Timestamp) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    if t.microsecond != 0 {
        let _ = write!(s, ".{:06}", t.microsecond);
    }
    let off = i32::from(t.utc_offset);
    if off == 0 {
        s.push('Z');
    } else {
        let _ = write!(
            s,
            "{}{:02}:{:02}",
            if off < 0 { '-' } else { '+' },
            off.abs() / 60,
            off.abs() % 60
        );
    }
    s
}

/// xs:duration of a CIM interval.
pub fn xs_duration(i: &Interval) -> String {
    let mut s = format!("P{}DT{}H{}M{}", i.days, i.hours, i.minutes, i.seconds);
    if i.microseconds != 0 {
        let _ = write!(s, ".{:06}", i.microseconds);
    }
    s.push('S');
    s
}

/// A `Duration` as xs:duration in seconds with milliseconds (`PT600.000S`), as expiry
/// times are written.
pub fn xs_seconds(d: Duration) -> String {
    format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
}

/// Parses an xs:duration without years or months (`PT60.000S`, `P1DT2H`) into a
/// `Duration`; `None` if it is not one.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let rest = s.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    let mut micros: u128 = 0;
    let mut take = |part: &str, units: &[(char, u128)]| -> Option<()> {
        let mut number = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let (_, scale) = allowed.by_ref().find(|(u, _)| *u == c)?;
            if number.is_empty() {
                return None;
            }
            let value: f64 = number.parse().ok()?;
            micros += (value * *scale as f64).round() as u128;
            number.clear();
        }
        number.is_empty().then_some(())
    };
    take(date, &[('D', 86_400_000_000)])?;
    if let Some(t) = time {
        take(
            t,
            &[('H', 3_600_000_000), ('M', 60_000_000), ('S', 1_000_000)],
        )?;
    }
    Some(Duration::from_micros(u64::try_from(micros).ok()?))
}

/// A CIM interval of a `Duration`.
fn interval_of(d: Duration) -> Option<DateTime> {
    let secs = d.as_secs();
    Some(DateTime::Interval(Interval {
        days: u32::try_from(secs / 86_400).ok()?,
        hours: ((secs / 3600) % 24) as u8,
        minutes: ((secs / 60) % 60) as u8,
        seconds: (secs % 60) as u8,
        microseconds: d.subsec_micros(),
        precision: 20,
    }))
}

/// Parses xs:dateTime (or xs:date) into a CIM timestamp.
fn parse_xs_datetime(s: &str) -> Option<DateTime> {
    let s = s.trim();
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00Z"));
    let mut d = date.splitn(3, '-');
    let year: u16 = d.next()?.parse().ok()?;
    let month: u8 = d.next()?.parse().ok()?;
    let day: u8 = d.next()?.get(..2)?.parse().ok()?;
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0i16)
    } else if let Some(i) = time.rfind(['+', '-']).filter(|&i| i >= 8) {
        let (h, m) = time[i + 1..].split_once(':')?;
        let (h, m) = (h.parse::<u8>().ok()?, m.parse::<u8>().ok()?);
        if h > 14 || m > 59 {
            return None;
        }
        let minutes = i16::from(h) * 60 + i16::from(m);
        (
            &time[..i],
            if &time[i..=i] == "-" {
                -minutes
            } else {
                minutes
            },
        )
    } else {
        (time, 0)
    };
    let mut c = clock.splitn(3, ':');
    let hour: u8 = c.next()?.parse().ok()?;
    let minute: u8 = c.next()?.parse().ok()?;
    let seconds = c.next()?;
    let (second, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let microsecond = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain("000000".chars()).take(6).collect();
        digits.parse().ok()?
    };
    let text = format!(
        "{year:04}{month:02}{day:02}{hour:02}{minute:02}{:02}.{microsecond:06}{}{:03}",
        second.parse::<u8>().ok()?,
        if offset < 0 { '-' } else { '+' },
        offset.abs()
    );
    DateTime::parse(&text).ok()
}

/// The CIM datetime text of a DSP0230 `cim:Datetime`, `cim:Interval`, `cim:Date`,
/// `cim:Time` or `cim:CIM_DateTime` element.
fn datetime_element(e: &Element) -> Result<String, Fault> {
    let bad = || {
        Fault::schema(format!(
            "'{}' is not a valid {}",
            e.text.trim(),
            e.local_name()
        ))
    };
    let value = match e.local_name() {
        "Datetime" | "Date" => parse_xs_datetime(&e.text),
        "Interval" => parse_duration(&e.text).and_then(interval_of),
        "Time" => parse_xs_datetime(&format!("1970-01-01T{}", e.text.trim())),
        _ => DateTime::parse(e.text.trim()).ok(),
    };
    value.map(|v| v.to_string()).ok_or_else(bad)
}

/// Whether the element is nil (`xsi:nil="true"`).
fn is_nil(e: &Element) -> bool {
    e.attr_local("nil")
        .is_some_and(|v| v.trim() == "true" || v.trim() == "1")
}

/// One value of a property or parameter element: text, a DSP0230 datetime, an endpoint
/// reference, or a nested instance (`None` for nil).
pub fn read_value(
    e: &Element,
    embedded: &dyn Fn(&Element) -> Result<Instance, Fault>,
) -> Result<Option<UntypedValue>, Fault> {
    if is_nil(e) {
        return Ok(None);
    }
    let child = e.children.first();
    Ok(Some(match child {
        None => UntypedValue::Text(e.text.to_string()),
        Some(c) if c.namespace.as_deref() == Some(names::CIM_COMMON) => {
            UntypedValue::Text(datetime_element(c)?)
        }
        Some(c) if c.is(names::WSA, "Address") || c.is(names::WSA, "ReferenceParameters") => {
            UntypedValue::Typed(Value::Reference(read_epr(e)?))
        }
        Some(c) if c.is(names::WSA, "EndpointReference") => {
            UntypedValue::Typed(Value::Reference(read_epr(c)?))
        }
        Some(c) => UntypedValue::Typed(Value::Instance(Box::new(embedded(c)?))),
    }))
}

/// The elements of `parent` grouped by local name, in first-seen order: a repeated
/// element is an array.
pub fn group_children<'e, 'd>(parent: &'e Element<'d>) -> Vec<(&'e str, Vec<&'e Element<'d>>)> {
    let mut groups: Vec<(&str, Vec<&Element>)> = Vec::new();
    for c in &parent.children {
        match groups.iter_mut().find(|(n, _)| *n == c.local_name()) {
            Some((_, v)) => v.push(c),
            None => groups.push((c.local_name(), vec![c])),
        }
    }
    groups
}

/// The values of a group of same-named elements: one value, or an array.
pub fn read_group(
    elements: &[&Element],
    is_array: bool,
    embedded: &dyn Fn(&Element) -> Result<Instance, Fault>,
) -> Result<Option<UntypedValue>, Fault> {
    if !is_array {
        if elements.len() > 1 {
            return Err(Fault::schema(format!(
                "{} is a scalar but was given {} times",
                elements[0].local_name(),
                elements.len()
            )));
        }
        return read_value(elements[0], embedded);
    }
    // A NULL array is written as one nil element (as write_property does), so one nil
    // element reads back as NULL rather than as an array of one NULL.
    if let [only] = elements {
        if is_nil(only) {
            return Ok(None);
        }
    }
    let values = elements
        .iter()
        .map(|e| read_value(e, embedded))
        .collect::<Result<Vec<_>, _>>()?;
    if values
        .iter()
        .all(|v| matches!(v, None | Some(UntypedValue::Text(_))))
    {
        return Ok(Some(UntypedValue::TextArray(
            values
                .into_iter()
                .map(|v| match v {
                    Some(UntypedValue::Text(t)) => Some(t),
                    _ => None,
                })
                .collect(),
        )));
    }
    let mut items = Vec::with_capacity(values.len());
    for v in values {
        items.push(match v {
            None => None,
            Some(UntypedValue::Typed(v)) => Some(v),
            Some(UntypedValue::Text(t)) => Some(Value::String(t.into())),
            Some(UntypedValue::TextArray(_)) => unreachable!("read_value returns no arrays"),
        });
    }
    Ok(Some(UntypedValue::Typed(Value::Array(items))))
}

/// Reads an instance element (`p:CLASS` with one child per property value) of `class`,
/// typing every value from the class declaration.
pub fn read_instance(
    e: &Element,
    class: &Class,
    embedded: &dyn Fn(&Element) -> Result<Instance, Fault>,
) -> Result<Instance, Fault> {
    let mut inst = Instance::new(class.name.clone());
    for (name, elements) in group_children(e) {
        let decl = class
            .properties
            .get(name)
            .ok_or_else(|| Fault::schema(format!("class {} has no property {name}", class.name)))?;
        let is_array = decl.array.is_some();
        let value = read_group(&elements, is_array, embedded)?;
        let element = format!("property {}.{}", class.name, decl.name);
        let value = match value {
            None => None,
            Some(v) => Some(
                crate::dispatch::convert::typed(v, decl.ty, is_array, &element)
                    .map_err(|e| Fault::schema(e.description))?,
            ),
        };
        inst.properties.insert(
            decl.name.clone(),
            InstanceProperty {
                name: decl.name.clone(),
                ty: decl.ty,
                is_array,
                reference_class: decl.reference_class.clone(),
                value,
            },
        );
    }
    Ok(inst)
}

/// Reads an endpoint reference (its `wsa:ReferenceParameters`, the address ignored:
/// openwsman's association filter leaves it out) into an object path with string keys
/// (typed later against the class); `__cimnamespace` becomes the path's namespace.
pub fn read_epr(e: &Element) -> Result<ObjectPath, Fault> {
    let params = e
        .child_ns(names::WSA, "ReferenceParameters")
        .or_else(|| e.child_ns(names::WSA, "ReferenceProperties"))
        .ok_or_else(|| Fault::schema("an endpoint reference has no wsa:ReferenceParameters"))?;
    let uri = params
        .child_ns(names::WSMAN, "ResourceURI")
        .map(|u| u.text.trim().to_string())
        .ok_or_else(|| Fault::schema("an endpoint reference has no wsman:ResourceURI"))?;
    let class = resource::class_of_uri(&uri)?;
    let selectors = match params.child_ns(names::WSMAN, "SelectorSet") {
        Some(set) => resource::read_selectors(set)?,
        None => Vec::new(),
    };
    let (namespace, keys) = resource::split_namespace(selectors);
    Ok(ObjectPath::new(
        namespace,
        class,
        keys.into_iter()
            .map(|(name, value)| KeyBinding {
                name: name.into(),
                value,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_clients_write_them() {
        assert_eq!(parse_duration("PT60.000S"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("PT20S"), Some(Duration::from_secs(20)));
        assert_eq!(
            parse_duration("P0DT0H1M40S"),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            parse_duration("P1DT0.5S"),
            Some(Duration::from_millis(86_400_500))
        );
        for bad in ["", "P", "PT", "60S", "P1Y", "PTS", "PT1S2"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn null_array_elements_keep_their_place_as_nil() {
        let mut out = String::new();
        let v = Value::Array(vec![Some(Value::UInt16(1)), None, Some(Value::UInt16(3))]);
        write_named(&mut out, "Codes", Some(&v), "root/virt", "");
        assert_eq!(
            out,
            "<p:Codes>1</p:Codes><p:Codes xsi:nil=\"true\"/><p:Codes>3</p:Codes>"
        );
        out.clear();
        write_named(&mut out, "Codes", None, "root/virt", "");
        assert_eq!(out, "<p:Codes xsi:nil=\"true\"/>");
    }

    #[test]
    fn datetimes_round_trip_through_dsp0230() {
        let DateTime::Timestamp(t) = DateTime::parse("20140403144550.468750+480").unwrap() else {
            panic!()
        };
        assert_eq!(xs_datetime(&t), "2014-04-03T14:45:50.468750+08:00");
        assert_eq!(
            parse_xs_datetime("2014-04-03T14:45:50.46875+08:00").unwrap(),
            DateTime::Timestamp(t)
        );
        let DateTime::Interval(i) = DateTime::parse("00000001020304.000000:000").unwrap() else {
            panic!()
        };
        assert_eq!(xs_duration(&i), "P1DT2H3M4S");
        assert_eq!(parse_xs_datetime("2014-04-03T14:45:50+99999:00"), None);
        assert_eq!(
            parse_duration(&xs_duration(&i)).and_then(interval_of),
            Some(DateTime::Interval(i))
        );
    }
}
