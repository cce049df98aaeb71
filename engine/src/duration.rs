//! Go's `time.ParseDuration` and Litestream's byte-size strings, so a Litestream config file
//! means the same thing here.

use std::time::Duration;

/// Parses a Go duration: a sequence of decimal numbers with units (`ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h`), e.g. `1h2m3.5s`, `500ms`, `0`. Negative durations are rejected because no
/// Litestream setting accepts one.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let bad = |why: &str| format!("invalid duration {orig:?}: {why}");
    let mut s = s.trim();
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s.starts_with('-') {
        return Err(bad("negative durations are not allowed"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut total_ns: u128 = 0;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let num = &s[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad("expected a number"));
        }
        s = &s[num_end..];
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(bad("missing unit")),
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad("number too large"))?
        };
        let mut ns = int.checked_mul(scale).ok_or_else(|| bad("overflow"))?;
        // Fractions are exact to the nanosecond, as Go computes them.
        let mut div: u128 = 1;
        let mut frac_val: u128 = 0;
        for d in frac.bytes().take(30) {
            frac_val = frac_val * 10 + u128::from(d - b'0');
            div *= 10;
        }
        ns += frac_val * scale / div;
        total_ns = total_ns.checked_add(ns).ok_or_else(|| bad("overflow"))?;
    }
    if total_ns > i64::MAX as u128 {
        return Err(bad("overflow"));
    }
    Ok(Duration::from_nanos(total_ns as u64))
}

/// Formats a duration the way Go prints it (`1m30s`, `500ms`), for logs a Litestream user can
/// read.
pub fn format_go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return if ns.is_multiple_of(1_000_000) {
            format!("{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            format!("{}µs", ns / 1_000)
        } else {
            format!("{ns}ns")
        };
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns / 60_000_000_000) % 60;
    let s_ns = ns % 60_000_000_000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let secs = s_ns / 1_000_000_000;
    let frac = s_ns % 1_000_000_000;
    if frac == 0 {
        out.push_str(&format!("{secs}s"));
    } else {
        let f = format!("{frac:09}");
        out.push_str(&format!("{secs}.{}s", f.trim_end_matches('0')));
    }
    out
}

/// Parses a byte size as Litestream's config does (go-humanize `ParseBytes`): `5MB` is
/// 5,000,000, `5MiB` is 5,242,880, a bare number is bytes; case and a space before the unit are
/// ignored.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let orig = s;
    let bad = |why: &str| format!("invalid byte size {orig:?}: {why}");
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(t.len());
    let num: String = t[..num_end].chars().filter(|&c| c != ',').collect();
    if num.is_empty() {
        return Err(bad("expected a number"));
    }
    let unit = t[num_end..].trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024f64.powi(4),
        "pi" | "pib" => 1024f64.powi(5),
        other => return Err(bad(&format!("unknown unit {other:?}"))),
    };
    if !num.contains('.') {
        let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
        return n
            .checked_mul(mult as u64)
            .ok_or_else(|| bad("number too large"));
    }
    let n: f64 = num.parse().map_err(|_| bad("expected a number"))?;
    let v = n * mult;
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(bad("number too large"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_go_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_go_duration("1h2m3.5s"), Ok(ms(3_723_500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("1.5h"), Ok(ms(5_400_000)));
        assert_eq!(parse_go_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_go_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_go_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_go_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_go_duration("1m1m"), Ok(ms(120_000)));
        for bad in ["", "1", "s", "1x", "-1s", "1..5s", "1d"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_go_duration("1d")
            .expect_err("unit d")
            .contains("\"d\""));
    }

    #[test]
    fn go_duration_formatting() {
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_byte_size("5 mb"), Ok(5_000_000));
        assert_eq!(parse_byte_size("1024"), Ok(1024));
        assert_eq!(parse_byte_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_byte_size("2k"), Ok(2000));
        assert_eq!(parse_byte_size("1GiB"), Ok(1 << 30));
        for bad in ["", "MB", "5XB", "-5MB"] {
            assert!(parse_byte_size(bad).is_err(), "{bad:?} should fail");
        }
    }
}
