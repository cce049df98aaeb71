//! RFC 3339 timestamps as Go's `time.RFC3339` parses and formats them, without a date crate:
//! restore's `-timestamp` input and plan output, S3's LastModified and credential expirations,
//! and the `litestream-timestamp` metadata value, which Go writes with `time.RFC3339Nano` (UTC,
//! trailing zeros of the fraction dropped).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(range)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Parses `2006-01-02T15:04:05[.999999999](Z|+07:00)`. Like Go, fractional seconds are
/// accepted although the layout does not name them.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = i64::from(num(s, 0..4)?);
    let month = num(s, 5..7)?;
    let day = num(s, 8..10)?;
    let (hour, min, sec) = (num(s, 11..13)?, num(s, 14..16)?, num(s, 17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut at = 19;
    let mut nanos: u64 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let digits = &s[start..at];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32);
    }
    let offset_secs: i64 = match &s[at..] {
        "Z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            if tz.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (num(tz, 1..3)?, num(tz, 4..6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let v = i64::from(h * 3600 + m * 60);
            if tz.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + min * 60 + sec)
        - offset_secs;
    let base = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    Some(base + Duration::from_nanos(nanos))
}

/// Seconds since the epoch (negative before it), truncated toward the past.
fn unix_secs(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    }
}

/// Digits of the second's fraction in a formatted time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fraction {
    /// Whole seconds (`RFC3339`).
    None,
    /// Always three digits (`2006-01-02T15:04:05.000Z07:00`, what `slog`'s text handler writes).
    Milli,
    /// Nanoseconds with trailing zeros dropped, none when whole (`RFC3339Nano`).
    Nano,
}

/// `t` as Go formats it in a zone `offset_secs` east of UTC: that zone's date and time, then
/// `Z` when the offset is 0, else `+hh:mm` or `-hh:mm` (Go's `Z07:00`).
pub fn format_rfc3339_in(t: SystemTime, offset_secs: i32, fraction: Fraction) -> String {
    let (secs, nanos) = unix_secs(t);
    let local = secs + i64::from(offset_secs);
    let (days, rem) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    match fraction {
        Fraction::None => {}
        Fraction::Milli => out.push_str(&format!(".{:03}", nanos / 1_000_000)),
        Fraction::Nano if nanos == 0 => {}
        Fraction::Nano => {
            let frac = format!("{nanos:09}");
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
    }
    if offset_secs == 0 {
        out.push('Z');
    } else {
        let sign = if offset_secs < 0 { '-' } else { '+' };
        let abs = offset_secs.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60));
    }
    out
}

/// `2006-01-02T15:04:05Z` in UTC, whole seconds (Go's `Format(time.RFC3339)`).
pub fn format_rfc3339(t: SystemTime) -> String {
    format_rfc3339_in(t, 0, Fraction::None)
}

/// Like [`format_rfc3339`] with milliseconds, always three digits (`2006-01-02T15:04:05.000Z`,
/// the time `slog`'s text handler writes).
pub fn format_rfc3339_milli(t: SystemTime) -> String {
    format_rfc3339_in(t, 0, Fraction::Milli)
}

/// Seconds east of UTC of the local zone at `t` (`TZ`, else `/etc/localtime`): Go's `slog`
/// writes local times, so a server whose zone is not UTC gets the same times from our binaries and
/// Litestream's (its daemon and its VFS).
pub fn local_offset(t: SystemTime) -> i32 {
    use chrono::{DateTime, Local, Offset, TimeZone, Utc};
    let utc: DateTime<Utc> = t.into();
    Local
        .offset_from_utc_datetime(&utc.naive_utc())
        .fix()
        .local_minus_utc()
}

/// Like [`format_rfc3339`] with nanoseconds (Go's `RFC3339Nano`, trailing zeros dropped).
pub fn format_rfc3339_nano(t: SystemTime) -> String {
    format_rfc3339_in(t, 0, Fraction::Nano)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = parse_rfc3339("2026-11-26T04:05:06Z").expect("parse");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok(),
            Some(1_795_665_906)
        );
        assert_eq!(format_rfc3339(t), "2026-11-26T04:05:06Z");
        let t = parse_rfc3339("2026-11-26T04:05:06.229+01:00").expect("parse");
        assert_eq!(format_rfc3339_nano(t), "2026-11-26T03:05:06.229Z");
        assert_eq!(
            format_rfc3339(parse_rfc3339("1969-12-31T23:59:59Z").expect("parse")),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            format_rfc3339(parse_rfc3339("2000-02-29T00:00:00Z").expect("leap")),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn metadata_timestamps_keep_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_665_906_229);
        let s = format_rfc3339_nano(t);
        assert_eq!(s, "2026-11-26T04:05:06.229Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(
            parse_rfc3339("2026-11-26T04:05:06.000Z"),
            Some(t - Duration::from_millis(229))
        );
    }

    #[test]
    fn rejects_bad_input() {
        for s in [
            "",
            "2026-11-26",
            "2026-11-26 04:05:06Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-26T04:05:06",
            "2026-11-26T04:05:06.Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T04:05:06+0100",
        ] {
            assert!(parse_rfc3339(s).is_none(), "{s}");
        }
    }

    /// A zone east or west of UTC gives its own date and time and its offset, as Go's
    /// `Z07:00` does; UTC gives `Z`.
    #[test]
    fn zoned_times_carry_their_offset() {
        let t = parse_rfc3339("2026-12-07T21:10:00.123456789Z").expect("parse");
        assert_eq!(
            format_rfc3339_in(t, 5 * 3600 + 1800, Fraction::Milli),
            "2026-12-08T02:40:00.123+05:30"
        );
        assert_eq!(
            format_rfc3339_in(t, -8 * 3600, Fraction::Nano),
            "2026-12-07T13:10:00.123456789-08:00"
        );
        assert_eq!(
            format_rfc3339_in(t, 0, Fraction::None),
            "2026-12-07T21:10:00Z"
        );
        assert_eq!(format_rfc3339_milli(t), "2026-12-07T21:10:00.123Z");
    }
}
