//! CIM datetime values (DSP0004 5.2.4): 25-character timestamps and intervals, with `*`
//! wildcards for reduced precision.
//!
//! ```text
//! timestamp  yyyymmddhhmmss.mmmmmmsutc   20231012143000.000000+060
//! interval   ddddddddhhmmss.mmmmmm:000   00000001020304.000000:000
//! ```
//! Wildcards replace the rightmost digits of the 20 digit positions (never the UTC offset):
//! `20231012******.******+000` is a day with no time of day.

use std::fmt;
use std::str::FromStr;

/// Number of digit positions that wildcards may replace (14 before the dot, 6 after).
const DIGITS: u8 = 20;

/// A CIM datetime: a point in time or a length of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DateTime {
    /// A point in time with a UTC offset.
    Timestamp(Timestamp),
    /// A duration.
    Interval(Interval),
}

/// A point in time. Fields hidden by wildcards are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// 0-9999
    pub year: u16,
    /// 1-12
    pub month: u8,
    /// 1-31
    pub day: u8,
    /// 0-23
    pub hour: u8,
    /// 0-59
    pub minute: u8,
    /// 0-60 (a leap second is allowed)
    pub second: u8,
    /// 0-999999
    pub microsecond: u32,
    /// Minutes east of UTC, -999 to 999.
    pub utc_offset: i16,
    /// How many of the 20 digit positions are significant (20 = no wildcards).
    pub precision: u8,
}

/// A length of time. Fields hidden by wildcards are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interval {
    /// 0-99999999
    pub days: u32,
    /// 0-23
    pub hours: u8,
    /// 0-59
    pub minutes: u8,
    /// 0-59
    pub seconds: u8,
    /// 0-999999
    pub microseconds: u32,
    /// How many of the 20 digit positions are significant (20 = no wildcards).
    pub precision: u8,
}

/// Why a string is not a CIM datetime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateTimeError {
    /// Not 25 characters.
    #[error("a CIM datetime has 25 characters, this one has {0}")]
    Length(usize),
    /// A character that does not belong at its position.
    #[error("unexpected '{found}' at position {position} of the datetime (expected {expected})")]
    Syntax {
        /// 0-based character position.
        position: usize,
        /// What was found.
        found: char,
        /// What was expected there.
        expected: &'static str,
    },
    /// Wildcards must run from some position to the end of the microseconds.
    #[error("wildcards ('*') may only replace the rightmost digits of a datetime")]
    Wildcards,
    /// A field outside its range.
    #[error("{field} {value} is out of range ({range})")]
    Range {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: u32,
        /// The allowed range.
        range: &'static str,
    },
}

impl DateTime {
    /// Parses the 25-character form.
    pub fn parse(s: &str) -> Result<Self, DateTimeError> {
        s.parse()
    }
}

