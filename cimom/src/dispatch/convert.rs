//! Converting values to the types their declarations demand: text from untyped CIM-XML,
//! integers of another width, keys of client paths.

use cim_schema::{CimType, Class, DateTime, ObjectPath, Value};

use super::operation::UntypedValue;
use crate::error::{CimError, CimResult, StatusCode};

/// Parses text as a scalar of type `ty`.
pub fn parse_scalar(text: &str, ty: CimType) -> CimResult<Value> {
    let mismatch = || {
        CimError::new(
            StatusCode::TypeMismatch,
            format!("'{text}' is not a valid {ty} value"),
        )
    };
    let t = text.trim();
    Ok(match ty {
        CimType::String => Value::String(text.into()),
        CimType::Boolean => match t {
            t if t.eq_ignore_ascii_case("true") => Value::Boolean(true),
            t if t.eq_ignore_ascii_case("false") => Value::Boolean(false),
            _ => return Err(mismatch()),
        },
        CimType::Char16 => {
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Value::Char16(c),
                _ => return Err(mismatch()),
            }
        }
        CimType::Real32 | CimType::Real64 => {
            let v = match t {
                "INF" | "+INF" => f64::INFINITY,
                "-INF" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                t => t.parse::<f64>().map_err(|_| mismatch())?,
            };
            if ty == CimType::Real32 {
                Value::Real32(v as f32)
            } else {
                Value::Real64(v)
            }
        }
        CimType::DateTime => Value::DateTime(DateTime::parse(t).map_err(|e| {
            CimError::new(
                StatusCode::TypeMismatch,
                format!("'{text}' is not a valid datetime: {e}"),
            )
        })?),
        CimType::Reference => Value::Reference(ObjectPath::parse(t).map_err(|e| {
            CimError::new(
                StatusCode::TypeMismatch,
                format!("'{text}' is not a reference: {e}"),
            )
        })?),
        int => {
            let digits = t.strip_prefix('+').unwrap_or(t);
            let v = if let Some(hex) = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0X"))
            {
                i128::from_str_radix(hex, 16)
            } else {
                digits.parse::<i128>()
            }
            .map_err(|_| mismatch())?;
            Value::integer(int, v).ok_or_else(|| {
                CimError::new(
                    StatusCode::TypeMismatch,
                    format!("{v} is out of range for {int}"),
                )
            })?
        }
    })
}

/// Converts a typed value to `ty` (and arrayness) where that loses nothing: integers of
/// another width, strings holding another type's text.
pub fn coerce(
    value: Value,
    ty: CimType,
    is_array: bool,
    element: &dyn std::fmt::Display,
) -> CimResult<Value> {
    let mismatch = |v: &Value| {
        CimError::new(
            StatusCode::TypeMismatch,
            format!(
                "{element} must be {ty}{}, not {}",
                if is_array { "[]" } else { "" },
                v.cim_type().map_or("NULL".into(), |t| t.to_string())
            ),
        )
    };
    match value {
        Value::Array(items) if is_array => Ok(Value::Array(
            items
                .into_iter()
                .map(|i| i.map(|v| coerce(v, ty, false, element)).transpose())
                .collect::<CimResult<_>>()?,
        )),
        v if v.is_array() != is_array => Err(mismatch(&v)),
        v if v.cim_type() == Some(ty) => Ok(v),
        Value::Instance(i) if ty == CimType::String => Ok(Value::Instance(i)),
        Value::String(s) => parse_scalar(&s, ty),
        Value::Real64(r) if ty == CimType::Real32 => Ok(Value::Real32(r as f32)),
        Value::Real32(r) if ty == CimType::Real64 => Ok(Value::Real64(f64::from(r))),
        v => match v.as_i128() {
            Some(i) if ty.is_integer() => Value::integer(ty, i).ok_or_else(|| {
                CimError::new(
                    StatusCode::TypeMismatch,
                    format!("{element}: {i} is out of range for {ty}"),
                )
            }),
            Some(i) if ty.is_real() => Ok(if ty == CimType::Real32 {
                Value::Real32(i as f32)
            } else {
                Value::Real64(i as f64)
            }),
            _ => Err(mismatch(&v)),
        },
    }
}

/// Types an untyped value as `ty`.
pub fn typed(
    value: UntypedValue,
    ty: CimType,
    is_array: bool,
    element: &dyn std::fmt::Display,
) -> CimResult<Value> {
    match value {
        UntypedValue::Text(t) if !is_array => parse_scalar(&t, ty),
        UntypedValue::TextArray(items) if is_array => Ok(Value::Array(
            items
                .into_iter()
                .map(|i| i.map(|t| parse_scalar(&t, ty)).transpose())
                .collect::<CimResult<_>>()?,
        )),
        UntypedValue::Typed(v) => coerce(v, ty, is_array, element),
        _ => Err(CimError::new(
            StatusCode::TypeMismatch,
            format!(
                "{element} must be {}",
                if is_array { "an array" } else { "a scalar" }
            ),
        )),
    }
}

/// A client's path checked against its class: key names as the class spells them, values
/// of the declared key types, no missing or extra keys.
pub fn normalize_path(class: &Class, path: &ObjectPath) -> CimResult<ObjectPath> {
    let keys: Vec<_> = class.keys().collect();
    let mut out = ObjectPath::class(None, class.name.clone());
    for kb in &path.keys {
        let decl = if kb.name.as_str().is_empty() && keys.len() == 1 {
            keys[0]
        } else {
            keys.iter()
                .copied()
                .find(|k| k.name == kb.name)
                .ok_or_else(|| {
                    CimError::invalid_parameter(format!(
                        "'{}' is not a key of class {}; its keys are {}",
                        kb.name,
                        class.name,
                        keys.iter()
                            .map(|k| k.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?
        };
        let value = coerce(
            kb.value.clone(),
            decl.ty,
            false,
            &format_args!("key {}.{}", class.name, decl.name),
        )?;
        out = out.with_key(decl.name.clone(), value);
    }
    if let Some(missing) = keys.iter().find(|k| out.key(k.name.as_str()).is_none()) {
        return Err(CimError::invalid_parameter(format!(
            "the path {path} lacks key {} of class {}",
            missing.name, class.name
        )));
    }
    Ok(out)
}
