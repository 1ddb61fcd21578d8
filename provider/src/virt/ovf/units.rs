//! AllocationUnits and capacityAllocationUnits: DSP0004's programmatic units
//! (`byte * 2^20`, `hertz * 10^6`, `byte*2^30`) and the names real exporters write instead
//! (`MegaBytes`, `GigaBytes`, `MegaHertz`, `Processor Cores`).

/// What a unit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseUnit {
    /// Bytes (memory, disk capacity).
    Byte,
    /// Hertz (processor speed).
    Hertz,
    /// Whole things: processors, cores, ports (`count`, `Processor Cores`...).
    Count,
}

/// A unit: what it counts and how many of the base one it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    /// What it counts.
    pub base: BaseUnit,
    /// How many base units one of it is.
    pub multiplier: u128,
}

impl Unit {
    /// Bytes, one at a time (DSP0243's default for capacities).
    pub const BYTE: Unit = Unit {
        base: BaseUnit::Byte,
        multiplier: 1,
    };

    /// `quantity` of this unit in base units, if it fits in a u64.
    pub fn apply(&self, quantity: u64) -> Option<u64> {
        u64::try_from(u128::from(quantity).checked_mul(self.multiplier)?).ok()
    }
}

/// Names for a base unit with a decimal or binary prefix, as exporters write them.
const NAMED: &[(&str, BaseUnit, u128)] = &[
    ("byte", BaseUnit::Byte, 1),
    ("bytes", BaseUnit::Byte, 1),
    ("kilobyte", BaseUnit::Byte, 1 << 10),
    ("kilobytes", BaseUnit::Byte, 1 << 10),
    // VirtualBox and COT read MegaBytes as 2^20, as memory sizes are meant.
    ("megabyte", BaseUnit::Byte, 1 << 20),
    ("megabytes", BaseUnit::Byte, 1 << 20),
    ("gigabyte", BaseUnit::Byte, 1 << 30),
    ("gigabytes", BaseUnit::Byte, 1 << 30),
    ("terabyte", BaseUnit::Byte, 1 << 40),
    ("terabytes", BaseUnit::Byte, 1 << 40),
    ("kib", BaseUnit::Byte, 1 << 10),
    ("mib", BaseUnit::Byte, 1 << 20),
    ("gib", BaseUnit::Byte, 1 << 30),
    ("tib", BaseUnit::Byte, 1 << 40),
    ("kb", BaseUnit::Byte, 1 << 10),
    ("mb", BaseUnit::Byte, 1 << 20),
    ("gb", BaseUnit::Byte, 1 << 30),
    ("tb", BaseUnit::Byte, 1 << 40),
    ("hertz", BaseUnit::Hertz, 1),
    ("hz", BaseUnit::Hertz, 1),
    ("kilohertz", BaseUnit::Hertz, 1_000),
    ("megahertz", BaseUnit::Hertz, 1_000_000),
    ("mhz", BaseUnit::Hertz, 1_000_000),
    ("gigahertz", BaseUnit::Hertz, 1_000_000_000),
    ("ghz", BaseUnit::Hertz, 1_000_000_000),
    ("count", BaseUnit::Count, 1),
    ("processorcores", BaseUnit::Count, 1),
    ("processors", BaseUnit::Count, 1),
    ("cores", BaseUnit::Count, 1),
];

/// Reads a unit: a base unit (or a prefixed name) followed by any number of `* N`, `* B^E`
/// and `/ N` modifiers, without regard to case or spaces. `None` for anything else.
pub fn parse(text: &str) -> Option<Unit> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let split = compact.find(['*', '/']).unwrap_or(compact.len());
    let (name, mut rest) = compact.split_at(split);
    let &(_, base, mut multiplier) = NAMED.iter().find(|(n, _, _)| *n == name)?;
    while !rest.is_empty() {
        let multiply = rest.starts_with('*');
        rest = &rest[1..];
        let end = rest.find(['*', '/']).unwrap_or(rest.len());
        let factor = factor(&rest[..end])?;
        rest = &rest[end..];
        multiplier = if multiply {
            multiplier.checked_mul(factor)?
        } else if factor != 0 && multiplier.is_multiple_of(factor) {
            multiplier / factor
        } else {
            return None;
        };
    }
    (multiplier > 0).then_some(Unit { base, multiplier })
}

/// `N` or `B^E` (a whole power: DSP0004 writes `10^-3` for milli, which no size uses).
fn factor(text: &str) -> Option<u128> {
    match text.split_once('^') {
        Some((base, exponent)) => {
            let base: u128 = base.parse().ok()?;
            let exponent: u32 = exponent.parse().ok()?;
            base.checked_pow(exponent)
        }
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Option<u128> {
        parse(text)
            .filter(|u| u.base == BaseUnit::Byte)
            .map(|u| u.multiplier)
    }

    #[test]
    fn programmatic_units_in_every_spacing_and_case() {
        assert_eq!(bytes("byte * 2^20"), Some(1 << 20));
        assert_eq!(bytes("byte*2^30"), Some(1 << 30));
        assert_eq!(bytes("Byte * 2^10"), Some(1024));
        assert_eq!(bytes("byte * 10^3"), Some(1000));
        assert_eq!(bytes("byte * 1024 * 1024"), Some(1 << 20));
        assert_eq!(bytes("byte * 2^30 / 2^10"), Some(1 << 20));
        assert_eq!(bytes("byte"), Some(1));
        let mhz = parse("hertz * 10^6").unwrap();
        assert_eq!((mhz.base, mhz.multiplier), (BaseUnit::Hertz, 1_000_000));
        assert_eq!(parse("Hertz*10^9").unwrap().multiplier, 1_000_000_000);
    }

    #[test]
    fn names_exporters_write() {
        assert_eq!(bytes("MegaBytes"), Some(1 << 20));
        assert_eq!(bytes("GigaBytes"), Some(1 << 30));
        assert_eq!(bytes("KiloBytes"), Some(1 << 10));
        assert_eq!(bytes("MB"), Some(1 << 20));
        assert_eq!(parse("MegaHertz").unwrap().base, BaseUnit::Hertz);
        assert_eq!(parse("Processor Cores").unwrap().base, BaseUnit::Count);
        assert_eq!(parse("count").unwrap().multiplier, 1);
    }

    #[test]
    fn nonsense_is_refused() {
        for text in [
            "",
            "Disk",
            "byte * ",
            "byte ^ 2",
            "byte * 2^200",
            "byte / 0",
            "byte / 3",
            "furlong",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert_eq!(Unit::BYTE.apply(u64::MAX), Some(u64::MAX));
        assert_eq!(parse("byte * 2^30").unwrap().apply(u64::MAX), None);
    }
}
