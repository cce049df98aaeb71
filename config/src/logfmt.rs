//! Log lines as Litestream 0.5.17 writes them (docs/config-and-cli.md#log-lines): Go's `slog`
//! text handler (`time=… level=INFO msg="…" key=value`), its JSON handler, and `pretty`, the
//! short layout of its terminal handler (without colours). `logging.source` adds where the line
//! was logged. Times are UTC.

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use storage::timefmt::{format_rfc3339_in, Fraction};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `logging.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `text` (the default): `slog`'s text handler.
    #[default]
    Text,
    /// `json`: `slog`'s JSON handler, one object a line.
    Json,
    /// `pretty`: time of day, a three-letter level, the message unquoted.
    Pretty,
}

impl LogFormat {
    /// The `logging.type` value, as Litestream spells it.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "" | "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            "pretty" => Some(LogFormat::Pretty),
            _ => None,
        }
    }
}

/// A `tracing` event formatter giving Litestream's line layouts.
#[derive(Clone, Copy, Debug)]
pub struct SlogFormat {
    /// `logging.type`: which layout to write.
    pub format: LogFormat,
    /// `logging.source`: add the file and line the event was logged from.
    pub source: bool,
}

/// A field's value, kept typed so JSON gets numbers as numbers.
enum Value {
    Str(String),
    /// An integer field named `signal`: Litestream logs a Go `syscall.Signal`, which `slog`'s
    /// text handler prints by its name (`terminated`) and its JSON handler as its number.
    Signal(i32),
    /// Nanoseconds in a field Litestream logs as a Go `time.Duration` ([`GO_DURATIONS`]): by
    /// its `String` in text (`1s`), as the number of nanoseconds in JSON.
    Duration(u64),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// Fields Litestream logs as a Go `time.Duration`: logged by us as whole nanoseconds (`u64`).
const GO_DURATIONS: [&str; 3] = ["sync-interval", "interval", "retention"];

#[derive(Default)]
struct Fields {
    message: String,
    /// The event's message was recorded: `tracing` records it first, so a later field named
    /// `message` (Litestream's `validation error detected` line has one) is an attribute.
    has_message: bool,
    attrs: Vec<(&'static str, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, v: Value) {
        match (field.name(), v) {
            ("message", Value::Str(s)) if !self.has_message => {
                self.message = s;
                self.has_message = true;
            }
            // The `log` crate's bridge fields say where a line came from, not what happened.
            (n, _) if n.starts_with("log.") => {}
            ("signal", Value::I64(n)) => match i32::try_from(n) {
                Ok(s) => self.attrs.push(("signal", Value::Signal(s))),
                Err(_) => self.attrs.push(("signal", Value::I64(n))),
            },
            (n, Value::U64(ns)) if GO_DURATIONS.contains(&n) => {
                self.attrs.push((n, Value::Duration(ns)));
            }
            (n, v) => self.attrs.push((n, v)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here too, printed with their Display.
        self.push(field, Value::Str(format!("{value:?}")));
    }
}

/// `slog`'s level names (Litestream names its level below DEBUG `TRACE`).
fn level_name(l: Level, short: bool) -> &'static str {
    match (l, short) {
        (Level::TRACE, false) => "TRACE",
        (Level::DEBUG, false) => "DEBUG",
        (Level::INFO, false) => "INFO",
        (Level::WARN, false) => "WARN",
        (Level::ERROR, false) => "ERROR",
        (Level::TRACE, true) => "TRC",
        (Level::DEBUG, true) => "DBG",
        (Level::INFO, true) => "INF",
        (Level::WARN, true) => "WRN",
        (Level::ERROR, true) => "ERR",
    }
}

/// Whether `slog`'s text handler quotes a string: empty, or holding a space, `"`, `=` or a
/// character that does not print.
fn needs_quoting(s: &str) -> bool {
    s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
}

/// A string in Go's `strconv.Quote` form (the escapes a log line can meet).
fn go_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32 & 0xff);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A string as the text handler writes it: as is, or quoted when it must be.
fn text_str(s: &str, out: &mut String) {
    if needs_quoting(s) {
        go_quote(s, out);
    } else {
        out.push_str(s);
    }
}

/// Go's names of the common signals (`syscall.Signal.String`).
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGHUP => "hangup".into(),
        libc::SIGINT => "interrupt".into(),
        libc::SIGQUIT => "quit".into(),
        libc::SIGABRT => "aborted".into(),
        libc::SIGKILL => "killed".into(),
        libc::SIGSEGV => "segmentation fault".into(),
        libc::SIGPIPE => "broken pipe".into(),
        libc::SIGTERM => "terminated".into(),
        s => format!("signal {s}"),
    }
}

/// A number or boolean, written the same way in every layout.
fn bare(v: &Value, out: &mut String) {
    let _ = match v {
        Value::Str(s) => write!(out, "{s}"),
        Value::Signal(n) => write!(out, "{n}"),
        Value::Duration(n) => write!(out, "{n}"),
        Value::I64(n) => write!(out, "{n}"),
        Value::U64(n) => write!(out, "{n}"),
        Value::F64(n) => write!(out, "{n}"),
        Value::Bool(b) => write!(out, "{b}"),
    };
}

