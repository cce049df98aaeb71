//! The value syntaxes of Litestream's config file and command line, parsed once for every
//! crate: Go durations ([`parse_duration`], [`format_duration`]), booleans ([`parse_bool`],
//! [`parse_config_bool`]) and byte sizes ([`parse_byte_size`]). Paths in Go's `path` syntax are
//! in [`crate::gopath`].
//!
//! They live in `storage`, the lowest crate that reads such values (a backend parses its own
//! replica keys, such as `part-size` or `reconnect-wait`, from the key/value pairs it is
//! given); the config crate (`ls-config`) and both binaries use them from here, so a value
//! means the same wherever it is written. See docs/config-and-cli.md#config-file.

use std::time::Duration;

/// Why a value did not parse. The message is Go's where Litestream would print Go's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

/// Go's `time.ParseDuration`: decimal numbers, each with a unit (`ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h`), e.g. `1h2m3.5s`, `500ms`, `.5s`; `0` alone needs no unit. Fractions are computed
/// as Go computes them (in floating point, to the nanosecond). Negative durations are refused:
/// no Litestream setting or flag means anything by one.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let orig = s;
    let invalid = || ValueError(format!("time: invalid duration {orig:?}"));
    let mut s = s;
    let mut neg = false;
    if let Some(c) = s.chars().next().filter(|c| *c == '-' || *c == '+') {
        neg = c == '-';
        s = &s[1..];
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in &b[..digits] {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[digits..];
        let pre = digits > 0;
        // Go's leadingFraction: digits past what fits are dropped, not an error.
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let n = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for c in rest[..n].bytes() {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = n > 0;
            s = &rest[n..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(ValueError(format!(
                "time: missing unit in duration {orig:?}"
            )));
        }
        let unit = match &s[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(ValueError(format!(
                    "time: unknown unit {other:?} in duration {orig:?}"
                )))
            }
        };
        s = &s[unit_len..];
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(v)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    if neg && total != 0 {
        return Err(ValueError(format!(
            "invalid duration {orig:?}: negative durations are not allowed"
        )));
    }
    Ok(Duration::from_nanos(total))
}

/// `d` in whole nanoseconds, as a Go `time.Duration` holds it (saturating): what the log
/// layout writes as a Go duration, and what the metrics count.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Go's `Duration.String` (`1m30s`, `500ms`, `1.5µs`, `0s`), for messages a Litestream user
/// can read. Durations beyond Go's range (about 292 years) print as if clamped to it.
pub fn format_duration(d: Duration) -> String {
    let ns = nanos(d).min(i64::MAX as u64);
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        // Go picks the largest unit below one second and prints a fraction of it.
        let (unit, name) = match ns {
            n if n < 1_000 => (1, "ns"),
            n if n < 1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        return format!("{}{name}", fraction(ns, unit));
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns / 60_000_000_000) % 60;
    let s = fraction(ns % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `n / unit` with the remainder as decimal digits, trailing zeros dropped (`1.5`, `2`).
fn fraction(n: u64, unit: u64) -> String {
    let (int, rem) = (n / unit, n % unit);
    if rem == 0 {
        return int.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// Go's `strconv.ParseBool`: `1`, `t`, `T`, `TRUE`, `true`, `True` and their false
/// counterparts. What Go's `flag` package (and so Litestream's command line) accepts.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean written in a config file or a replica URL's query: [`parse_bool`]'s words plus
/// the YAML 1.1 ones (`y`, `yes`, `on`, `n`, `no`, `off`, in lower, title and upper case) that
/// Go's yaml.v2 reads as booleans in Litestream's config. They reach us as text because our
/// YAML reader follows YAML 1.2, where they are plain strings.
pub fn parse_config_bool(s: &str) -> Option<bool> {
    parse_bool(s).or(match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    })
}

/// A byte size as Litestream's `ParseByteSize` reads it (go-humanize's `ParseBytes`): a number
/// (commas allowed, a fraction too) and an optional unit, case-insensitive, a space between
/// allowed. SI units are powers of 1000 (`k`/`kb` ... `e`/`eb`), IEC units powers of 1024
/// (`ki`/`kib` ... `ei`/`eib`); no unit or `b` is bytes. At most `i64::MAX`.
pub fn parse_byte_size(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ValueError("empty size string".into()));
    }
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(t.len());
    let num: String = t[..num_len].chars().filter(|&c| c != ',').collect();
    // Go's ParseFloat would also read `inf` or `1e3`, but those never reach it: the number
    // ends at the first character that is not a digit, '.' or ','.
    let f: f64 = num
        .parse()
        .map_err(|_| ValueError(format!("invalid size format: {s:?} has no number")))?;
    let unit = t[num_len..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "p" | "pb" => 1_000_000_000_000_000,
        "e" | "eb" => 1_000_000_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        "pi" | "pib" => 1 << 50,
        "ei" | "eib" => 1 << 60,
        other => {
            return Err(ValueError(format!(
                "invalid size format: unhandled size name: {other}"
            )))
        }
    };
    // In floating point, as go-humanize computes it.
    let v = f * mult as f64;
    if v >= u64::MAX as f64 {
        return Err(ValueError(format!("invalid size format: too large: {s}")));
    }
    let v = v as u64;
    if v > i64::MAX as u64 {
        return Err(ValueError(format!(
            "size {v} exceeds maximum allowed value ({})",
            i64::MAX
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_parses_them() {
        let ms = Duration::from_millis;
        let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        // From Go's time/time_test.go parseDurationTests.
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("5s"), ms(5000));
        assert_eq!(ok("30s"), ms(30_000));
        assert_eq!(ok("1478s"), ms(1_478_000));
        assert_eq!(ok("+5s"), ms(5000));
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("5.0s"), ms(5000));
        assert_eq!(ok("5.6s"), ms(5600));
        assert_eq!(ok("5.s"), ms(5000));
        assert_eq!(ok(".5s"), ms(500));
        assert_eq!(ok("1.0s"), ms(1000));
        assert_eq!(ok("1.00s"), ms(1000));
        assert_eq!(ok("1.004s"), ms(1004));
        assert_eq!(ok("1.0040s"), ms(1004));
        assert_eq!(ok("100.00100s"), ms(100_001));
        assert_eq!(ok("10ns"), Duration::from_nanos(10));
        assert_eq!(ok("11us"), Duration::from_micros(11));
        assert_eq!(ok("12µs"), Duration::from_micros(12));
        assert_eq!(ok("12μs"), Duration::from_micros(12));
        assert_eq!(ok("13ms"), ms(13));
        assert_eq!(ok("14s"), ms(14_000));
        assert_eq!(ok("15m"), ms(900_000));
        assert_eq!(ok("16h"), ms(57_600_000));
        assert_eq!(ok("3h30m"), ms(12_600_000));
        assert_eq!(ok("10.5s4m"), ms(250_500));
        assert_eq!(
            ok("1h2m3s4ms5us6ns"),
            Duration::from_nanos(3_723_004_005_006)
        );
        assert_eq!(ok("39h9m14.425s"), ms(140_954_425));
        assert_eq!(ok("52763797000ns"), Duration::from_nanos(52_763_797_000));
        assert_eq!(
            ok("0.3333333333333333333h"),
            Duration::from_nanos(1_200_000_000_000)
        );
        assert_eq!(
            ok("9007199254740993ns"),
            Duration::from_nanos(9_007_199_254_740_993)
        );
        assert_eq!(
            ok("9223372036854775807ns"),
            Duration::from_nanos(i64::MAX as u64)
        );
        assert_eq!(
            ok("9223372036s854ms775us807ns"),
            Duration::from_nanos(i64::MAX as u64)
        );
        assert_eq!(ok("0.100000000000000000000h"), Duration::from_secs(360));
        assert_eq!(
            ok("0.830103483285477580700h"),
            Duration::from_nanos(2_988_372_539_827)
        );
        for bad in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "\u{ffff}",
            "hello \u{ffff} world",
            "9223372036854775808ns",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "-1s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(
            parse_duration("1d").expect_err("d").to_string(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(
            parse_duration("3").expect_err("3").to_string(),
            "time: missing unit in duration \"3\""
        );
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        // From Go's time/time_test.go durationTests.
        for (ns, want) in [
            (0u64, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * 60_000_000_000 + 5_000_000_000, "4m5s"),
            (4 * 60_000_000_000 + 5_001_000_000, "4m5.001s"),
            (
                5 * 3_600_000_000_000 + 6 * 60_000_000_000 + 7_001_000_000,
                "5h6m7.001s",
            ),
            (8 * 60_000_000_000 + 1, "8m0.000000001s"),
            (i64::MAX as u64, "2562047h47m16.854775807s"),
            (3_600_000_000_000, "1h0m0s"),
            (500_000_000, "500ms"),
        ] {
            assert_eq!(format_duration(Duration::from_nanos(ns)), want, "{ns}");
        }
    }

    #[test]
    fn booleans() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
            assert_eq!(parse_config_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
            assert_eq!(parse_config_bool(f), Some(false), "{f}");
        }
        // Go's flag package refuses YAML's words; a config file accepts them.
        for (w, v) in [
            ("yes", true),
            ("On", true),
            ("Y", true),
            ("NO", false),
            ("off", false),
        ] {
            assert_eq!(parse_bool(w), None, "{w}");
            assert_eq!(parse_config_bool(w), Some(v), "{w}");
        }
        for bad in ["", "tRUE", "2", "maybe", " true"] {
            assert_eq!(parse_config_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn byte_sizes_as_go_humanize_reads_them() {
        let ok = |s: &str| parse_byte_size(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        // From go-humanize's bytes_test.go TestByteParsing, and Litestream's own cases.
        assert_eq!(ok("42"), 42);
        assert_eq!(ok("42MB"), 42_000_000);
        assert_eq!(ok("42MiB"), 44_040_192);
        assert_eq!(ok("42mb"), 42_000_000);
        assert_eq!(ok("42mib"), 44_040_192);
        assert_eq!(ok("42MIB"), 44_040_192);
        assert_eq!(ok("42 MB"), 42_000_000);
        assert_eq!(ok("42 MiB"), 44_040_192);
        assert_eq!(ok("42.5MB"), 42_500_000);
        assert_eq!(ok("42.5MiB"), 44_564_480);
        assert_eq!(ok("42.5 MB"), 42_500_000);
        assert_eq!(ok("42 mb"), 42_000_000);
        assert_eq!(ok("42M"), 42_000_000);
        assert_eq!(ok("42Mi"), 44_040_192);
        assert_eq!(ok("42 kB"), 42_000);
        assert_eq!(ok("42 kiB"), 43_008);
        assert_eq!(ok("1,005.03 MB"), 1_005_030_000);
        assert_eq!(ok("1 EB"), 1_000_000_000_000_000_000);
        assert_eq!(ok("1 EiB"), 1 << 60);
        assert_eq!(ok(" 5MiB "), 5 << 20);
        assert_eq!(ok("0"), 0);
        for bad in ["", "  ", "MB", "5XB", "-5MB", "20 EB", "8EiB", "1.5.5MB"] {
            assert!(parse_byte_size(bad).is_err(), "{bad:?} should fail");
        }
    }
}
