//! CIM values: what a property, qualifier, parameter or key holds.

use std::sync::Arc;

use crate::datetime::DateTime;
use crate::instance::Instance;
use crate::path::ObjectPath;
use crate::types::CimType;

/// A non-null CIM value. NULL is `None` wherever a value is optional; array elements may be
/// NULL too, so arrays hold `Option<Value>`.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// boolean
    Boolean(bool),
    /// string. Shared, so that copying a value (inheritance, responses) does not copy text.
    String(Arc<str>),
    /// char16
    Char16(char),
    /// uint8
    UInt8(u8),
    /// sint8
    SInt8(i8),
    /// uint16
    UInt16(u16),
    /// sint16
    SInt16(i16),
    /// uint32
    UInt32(u32),
    /// sint32
    SInt32(i32),
    /// uint64
    UInt64(u64),
    /// sint64
    SInt64(i64),
    /// real32
    Real32(f32),
    /// real64
    Real64(f64),
    /// datetime
    DateTime(DateTime),
    /// reference
    Reference(ObjectPath),
    /// An embedded instance: the value of a string element with the EmbeddedInstance or
    /// EmbeddedObject qualifier.
    Instance(Box<Instance>),
    /// An array of the element type; every element has the same type.
    Array(Vec<Option<Value>>),
}

impl Value {
    /// An array of non-null elements.
    pub fn array<I: IntoIterator<Item = Value>>(items: I) -> Value {
        Value::Array(items.into_iter().map(Some).collect())
    }

    /// An array of strings.
    pub fn string_array<I, S>(items: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        Value::array(items.into_iter().map(|s| Value::String(s.into())))
    }

    /// The type of a scalar value, or of an array's first non-null element (`None` for an
    /// array of nulls). Embedded instances are strings.
    pub fn cim_type(&self) -> Option<CimType> {
        Some(match self {
            Value::Boolean(_) => CimType::Boolean,
            Value::String(_) | Value::Instance(_) => CimType::String,
            Value::Char16(_) => CimType::Char16,
            Value::UInt8(_) => CimType::UInt8,
            Value::SInt8(_) => CimType::SInt8,
            Value::UInt16(_) => CimType::UInt16,
            Value::SInt16(_) => CimType::SInt16,
            Value::UInt32(_) => CimType::UInt32,
            Value::SInt32(_) => CimType::SInt32,
            Value::UInt64(_) => CimType::UInt64,
            Value::SInt64(_) => CimType::SInt64,
            Value::Real32(_) => CimType::Real32,
            Value::Real64(_) => CimType::Real64,
            Value::DateTime(_) => CimType::DateTime,
            Value::Reference(_) => CimType::Reference,
            Value::Array(items) => return items.iter().flatten().find_map(Value::cim_type),
        })
    }

    /// Whether this is an array.
    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// Any integer value, widened.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::UInt8(v) => v.into(),
            Value::SInt8(v) => v.into(),
            Value::UInt16(v) => v.into(),
            Value::SInt16(v) => v.into(),
            Value::UInt32(v) => v.into(),
            Value::SInt32(v) => v.into(),
            Value::UInt64(v) => v.into(),
            Value::SInt64(v) => v.into(),
            _ => return None,
        })
    }

    /// The elements of a string array (null elements skipped), if this is one.
    pub fn as_str_array(&self) -> Option<Vec<&str>> {
        match self {
            Value::Array(items) => items
                .iter()
                .flatten()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>(),
            _ => None,
        }
    }

    /// The integer `v` as a value of integer type `ty`, if it fits.
    pub fn integer(ty: CimType, v: i128) -> Option<Value> {
        Some(match ty {
            CimType::UInt8 => Value::UInt8(v.try_into().ok()?),
            CimType::SInt8 => Value::SInt8(v.try_into().ok()?),
            CimType::UInt16 => Value::UInt16(v.try_into().ok()?),
            CimType::SInt16 => Value::SInt16(v.try_into().ok()?),
            CimType::UInt32 => Value::UInt32(v.try_into().ok()?),
            CimType::SInt32 => Value::SInt32(v.try_into().ok()?),
            CimType::UInt64 => Value::UInt64(v.try_into().ok()?),
            CimType::SInt64 => Value::SInt64(v.try_into().ok()?),
            _ => return None,
        })
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.into())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v.into())
    }
}
impl From<Arc<str>> for Value {
    fn from(v: Arc<str>) -> Self {
        Value::String(v)
    }
}
macro_rules! from_scalar {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v)
            }
        }
    )*};
}
from_scalar!(u8 => UInt8, i8 => SInt8, u16 => UInt16, i16 => SInt16, u32 => UInt32,
    i32 => SInt32, u64 => UInt64, i64 => SInt64, f32 => Real32, f64 => Real64,
    DateTime => DateTime, ObjectPath => Reference);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(Value::integer(CimType::UInt8, 255), Some(Value::UInt8(255)));
        assert_eq!(Value::integer(CimType::UInt8, 256), None);
        assert_eq!(
            Value::integer(CimType::SInt8, -128),
            Some(Value::SInt8(-128))
        );
        assert_eq!(Value::integer(CimType::UInt64, -1), None);
        assert_eq!(Value::integer(CimType::String, 1), None);
    }

    #[test]
    fn array_helpers() {
        let v = Value::string_array(["a", "b"]);
        assert_eq!(v.as_str_array(), Some(vec!["a", "b"]));
        assert_eq!(v.cim_type(), Some(CimType::String));
        assert_eq!(Value::Array(vec![None]).cim_type(), None);
    }
}