fn text_value(v: &Value, out: &mut String) {
    match v {
        Value::Str(s) => text_str(s, out),
        Value::Signal(n) => text_str(&signal_name(*n), out),
        Value::Duration(n) => text_str(
            &storage::value::format_duration(std::time::Duration::from_nanos(*n)),
            out,
        ),
        v => bare(v, out),
    }
}

fn json_str(s: &str, out: &mut String) {
    // A string always serialises.
    if let Ok(j) = serde_json::to_string(s) {
        out.push_str(&j);
    }
}

fn json_value(v: &Value, out: &mut String) {
    match v {
        Value::Str(s) => json_str(s, out),
        // `slog` writes what JSON cannot hold as a string.
        Value::F64(n) if !n.is_finite() => json_str(&n.to_string(), out),
        v => bare(v, out),
    }
}

/// The attributes as JSON members. A key `group.name` is put in a `group` object, as `slog`
/// nests a group's attributes (Litestream's `txid.min`, `txid.max`), when such keys follow
/// one another.
fn json_attrs(attrs: &[(&str, Value)], out: &mut String) {
    let mut i = 0;
    while i < attrs.len() {
        let (k, v) = &attrs[i];
        out.push(',');
        match k.split_once('.') {
            Some((group, _)) => {
                json_str(group, out);
                out.push_str(":{");
                let mut first = true;
                while let Some((k, v)) = attrs.get(i) {
                    let Some(name) = k.strip_prefix(group).and_then(|r| r.strip_prefix('.')) else {
                        break;
                    };
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    json_str(name, out);
                    out.push(':');
                    json_value(v, out);
                    i += 1;
                }
                out.push('}');
            }
            None => {
                json_str(k, out);
                out.push(':');
                json_value(v, out);
                i += 1;
            }
        }
    }
}

impl SlogFormat {
    /// The line for an event with `fields`, logged at `level` from `file:line`, at `now` in a
    /// zone `offset` seconds east of UTC.
    fn line(
        &self,
        now: SystemTime,
        offset: i32,
        level: Level,
        at: Option<(&str, u32)>,
        f: &Fields,
    ) -> String {
        let mut out = String::with_capacity(128);
        let at = at.filter(|_| self.source);
        match self.format {
            LogFormat::Text | LogFormat::Pretty => {
                let pretty = self.format == LogFormat::Pretty;
                if pretty {
                    let t = format_rfc3339_in(now, offset, Fraction::Milli);
                    // `15:04:05`: the time of day only.
                    out.push_str(t.get(11..19).unwrap_or(&t));
                    out.push(' ');
                    out.push_str(level_name(level, true));
                } else {
                    out.push_str("time=");
                    out.push_str(&format_rfc3339_in(now, offset, Fraction::Milli));
                    out.push_str(" level=");
                    out.push_str(level_name(level, false));
                }
                if let Some((file, line)) = at {
                    out.push_str(if pretty { " " } else { " source=" });
                    let _ = write!(out, "{file}:{line}");
                }
                if pretty {
                    out.push(' ');
                    out.push_str(&f.message);
                } else {
                    out.push_str(" msg=");
                    text_str(&f.message, &mut out);
                }
                for (k, v) in &f.attrs {
                    out.push(' ');
                    out.push_str(k);
                    out.push('=');
                    text_value(v, &mut out);
                }
            }
            LogFormat::Json => {
                out.push_str("{\"time\":");
                json_str(&format_rfc3339_in(now, offset, Fraction::Nano), &mut out);
                out.push_str(",\"level\":");
                json_str(level_name(level, false), &mut out);
                if let Some((file, line)) = at {
                    out.push_str(",\"source\":{\"file\":");
                    json_str(file, &mut out);
                    let _ = write!(out, ",\"line\":{line}}}");
                }
                out.push_str(",\"msg\":");
                json_str(&f.message, &mut out);
                json_attrs(&f.attrs, &mut out);
                out.push('}');
            }
        }
        out.push('\n');
        out
    }
}

