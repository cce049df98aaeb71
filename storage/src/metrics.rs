//! Replica operation metrics under Litestream's names (docs/config-and-cli.md#metrics): counts, bytes, durations and
//! errors by replica type and operation. Kept in process so the metrics endpoint, whenever it
//! exists, only has to call [`render_prometheus`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Litestream's operation label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// A read of an object (or part of one): `GET`.
    Get,
    /// A write of an object: `PUT`.
    Put,
    /// A deletion: `DELETE`.
    Delete,
    /// A listing: `LIST`.
    List,
}

impl Operation {
    /// The `operation` label value: "GET", "PUT", "DELETE" or "LIST".
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "GET",
            Operation::Put => "PUT",
            Operation::Delete => "DELETE",
            Operation::List => "LIST",
        }
    }
}

/// Histogram buckets of `litestream_replica_operation_duration_seconds`.
pub const DURATION_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0];

/// What has been recorded for one replica type and operation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperationStats {
    /// Operations performed (`litestream_replica_operation_total`).
    pub total: u64,
    /// Bytes moved by them (`litestream_replica_operation_bytes`).
    pub bytes: u64,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`].
    pub buckets: [u64; 9],
    /// Operations whose duration was observed.
    pub duration_count: u64,
    /// Sum of the observed durations, in seconds.
    pub duration_sum: f64,
}

#[derive(Default)]
struct OpTable {
    ops: BTreeMap<(&'static str, Operation), OperationStats>,
    errors: BTreeMap<(&'static str, Operation, String), u64>,
}

static REGISTRY: Mutex<Option<OpTable>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut OpTable) -> T) -> T {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(OpTable::default))
}

/// `n` operations moving `bytes` bytes.
pub fn record(replica_type: &'static str, op: Operation, n: u64, bytes: u64) {
    with(|r| {
        let s = r.ops.entry((replica_type, op)).or_default();
        s.total += n;
        s.bytes += bytes;
    });
}

/// Records how long one operation took, in the duration histogram.
pub fn observe_duration(replica_type: &'static str, op: Operation, d: Duration) {
    let secs = d.as_secs_f64();
    with(|r| {
        let s = r.ops.entry((replica_type, op)).or_default();
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
        s.duration_count += 1;
        s.duration_sum += secs;
    });
}

/// At most this many distinct `code` label values per replica type and operation; errors
/// with further codes are counted under [`OTHER_CODE`].
pub const MAX_CODES: usize = 32;
/// The `code` of errors whose code is not a plain identifier, or past [`MAX_CODES`].
pub const OTHER_CODE: &str = "other";

/// Counts an error of `op`. `code` comes from the server (an S3 error code, an HTTP status),
/// so a hostile or broken endpoint could send endless distinct values: codes longer than 64
/// bytes or with characters outside `[A-Za-z0-9._-]`, and any code past the first
/// [`MAX_CODES`] of a type and operation, count as [`OTHER_CODE`], bounding the series.
pub fn record_error(replica_type: &'static str, op: Operation, code: &str) {
    let plain = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    with(|r| {
        let known = r.errors.contains_key(&(replica_type, op, code.to_owned()));
        let room = || {
            r.errors
                .keys()
                .filter(|(t, o, c)| *t == replica_type && *o == op && c != OTHER_CODE)
                .count()
                < MAX_CODES
        };
        let code = if plain && (known || room()) {
            code
        } else {
            OTHER_CODE
        };
        *r.errors
            .entry((replica_type, op, code.to_owned()))
            .or_default() += 1
    });
}

/// What has been recorded so far for `replica_type` and `op` (zeros when nothing).
pub fn stats(replica_type: &str, op: Operation) -> OperationStats {
    with(|r| {
        r.ops
            .iter()
            .find(|((t, o), _)| *t == replica_type && *o == op)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    })
}

/// How many errors of `op` with `code` were counted for `replica_type`.
pub fn errors(replica_type: &str, op: Operation, code: &str) -> u64 {
    with(|r| {
        r.errors
            .iter()
            .find(|((t, o, c), _)| *t == replica_type && *o == op && c == code)
            .map_or(0, |(_, n)| *n)
    })
}

/// Escapes a label value for the Prometheus text format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends every touched series in the Prometheus text format.
pub fn render_prometheus(out: &mut String) {
    with(|r| {
        if !r.ops.is_empty() {
            out.push_str("# HELP litestream_replica_operation_total The number of replica operations performed\n");
            out.push_str("# TYPE litestream_replica_operation_total counter\n");
            for ((t, op), s) in &r.ops {
                let _ = writeln!(
                    out,
                    "litestream_replica_operation_total{{operation=\"{}\",replica_type=\"{t}\"}} {}",
                    op.as_str(),
                    s.total
                );
            }
            out.push_str("# HELP litestream_replica_operation_bytes The number of bytes used by replica operations\n");
            out.push_str("# TYPE litestream_replica_operation_bytes counter\n");
            for ((t, op), s) in &r.ops {
                let _ = writeln!(
                    out,
                    "litestream_replica_operation_bytes{{operation=\"{}\",replica_type=\"{t}\"}} {}",
                    op.as_str(),
                    s.bytes
                );
            }
            out.push_str("# HELP litestream_replica_operation_duration_seconds Duration of replica operations by type and operation\n");
            out.push_str("# TYPE litestream_replica_operation_duration_seconds histogram\n");
            for ((t, op), s) in r.ops.iter().filter(|(_, s)| s.duration_count > 0) {
                let labels = format!("operation=\"{}\",replica_type=\"{t}\"", op.as_str());
                for (b, n) in DURATION_BUCKETS.iter().zip(s.buckets) {
                    let _ = writeln!(
                        out,
                        "litestream_replica_operation_duration_seconds_bucket{{{labels},le=\"{b}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "litestream_replica_operation_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    s.duration_count
                );
                let _ = writeln!(
                    out,
                    "litestream_replica_operation_duration_seconds_sum{{{labels}}} {}",
                    s.duration_sum
                );
                let _ = writeln!(
                    out,
                    "litestream_replica_operation_duration_seconds_count{{{labels}}} {}",
                    s.duration_count
                );
            }
        }
        if !r.errors.is_empty() {
            out.push_str("# HELP litestream_replica_operation_errors_total Number of replica operation errors by type, operation, and error code\n");
            out.push_str("# TYPE litestream_replica_operation_errors_total counter\n");
            for ((t, op, code), n) in &r.errors {
                let _ = writeln!(
                    out,
                    "litestream_replica_operation_errors_total{{code=\"{}\",operation=\"{}\",replica_type=\"{t}\"}} {n}",
                    escape_label(code),
                    op.as_str()
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_touched_series() {
        record("metrics-test", Operation::Put, 1, 575);
        observe_duration("metrics-test", Operation::Put, Duration::from_millis(30));
        record_error("metrics-test", Operation::Get, "NoSuchKey");
        let mut out = String::new();
        render_prometheus(&mut out);
        assert!(out.contains(
            "litestream_replica_operation_total{operation=\"PUT\",replica_type=\"metrics-test\"} 1"
        ));
        assert!(out.contains(
            "litestream_replica_operation_bytes{operation=\"PUT\",replica_type=\"metrics-test\"} 575"
        ));
        assert!(out.contains("le=\"0.05\"} 1"));
        assert!(
            out.contains("code=\"NoSuchKey\",operation=\"GET\",replica_type=\"metrics-test\"} 1")
        );
        assert_eq!(stats("metrics-test", Operation::Put).total, 1);
    }

    /// Issue 14 item 2: a server sending a new error code each time cannot grow the number of
    /// `code` label values (series) without limit.
    #[test]
    fn issue14_2_error_code_labels_are_bounded() {
        for i in 0..5000 {
            record_error("bound-test", Operation::Put, &format!("Code{i}"));
        }
        record_error("bound-test", Operation::Put, "Code3");
        record_error("bound-test", Operation::Put, "bad\"code\n{}");
        record_error("bound-test", Operation::Put, &"x".repeat(100));
        let mut out = String::new();
        render_prometheus(&mut out);
        let series: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("replica_type=\"bound-test\""))
            .collect();
        assert_eq!(series.len(), MAX_CODES + 1, "{series:?}");
        assert_eq!(errors("bound-test", Operation::Put, "Code3"), 2);
        assert_eq!(
            errors("bound-test", Operation::Put, OTHER_CODE),
            5000 - MAX_CODES as u64 + 2
        );
    }
}
