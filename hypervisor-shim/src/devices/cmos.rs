//! The CMOS RTC and NVRAM (MC146818): the wall clock in BCD from the host's UTC time, and the
//! memory-size bytes firmware-less guests read.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The index port (bit 7 masks NMIs and is ignored).
pub const INDEX_PORT: u16 = 0x70;
/// The data port.
pub const DATA_PORT: u16 = 0x71;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;
/// Status B: 24-hour clock, BCD.
const STATUS_B_24H: u8 = 0x02;
/// Status D: the RTC's battery is good.
const STATUS_D_VALID: u8 = 0x80;
/// Status A: 32.768 kHz time base, 1024 Hz rate; never "update in progress".
const STATUS_A_DEFAULT: u8 = 0x26;

/// The snapshotted state.
#[derive(Clone, Serialize, Deserialize)]
pub struct CmosState {
    /// The selected register.
    pub index: u8,
    /// The 128 bytes of NVRAM (clock registers are computed on read).
    pub nvram: Vec<u8>,
}

/// The device.
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
}

impl Cmos {
    /// A CMOS that reports `memory` bytes of RAM in the standard NVRAM bytes.
    pub fn new(memory: u64) -> Cmos {
        let mut nvram = [0u8; 128];
        nvram[STATUS_A as usize] = STATUS_A_DEFAULT;
        nvram[STATUS_B as usize] = STATUS_B_24H;
        nvram[STATUS_D as usize] = STATUS_D_VALID;
        let below_4g = memory.min(crate::arch::layout::MMIO_GAP_START);
        let kib = |bytes: u64| (bytes / 1024).min(0xffff) as u16;
        // 0x15/0x16: base memory in KiB; 0x17/0x18 and 0x30/0x31: KiB from 1 MiB to 64 MiB.
        nvram[0x15..0x17].copy_from_slice(&640u16.to_le_bytes());
        let extended = kib(below_4g.saturating_sub(1 << 20).min(63 << 20));
        nvram[0x17..0x19].copy_from_slice(&extended.to_le_bytes());
        nvram[0x30..0x32].copy_from_slice(&extended.to_le_bytes());
        // 0x34/0x35: 64 KiB blocks from 16 MiB to 4 GiB; 0x5b-0x5d: 64 KiB blocks above 4 GiB.
        let blocks = (below_4g.saturating_sub(16 << 20) >> 16).min(0xffff) as u16;
        nvram[0x34..0x36].copy_from_slice(&blocks.to_le_bytes());
        let high = (memory.saturating_sub(below_4g) >> 16).min(0xff_ffff) as u32;
        nvram[0x5b..0x5e].copy_from_slice(&high.to_le_bytes()[..3]);
        Cmos { index: 0, nvram }
    }

    /// Reads the index or data port.
    pub fn read(&mut self, port: u16) -> u8 {
        if port == INDEX_PORT {
            return self.index;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let clock = Clock::from_unix(now);
        match self.index {
            SECONDS => bcd(clock.second),
            MINUTES => bcd(clock.minute),
            HOURS => bcd(clock.hour),
            WEEKDAY => bcd(clock.weekday),
            DAY => bcd(clock.day),
            MONTH => bcd(clock.month),
            YEAR => bcd((clock.year % 100) as u8),
            CENTURY => bcd((clock.year / 100) as u8),
            STATUS_C => 0,
            index => self.nvram[index as usize],
        }
    }

    /// Writes the index or data port. The clock registers ignore writes: the guest's clock
    /// is the host's.
    pub fn write(&mut self, port: u16, value: u8) {
        if port == INDEX_PORT {
            self.index = value & 0x7f;
        } else if !matches!(
            self.index,
            SECONDS..=YEAR | STATUS_A | STATUS_C | STATUS_D | CENTURY
        ) {
            self.nvram[self.index as usize] = value;
        }
    }

    /// The state to snapshot.
    pub fn state(&self) -> CmosState {
        CmosState {
            index: self.index,
            nvram: self.nvram.to_vec(),
        }
    }

    /// Takes a snapshotted state back.
    pub fn restore(&mut self, state: &CmosState) {
        self.index = state.index & 0x7f;
        let len = state.nvram.len().min(self.nvram.len());
        self.nvram[..len].copy_from_slice(&state.nvram[..len]);
    }
}

fn bcd(value: u8) -> u8 {
    ((value / 10) << 4) | (value % 10)
}

/// A UTC calendar time.
#[derive(Debug, PartialEq, Eq)]
struct Clock {
    year: u32,
    month: u8,
    day: u8,
    weekday: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl Clock {
    /// Converts seconds since the Unix epoch (days to civil date as in Howard Hinnant's
    /// `civil_from_days`).
    fn from_unix(secs: u64) -> Clock {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + u64::from(month <= 2)) as u32;
        Clock {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday; the RTC counts Sunday as 1.
            weekday: ((days + 4) % 7 + 1) as u8,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_converts_to_the_calendar() {
        let c = Clock::from_unix(1_795_600_000); // 2026-11-25 09:46:40 UTC, a Wednesday
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2026, 11, 25, 9, 46, 40)
        );
        assert_eq!(c.weekday, 4);
        let leap = Clock::from_unix(951_782_400); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
    }

    #[test]
    fn registers_read_in_bcd_and_memory_bytes_are_set() {
        let mut cmos = Cmos::new(512 << 20);
        cmos.write(INDEX_PORT, 0x80 | STATUS_B);
        assert_eq!(cmos.read(DATA_PORT), STATUS_B_24H);
        cmos.write(INDEX_PORT, CENTURY);
        assert_eq!(cmos.read(DATA_PORT), 0x20);
        cmos.write(INDEX_PORT, 0x34);
        let low = cmos.read(DATA_PORT);
        cmos.write(INDEX_PORT, 0x35);
        let high = cmos.read(DATA_PORT);
        assert_eq!(
            u16::from_le_bytes([low, high]),
            ((512 - 16) << 20 >> 16) as u16
        );
        cmos.write(INDEX_PORT, 0x40);
        cmos.write(DATA_PORT, 0xab);
        assert_eq!(cmos.read(DATA_PORT), 0xab);
        cmos.write(INDEX_PORT, SECONDS);
        cmos.write(DATA_PORT, 0x99);
        assert!(cmos.read(DATA_PORT) < 0x60, "the clock ignores writes");
    }
}