impl<S, N> FormatEvent<S, N> for SlogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let at = meta.file().zip(meta.line());
        let now = SystemTime::now();
        writer.write_str(&self.line(
            now,
            storage::timefmt::local_offset(now),
            *meta.level(),
            at,
            &fields,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_796_621_368_852)
    }

    /// The line `format` gives for `msg` and `attrs`, logged at `level` from `at`.
    fn line(
        format: LogFormat,
        source: bool,
        level: Level,
        at: Option<(&str, u32)>,
        msg: &str,
        attrs: Vec<(&'static str, Value)>,
    ) -> String {
        let f = Fields {
            message: msg.to_owned(),
            has_message: true,
            attrs,
        };
        SlogFormat { format, source }.line(now(), 0, level, at, &f)
    }

    fn s(v: &str) -> Value {
        Value::Str(v.to_owned())
    }

    /// Lines of Litestream 0.5.17, copied from its output for the same event.
    #[test]
    fn text_lines_are_slogs() {
        use LogFormat::Text;
        let l = line(
            Text,
            false,
            Level::INFO,
            None,
            "initialized db",
            vec![("path", s("/tmp/lslog/db.sqlite"))],
        );
        assert_eq!(
            l,
            "time=2026-12-07T05:29:28.852Z level=INFO msg=\"initialized db\" path=/tmp/lslog/db.sqlite\n"
        );
        let attrs = vec![
            ("system", s("store")),
            ("level", Value::I64(1)),
            ("txid.min", s("0000000000000001")),
            ("size", Value::U64(567)),
        ];
        let l = line(Text, false, Level::INFO, None, "compaction complete", attrs);
        assert_eq!(l, "time=2026-12-07T05:29:28.852Z level=INFO msg=\"compaction complete\" system=store level=1 txid.min=0000000000000001 size=567\n");
        // One word is not quoted; empty strings and quotes are.
        let attrs = vec![("e", s("a \"b\"=c")), ("x", s(""))];
        let l = line(
            Text,
            false,
            Level::WARN,
            Some(("engine/src/x.rs", 7)),
            "litestream",
            attrs,
        );
        assert_eq!(
            l,
            "time=2026-12-07T05:29:28.852Z level=WARN msg=litestream e=\"a \\\"b\\\"=c\" x=\"\"\n"
        );
        let l = line(
            Text,
            true,
            Level::ERROR,
            Some(("engine/src/x.rs", 7)),
            "x",
            vec![],
        );
        assert_eq!(
            l,
            "time=2026-12-07T05:29:28.852Z level=ERROR source=engine/src/x.rs:7 msg=x\n"
        );
    }

    #[test]
    fn json_lines_are_slogs() {
        use LogFormat::Json;
        let attrs = vec![
            ("db", s("db.sqlite")),
            ("txid.min", s("0000000000000001")),
            ("txid.max", s("0000000000000002")),
            ("size", Value::U64(567)),
        ];
        let l = line(Json, false, Level::INFO, None, "compaction complete", attrs);
        assert_eq!(
            l,
            "{\"time\":\"2026-12-07T05:29:28.852Z\",\"level\":\"INFO\",\"msg\":\"compaction complete\",\"db\":\"db.sqlite\",\"txid\":{\"min\":\"0000000000000001\",\"max\":\"0000000000000002\"},\"size\":567}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
        assert_eq!(v["txid"]["max"], "0000000000000002");
        let l = line(Json, true, Level::DEBUG, Some(("a.rs", 3)), "m\"x", vec![]);
        let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
        assert_eq!(
            (
                v["msg"].as_str(),
                v["source"]["line"].as_u64(),
                v["level"].as_str()
            ),
            (Some("m\"x"), Some(3), Some("DEBUG"))
        );
    }

    #[test]
    fn pretty_is_short() {
        let l = line(
            LogFormat::Pretty,
            false,
            Level::INFO,
            None,
            "initialized db",
            vec![("path", s("/x y"))],
        );
        assert_eq!(l, "05:29:28 INF initialized db path=\"/x y\"\n");
    }

    /// Through `tracing` itself: the event's message is `msg`, and a field named `message`
    /// after it stays an attribute.
    /// What `log` writes through a `tracing` subscriber with our `format`.
    fn capture(format: LogFormat, log: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .event_format(SlogFormat {
                format,
                source: false,
            })
            .finish();
        tracing::subscriber::with_default(sub, log);
        let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf-8");
        out
    }

    /// A `signal` is a Go `syscall.Signal` in Litestream's lines and `sync-interval` a Go
    /// `time.Duration`: a name and `1s` in text, numbers in JSON (as the real binary writes
    /// `signal=terminated`, `"signal":15` and `"sync-interval":1000000000`).
    #[test]
    fn go_typed_values_are_named_in_text_and_numbered_in_json() {
        let log = || {
            tracing::info!(
                signal = libc::SIGTERM,
                "sync-interval" = 1_000_000_000u64,
                "x"
            );
        };
        let text = capture(LogFormat::Text, log);
        assert!(
            text.ends_with(" msg=x signal=terminated sync-interval=1s\n"),
            "{text}"
        );
        let json = capture(LogFormat::Json, log);
        assert!(
            json.ends_with(",\"msg\":\"x\",\"signal\":15,\"sync-interval\":1000000000}\n"),
            "{json}"
        );
    }

    #[test]
    fn a_message_field_is_an_attribute() {
        let out = capture(LogFormat::Text, || {
            tracing::warn!(level = 1, r#type = "gap", message = %"TXID gap: a", "validation error detected");
        });
        let line = out
            .split_once(" level=WARN ")
            .map(|x| x.1)
            .expect("a WARN line");
        assert_eq!(
            line,
            "msg=\"validation error detected\" level=1 type=gap message=\"TXID gap: a\"\n"
        );
    }

    #[test]
    fn types_parse_as_litestream_names_them() {
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse(""), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("pretty"), Some(LogFormat::Pretty));
        assert_eq!(LogFormat::parse("xml"), None);
    }
}