impl FromStr for DateTime {
    type Err = DateTimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chars: Vec<char> = s.chars().collect();
        if chars.len() != 25 {
            return Err(DateTimeError::Length(chars.len()));
        }
        if chars[14] != '.' {
            return Err(syntax(14, chars[14], "'.'"));
        }
        // The 20 digit positions: 0..14 and 15..21.
        let positions = (0..14).chain(15..21);
        let mut digits = [0u8; DIGITS as usize];
        let mut precision = DIGITS;
        for (i, pos) in positions.enumerate() {
            match chars[pos] {
                '*' => {
                    if precision == DIGITS {
                        precision = i as u8;
                    }
                }
                c @ '0'..='9' if precision == DIGITS => digits[i] = c as u8 - b'0',
                c @ '0'..='9' => {
                    let _ = c;
                    return Err(DateTimeError::Wildcards);
                }
                c => return Err(syntax(pos, c, "a digit or '*'")),
            }
        }
        let field = |from: usize, len: usize| -> u32 {
            digits[from..from + len]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
        };
        // A field is checked only when all its digits are significant.
        let significant = |from: usize, len: usize| (from + len) as u8 <= precision;
        let sign = chars[21];
        let offset_digits: String = chars[22..25].iter().collect();
        if sign == ':' {
            if offset_digits != "000" {
                return Err(syntax(22, chars[22], "'000' after ':' in an interval"));
            }
            let interval = Interval {
                days: field(0, 8),
                hours: field(8, 2) as u8,
                minutes: field(10, 2) as u8,
                seconds: field(12, 2) as u8,
                microseconds: field(14, 6),
                precision,
            };
            check(
                significant(8, 2),
                "hours",
                interval.hours.into(),
                23,
                "0-23",
            )?;
            check(
                significant(10, 2),
                "minutes",
                interval.minutes.into(),
                59,
                "0-59",
            )?;
            check(
                significant(12, 2),
                "seconds",
                interval.seconds.into(),
                59,
                "0-59",
            )?;
            return Ok(DateTime::Interval(interval));
        }
        if sign != '+' && sign != '-' {
            return Err(syntax(21, sign, "'+', '-' or ':'"));
        }
        let mut offset: i16 = 0;
        for (i, c) in chars[22..25].iter().enumerate() {
            match c.to_digit(10) {
                Some(d) => offset = offset * 10 + d as i16,
                None => return Err(syntax(22 + i, *c, "a digit of the UTC offset")),
            }
        }
        let ts = Timestamp {
            year: field(0, 4) as u16,
            month: field(4, 2) as u8,
            day: field(6, 2) as u8,
            hour: field(8, 2) as u8,
            minute: field(10, 2) as u8,
            second: field(12, 2) as u8,
            microsecond: field(14, 6),
            utc_offset: if sign == '-' { -offset } else { offset },
            precision,
        };
        if significant(4, 2) && !(1..=12).contains(&ts.month) {
            return Err(range("month", ts.month.into(), "1-12"));
        }
        if significant(6, 2) && !(1..=31).contains(&ts.day) {
            return Err(range("day", ts.day.into(), "1-31"));
        }
        check(significant(8, 2), "hour", ts.hour.into(), 23, "0-23")?;
        check(significant(10, 2), "minute", ts.minute.into(), 59, "0-59")?;
        check(significant(12, 2), "second", ts.second.into(), 60, "0-60")?;
        Ok(DateTime::Timestamp(ts))
    }
}

fn syntax(position: usize, found: char, expected: &'static str) -> DateTimeError {
    DateTimeError::Syntax {
        position,
        found,
        expected,
    }
}

fn range(field: &'static str, value: u32, range: &'static str) -> DateTimeError {
    DateTimeError::Range {
        field,
        value,
        range,
    }
}

fn check(
    significant: bool,
    field: &'static str,
    value: u32,
    max: u32,
    allowed: &'static str,
) -> Result<(), DateTimeError> {
    if significant && value > max {
        return Err(range(field, value, allowed));
    }
    Ok(())
}

/// Writes `digits` (already formatted, 20 characters) with wildcards past `precision`.
fn write_digits(f: &mut fmt::Formatter<'_>, digits: &str, precision: u8) -> fmt::Result {
    let mut out = String::with_capacity(21);
    for (i, c) in digits.chars().enumerate() {
        if i == 14 {
            out.push('.');
        }
        out.push(if (i as u8) < precision { c } else { '*' });
    }
    f.write_str(&out)
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateTime::Timestamp(t) => {
                let digits = format!(
                    "{:04}{:02}{:02}{:02}{:02}{:02}{:06}",
                    t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond
                );
                write_digits(f, &digits, t.precision)?;
                let sign = if t.utc_offset < 0 { '-' } else { '+' };
                write!(f, "{sign}{:03}", t.utc_offset.unsigned_abs())
            }
            DateTime::Interval(i) => {
                let digits = format!(
                    "{:08}{:02}{:02}{:02}{:06}",
                    i.days, i.hours, i.minutes, i.seconds, i.microseconds
                );
                write_digits(f, &digits, i.precision)?;
                f.write_str(":000")
            }
        }
    }
}

