//! Prints qualifier declarations, classes and instances back as MOF.
//!
//! Classes print as declared (their own features and qualifiers, so that compiling the output
//! rebuilds the same repository) or resolved (everything they have, inherited features
//! marked with a comment).

use std::fmt::Write as _;

use crate::class::{Class, Method, Property};
use crate::instance::Instance;
use crate::qualifier::{Qualifier, QualifierDecl, QualifierSet};
use crate::repository::Namespace;
use crate::types::CimType;
use crate::value::Value;

/// Strings longer than this are split into concatenated pieces at spaces, for readability.
const LINE_WIDTH: usize = 66;

/// `Qualifier Name : type = default, Scope(...), Flavor(...);`
pub fn qualifier_decl(d: &QualifierDecl) -> String {
    let mut out = format!("Qualifier {} : {}", d.name, d.ty);
    if let Some(a) = &d.array {
        out.push_str(&a.mof_suffix());
    }
    match &d.default {
        Some(v) => {
            out.push_str(" = ");
            write_value(&mut out, v, 4);
        }
        // DMTF declarations spell out a NULL default for scalars; arrays omit it.
        None if d.array.is_none() => out.push_str(" = null"),
        None => {}
    }
    let _ = write!(out, ",\n    Scope({})", d.scope);
    let mut flavors = Vec::new();
    flavors.push(if d.flavor.overridable {
        "EnableOverride"
    } else {
        "DisableOverride"
    });
    flavors.push(if d.flavor.to_subclass {
        "ToSubclass"
    } else {
        "Restricted"
    });
    if d.flavor.translatable {
        flavors.push("Translatable");
    }
    let _ = write!(out, ",\n    Flavor({});\n", flavors.join(", "));
    out
}

/// Which features and qualifiers of a class to print.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClassForm {
    /// Only what the class itself declares: recompiles to the same class.
    Declared,
    /// Every feature and qualifier the class has, inherited ones marked.
    Resolved,
}

/// A class as MOF. `ns` supplies the qualifier declarations, so flavors are printed only
/// where they differ from the declaration.
pub fn class(c: &Class, ns: &Namespace, form: ClassForm) -> String {
    let mut out = String::new();
    write_qualifiers(&mut out, &c.qualifiers, ns, form, "");
    let _ = write!(out, "class {}", c.name);
    if let Some(s) = &c.superclass {
        let _ = write!(out, " : {s}");
    }
    out.push_str(" {\n");
    let declared = form == ClassForm::Declared;
    for p in c.properties.values().filter(|p| !declared || !p.propagated) {
        out.push('\n');
        write_property(&mut out, p, ns, form);
    }
    for m in c.methods.values().filter(|m| !declared || !m.propagated) {
        out.push('\n');
        write_method(&mut out, m, ns, form);
    }
    out.push_str("};\n");
    out
}

fn write_property(out: &mut String, p: &Property, ns: &Namespace, form: ClassForm) {
    if form == ClassForm::Resolved && p.propagated {
        let _ = writeln!(out, "   // from {}", p.class_origin);
    }
    write_qualifiers(out, &p.qualifiers, ns, form, "   ");
    out.push_str("   ");
    write_type(out, p.ty, p.reference_class.as_ref().map(|n| n.as_str()));
    let _ = write!(out, " {}", p.name);
    if let Some(a) = &p.array {
        out.push_str(&a.mof_suffix());
    }
    if let Some(v) = &p.default {
        out.push_str(" = ");
        write_value(out, v, 6);
    }
    out.push_str(";\n");
}

fn write_method(out: &mut String, m: &Method, ns: &Namespace, form: ClassForm) {
    if form == ClassForm::Resolved && m.propagated {
        let _ = writeln!(out, "   // from {}", m.class_origin);
    }
    write_qualifiers(out, &m.qualifiers, ns, form, "   ");
    let _ = write!(out, "   {} {}(", m.return_type, m.name);
    for (i, p) in m.parameters.values().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        write_qualifiers(out, &p.qualifiers, ns, form, "      ");
        out.push_str("      ");
        write_type(out, p.ty, p.reference_class.as_ref().map(|n| n.as_str()));
        let _ = write!(out, " {}", p.name);
        if let Some(a) = &p.array {
            out.push_str(&a.mof_suffix());
        }
    }
    out.push_str(");\n");
}

fn write_type(out: &mut String, ty: CimType, reference_class: Option<&str>) {
    match (ty, reference_class) {
        (CimType::Reference, Some(class)) => {
            let _ = write!(out, "{class} REF");
        }
        _ => out.push_str(ty.as_str()),
    }
}

