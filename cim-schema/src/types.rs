//! CIM data types (DSP0004 5.2): the intrinsic types and arrays.

use std::fmt;
use std::str::FromStr;

/// An intrinsic CIM type. A reference's target class lives on the element that has the type
/// (property, parameter, method), because it is not part of a value's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CimType {
    /// `boolean`
    Boolean,
    /// `string`: UCS characters.
    String,
    /// `char16`: one UCS-2 character.
    Char16,
    /// `uint8`
    UInt8,
    /// `sint8`
    SInt8,
    /// `uint16`
    UInt16,
    /// `sint16`
    SInt16,
    /// `uint32`
    UInt32,
    /// `sint32`
    SInt32,
    /// `uint64`
    UInt64,
    /// `sint64`
    SInt64,
    /// `real32`: IEEE 754 single precision.
    Real32,
    /// `real64`: IEEE 754 double precision.
    Real64,
    /// `datetime`: a timestamp or an interval.
    DateTime,
    /// `ref`: an object path.
    Reference,
}

impl CimType {
    /// Every type, in DSP0004 order.
    pub const ALL: [CimType; 15] = [
        CimType::Boolean,
        CimType::String,
        CimType::Char16,
        CimType::UInt8,
        CimType::SInt8,
        CimType::UInt16,
        CimType::SInt16,
        CimType::UInt32,
        CimType::SInt32,
        CimType::UInt64,
        CimType::SInt64,
        CimType::Real32,
        CimType::Real64,
        CimType::DateTime,
        CimType::Reference,
    ];

    /// The MOF and CIM-XML spelling (`uint16`, `reference`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CimType::Boolean => "boolean",
            CimType::String => "string",
            CimType::Char16 => "char16",
            CimType::UInt8 => "uint8",
            CimType::SInt8 => "sint8",
            CimType::UInt16 => "uint16",
            CimType::SInt16 => "sint16",
            CimType::UInt32 => "uint32",
            CimType::SInt32 => "sint32",
            CimType::UInt64 => "uint64",
            CimType::SInt64 => "sint64",
            CimType::Real32 => "real32",
            CimType::Real64 => "real64",
            CimType::DateTime => "datetime",
            CimType::Reference => "reference",
        }
    }

    /// Whether the type is one of the eight integer types.
    pub fn is_integer(self) -> bool {
        self.integer_range().is_some()
    }

    /// Whether the type is real32 or real64.
    pub fn is_real(self) -> bool {
        matches!(self, CimType::Real32 | CimType::Real64)
    }

    /// The inclusive range of an integer type.
    pub fn integer_range(self) -> Option<(i128, i128)> {
        Some(match self {
            CimType::UInt8 => (0, u8::MAX.into()),
            CimType::SInt8 => (i8::MIN.into(), i8::MAX.into()),
            CimType::UInt16 => (0, u16::MAX.into()),
            CimType::SInt16 => (i16::MIN.into(), i16::MAX.into()),
            CimType::UInt32 => (0, u32::MAX.into()),
            CimType::SInt32 => (i32::MIN.into(), i32::MAX.into()),
            CimType::UInt64 => (0, u64::MAX.into()),
            CimType::SInt64 => (i64::MIN.into(), i64::MAX.into()),
            _ => return None,
        })
    }
}

impl fmt::Display for CimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a type name that is not a CIM type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a CIM data type")]
pub struct UnknownType(pub String);

impl FromStr for CimType {
    type Err = UnknownType;
    /// Parses a type name, ignoring case; `ref` and `reference` both name references.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("ref") {
            return Ok(CimType::Reference);
        }
        CimType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownType(s.to_string()))
    }
}

/// How an array's elements are ordered (DSP0004 ArrayType qualifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ArrayKind {
    /// Unordered, duplicates allowed (the default).
    #[default]
    Bag,
    /// Ordered; the position carries no meaning beyond order.
    Ordered,
    /// Ordered, and each position is significant (parallel arrays).
    Indexed,
}

impl ArrayKind {
    /// The ArrayType qualifier value.
    pub fn as_str(self) -> &'static str {
        match self {
            ArrayKind::Bag => "Bag",
            ArrayKind::Ordered => "Ordered",
            ArrayKind::Indexed => "Indexed",
        }
    }

    /// Parses an ArrayType qualifier value, ignoring case.
    pub fn parse(s: &str) -> Option<Self> {
        [ArrayKind::Bag, ArrayKind::Ordered, ArrayKind::Indexed]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// How many elements an array may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ArraySize {
    /// Any number (MOF `[]`).
    #[default]
    Unbounded,
    /// At most this many.
    Bounded(u32),
    /// Exactly this many (MOF `[n]`, DSP0004 2.x fixed-size arrays).
    Fixed(u32),
}

/// The array part of an element's type: absent for scalars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Array {
    /// The permitted number of elements.
    pub size: ArraySize,
    /// The ordering semantics.
    pub kind: ArrayKind,
}

impl Array {
    /// Whether `len` elements are allowed.
    pub fn allows_len(&self, len: usize) -> bool {
        match self.size {
            ArraySize::Unbounded => true,
            ArraySize::Bounded(n) => len <= n as usize,
            ArraySize::Fixed(n) => len == n as usize,
        }
    }

    /// The MOF suffix (`[]` or `[n]`).
    pub fn mof_suffix(&self) -> String {
        match self.size {
            ArraySize::Unbounded | ArraySize::Bounded(_) => "[]".to_string(),
            ArraySize::Fixed(n) => format!("[{n}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in CimType::ALL {
            assert_eq!(t.as_str().parse::<CimType>().unwrap(), t);
            assert_eq!(t.as_str().to_uppercase().parse::<CimType>().unwrap(), t);
        }
        assert_eq!("ref".parse::<CimType>().unwrap(), CimType::Reference);
        assert!("int".parse::<CimType>().is_err());
    }

    #[test]
    fn array_bounds() {
        let fixed = Array {
            size: ArraySize::Fixed(2),
            kind: ArrayKind::Indexed,
        };
        assert!(fixed.allows_len(2) && !fixed.allows_len(1));
        let bounded = Array {
            size: ArraySize::Bounded(2),
            kind: ArrayKind::Bag,
        };
        assert!(bounded.allows_len(0) && !bounded.allows_len(3));
    }
}