impl Timestamp {
    /// The timestamp for `secs` seconds and `micros` microseconds after the Unix epoch, in UTC.
    pub fn from_unix(secs: i64, micros: u32) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Timestamp {
            year: year.clamp(0, 9999) as u16,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
            microsecond: micros.min(999_999),
            utc_offset: 0,
            precision: DIGITS,
        }
    }

    /// Seconds since the Unix epoch (the UTC offset applied; wildcard fields read as zero).
    pub fn to_unix(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.utc_offset) * 60
    }

    /// The current time, in UTC.
    pub fn now() -> Self {
        Self::from_system_time(std::time::SystemTime::now())
    }

    /// The time `t`, in UTC (a time before the Unix epoch reads as the epoch).
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self::from_unix(d.as_secs() as i64, d.subsec_micros())
    }
}

impl Interval {
    /// The length of time as a `std::time::Duration` (fields hidden by wildcards count as
    /// zero).
    pub fn to_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            u64::from(self.days) * 86_400
                + u64::from(self.hours) * 3600
                + u64::from(self.minutes) * 60
                + u64::from(self.seconds),
        ) + std::time::Duration::from_micros(u64::from(self.microseconds))
    }

    /// The interval of a `std::time::Duration`, saturating at 99999999 days.
    pub fn from_duration(d: std::time::Duration) -> Self {
        let secs = d.as_secs();
        Interval {
            days: (secs / 86_400).min(99_999_999) as u32,
            hours: (secs % 86_400 / 3600) as u8,
            minutes: (secs % 3600 / 60) as u8,
            seconds: (secs % 60) as u8,
            microseconds: d.subsec_micros(),
            precision: DIGITS,
        }
    }
}

/// A proleptic Gregorian (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month.clamp(1, 12)), i64::from(day.max(1)));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_intervals_round_trip() {
        for s in [
            "20231012143000.123456+060",
            "19991231235960.000000-300",
            "20231012******.******+000",
            "2023101214300*.******+000",
            "00000001020304.000005:000",
            "00000001******.******:000",
        ] {
            let dt: DateTime = s.parse().unwrap();
            assert_eq!(dt.to_string(), s);
        }
    }

    #[test]
    fn bad_datetimes_are_refused_precisely() {
        assert_eq!(DateTime::parse("2023"), Err(DateTimeError::Length(4)));
        assert!(matches!(
            DateTime::parse("20231312143000.000000+000"),
            Err(DateTimeError::Range { field: "month", .. })
        ));
        assert_eq!(
            DateTime::parse("2023101214*000.000000+000"),
            Err(DateTimeError::Wildcards)
        );
        assert!(matches!(
            DateTime::parse("20231012143000.000000*000"),
            Err(DateTimeError::Syntax { position: 21, .. })
        ));
        assert!(matches!(
            DateTime::parse("00000001240000.000000:000"),
            Err(DateTimeError::Range { field: "hours", .. })
        ));
        assert!(DateTime::parse("00000001020304.000000:001").is_err());
    }

    #[test]
    fn unix_time_converts() {
        let t = Timestamp::from_unix(1_700_000_000, 5);
        assert_eq!(
            DateTime::Timestamp(t).to_string(),
            "20231114221320.000005+000"
        );
        for secs in [0, 951_782_400, 1_700_000_000, 4_102_444_800, -86_400] {
            assert_eq!(Timestamp::from_unix(secs, 0).to_unix(), secs);
        }
        let Ok(DateTime::Timestamp(east)) = DateTime::parse("20231114231320.000000+060") else {
            panic!("parses")
        };
        assert_eq!(east.to_unix(), 1_700_000_000);
        let i = Interval::from_duration(std::time::Duration::from_secs(90061));
        assert_eq!(
            DateTime::Interval(i).to_string(),
            "00000001010101.000000:000"
        );
        let d = std::time::Duration::from_micros(90_061_500_250);
        assert_eq!(Interval::from_duration(d).to_duration(), d);
    }
}
