//! Reading the properties of embedded instances (RASDs, VSSDs) as clients send them: strings,
//! unsigned integers in any width, booleans, the first element of an array, and quantities
//! of bytes in a RASD's AllocationUnits.

use cim_schema::{Instance, Value};

use cimom::error::{CimError, CimResult, StatusCode};

/// An instance of `class` with `props`, as a client would embed it (for tests).
#[cfg(test)]
pub(super) fn instance(class: &str, props: &[(&str, Value)]) -> Instance {
    let mut i = Instance::new(cim_schema::Name::new(class));
    for (n, v) in props {
        i.set(*n, v.clone());
    }
    i
}

/// `CIM_ERR_INVALID_PARAMETER` with `message`.
pub(super) fn invalid(message: String) -> CimError {
    CimError::new(StatusCode::InvalidParameter, message)
}

/// A string property, trimmed; `None` when absent, NULL or blank.
pub(super) fn string_property(instance: &Instance, name: &str) -> Option<String> {
    match instance.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// An unsigned integer property of any width; an error for another type.
pub(super) fn unsigned_property(instance: &Instance, name: &str) -> CimResult<Option<u64>> {
    Ok(match instance.get(name) {
        None => None,
        Some(Value::UInt8(v)) => Some(u64::from(*v)),
        Some(Value::UInt16(v)) => Some(u64::from(*v)),
        Some(Value::UInt32(v)) => Some(u64::from(*v)),
        Some(Value::UInt64(v)) => Some(*v),
        Some(other) => {
            return Err(invalid(format!(
                "{}.{name} must be an unsigned integer, not {other:?}",
                instance.class_name
            )))
        }
    })
}

/// The bytes one unit of a RASD's AllocationUnits stands for: DSP0004 programmatic units
/// (`byte*2^20`, `byte * 10^3`) and the names clients and exporters write (`KiloBytes`,
/// `MegaBytes`, `MB`), read as OVF descriptors' units are.
pub(super) fn allocation_unit_bytes(units: &str) -> Option<u64> {
    super::ovf::units::parse(units)
        .filter(|unit| unit.base == super::ovf::units::BaseUnit::Byte)
        .and_then(|unit| u64::try_from(unit.multiplier).ok())
}

/// `instance`'s `property` in bytes: the value times its AllocationUnits (`default_units`
/// when it names none).
pub fn byte_quantity(
    instance: &Instance,
    property: &str,
    default_units: &str,
) -> CimResult<Option<u64>> {
    let Some(amount) = unsigned_property(instance, property)? else {
        return Ok(None);
    };
    let units =
        string_property(instance, "AllocationUnits").unwrap_or_else(|| default_units.into());
    let unit = allocation_unit_bytes(&units)
        .ok_or_else(|| invalid(format!("AllocationUnits {units:?} is not a unit of bytes")))?;
    amount
        .checked_mul(unit)
        .map(Some)
        .ok_or_else(|| invalid(format!("{property} {amount} {units} is too large")))
}

/// A boolean property; an error for another type.
pub(super) fn boolean_property(instance: &Instance, name: &str) -> CimResult<Option<bool>> {
    match instance.get(name) {
        None => Ok(None),
        Some(Value::Boolean(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(format!(
            "{}.{name} must be a boolean, not {other:?}",
            instance.class_name
        ))),
    }
}

/// The first string of an array property (DSP1047's HostResource, DSP1050's Connection).
pub(super) fn first_of_array(instance: &Instance, name: &str) -> Option<String> {
    match instance.get(name) {
        Some(Value::Array(items)) => items.iter().flatten().find_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        }),
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}