fn write_qualifiers(
    out: &mut String,
    qs: &QualifierSet,
    ns: &Namespace,
    form: ClassForm,
    indent: &str,
) {
    let shown: Vec<&Qualifier> = qs
        .iter()
        .filter(|q| form == ClassForm::Resolved || !q.propagated)
        .collect();
    if shown.is_empty() {
        return;
    }
    let _ = write!(out, "{indent}   [");
    for (i, q) in shown.iter().enumerate() {
        if i > 0 {
            let _ = write!(out, ",\n{indent}    ");
        }
        out.push_str(q.name.as_str());
        match &q.value {
            Some(Value::Boolean(true)) => {}
            Some(v @ Value::Array(_)) => {
                out.push(' ');
                write_value(out, v, indent.len() + 6);
            }
            Some(v) => {
                out.push_str(" ( ");
                write_value(out, v, indent.len() + 6);
                out.push_str(" )");
            }
            None => out.push_str(" ( null )"),
        }
        if let Some(decl) = ns.qualifier(q.name.as_str()) {
            let flavors = q.flavor.keywords_relative_to(&decl.flavor);
            if !flavors.is_empty() {
                let _ = write!(out, " : {}", flavors.join(" "));
            }
        }
    }
    out.push_str("]\n");
}

/// An instance as MOF, with only its non-NULL values.
pub fn instance(inst: &Instance, alias: Option<&str>) -> String {
    let mut out = format!("instance of {}", inst.class_name);
    if let Some(a) = alias {
        let _ = write!(out, " as ${a}");
    }
    out.push_str(" {\n");
    for p in inst.properties.values() {
        if let Some(v) = &p.value {
            let _ = write!(out, "   {} = ", p.name);
            write_value(&mut out, v, 6);
            out.push_str(";\n");
        }
    }
    out.push_str("};\n");
    out
}

/// A whole namespace: qualifier declarations, classes as declared, then instances.
pub fn namespace(ns: &Namespace) -> String {
    let mut out = String::new();
    for d in ns.qualifiers() {
        out.push_str(&qualifier_decl(d));
        out.push('\n');
    }
    for c in ns.classes() {
        out.push_str(&class(c, ns, ClassForm::Declared));
        out.push('\n');
    }
    for (_, i) in ns.instances() {
        out.push_str(&instance(i, None));
        out.push('\n');
    }
    out
}

/// A value as a MOF constant; `indent` is the column for continuation lines.
pub fn write_value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => write_string(out, s, indent),
        Value::Char16(c) => {
            out.push('\'');
            escape_into(out, *c, '\'');
            out.push('\'');
        }
        Value::Real32(r) => write_real(out, f64::from(*r), format!("{r:?}")),
        Value::Real64(r) => write_real(out, *r, format!("{r:?}")),
        Value::DateTime(dt) => {
            let _ = write!(out, "\"{dt}\"");
        }
        Value::Reference(p) => write_string(out, &p.to_uri(), indent),
        Value::Instance(i) => {
            let text = instance(i, None);
            out.push_str(text.trim_end().trim_end_matches(';'));
        }
        Value::Array(items) => {
            let rendered: Vec<String> = items
                .iter()
                .map(|item| {
                    let mut s = String::new();
                    match item {
                        Some(v) => write_value(&mut s, v, indent + 2),
                        None => s.push_str("null"),
                    }
                    s
                })
                .collect();
            write_array(out, &rendered, indent);
        }
        other => {
            let _ = write!(out, "{}", other.as_i128().unwrap_or_default());
        }
    }
}

/// `{ a, b, c }`, filled greedily to about 80 columns with continuation lines indented to
/// `indent`.
fn write_array(out: &mut String, items: &[String], indent: usize) {
    const WIDTH: usize = 80;
    out.push_str("{ ");
    let mut column = out.len() - out.rfind('\n').map_or(0, |i| i + 1);
    for (i, item) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        let needed = item.len() + if last { 2 } else { 1 };
        if i > 0 && column + 1 + needed > WIDTH && !item.contains('\n') {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent + 2));
            column = indent + 2;
        } else if i > 0 {
            out.push(' ');
            column += 1;
        }
        out.push_str(item);
        column = match item.rfind('\n') {
            Some(nl) => item.len() - nl - 1,
            None => column + item.len(),
        };
        if !last {
            out.push(',');
            column += 1;
        }
    }
    out.push_str(" }");
}

/// Reals always get a decimal point, as the MOF grammar requires.
fn write_real(out: &mut String, r: f64, shortest: String) {
    if !r.is_finite() {
        // MOF has no spelling for infinities or NaN.
        out.push_str("null");
        return;
    }
    if shortest.contains('.') {
        out.push_str(&shortest);
    } else if let Some((mantissa, exp)) = shortest.split_once('e') {
        let _ = write!(out, "{mantissa}.0e{exp}");
    } else {
        let _ = write!(out, "{shortest}.0");
    }
}

fn write_string(out: &mut String, s: &str, indent: usize) {
    let mut pieces = Vec::new();
    let mut rest = s;
    while rest.len() > LINE_WIDTH {
        // Split after a space near the width, so each piece reads naturally.
        let cut = rest[..LINE_WIDTH]
            .rfind(' ')
            .map(|i| i + 1)
            .filter(|&i| i > LINE_WIDTH / 2)
            .unwrap_or_else(|| {
                let mut i = LINE_WIDTH;
                while !rest.is_char_boundary(i) {
                    i += 1;
                }
                i
            });
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        }
        out.push('"');
        for c in piece.chars() {
            escape_into(out, c, '"');
        }
        out.push('"');
    }
}

fn escape_into(out: &mut String, c: char, quote: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:04X}", c as u32);
        }
        c => out.push(c),
    }
}
