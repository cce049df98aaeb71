//! The raw side: a YAML mapping read key by key, remembering which keys were looked at, so that
//! every key is either used or reported as unknown with its line (as Litestream's yaml.v2
//! reader ignores them, we warn rather than fail).

use std::collections::HashSet;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};
use storage::value::{parse_byte_size, parse_config_bool, parse_duration};

use crate::error::{key_err, ConfigError};

/// A YAML mapping being read, which remembers which keys were looked at.
pub(crate) struct Node<'a> {
    map: Option<&'a Mapping>,
    pub(crate) path: String,
    seen: HashSet<String>,
}

impl<'a> Node<'a> {
    pub(crate) fn new(v: &'a Value, path: &str) -> Result<Self, ConfigError> {
        let map = match v {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            _ => return Err(key_err(path, "expected a mapping")),
        };
        Ok(Node {
            map,
            path: path.to_owned(),
            seen: HashSet::new(),
        })
    }

    pub(crate) fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    pub(crate) fn get(&mut self, k: &str) -> Option<&'a Value> {
        self.seen.insert(k.to_owned());
        let v = self.map?.get(k)?;
        (!v.is_null()).then_some(v)
    }

    pub(crate) fn scalar(&mut self, k: &str) -> Result<Option<String>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(key_err(&self.key(k), "expected a scalar value")),
        }
    }

    pub(crate) fn string(&mut self, k: &str) -> Result<Option<String>, ConfigError> {
        self.scalar(k)
    }

    pub(crate) fn duration(&mut self, k: &str) -> Result<Option<Duration>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => parse_duration(s)
                .map(Some)
                .map_err(|e| key_err(&self.key(k), e.to_string())),
            // yaml.v2 decodes a bare integer into time.Duration as nanoseconds.
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|ns| Some(Duration::from_nanos(ns)))
                .ok_or_else(|| key_err(&self.key(k), "expected a duration such as 10s")),
            Some(_) => Err(key_err(&self.key(k), "expected a duration such as 10s")),
        }
    }

    pub(crate) fn bool(&mut self, k: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse_config_bool(s)
                .map(Some)
                .ok_or_else(|| key_err(&self.key(k), "expected true or false")),
            Some(_) => Err(key_err(&self.key(k), "expected true or false")),
        }
    }

    pub(crate) fn int(&mut self, k: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| key_err(&self.key(k), "expected an integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| key_err(&self.key(k), "expected an integer")),
            Some(_) => Err(key_err(&self.key(k), "expected an integer")),
        }
    }

    pub(crate) fn uint(&mut self, k: &str) -> Result<Option<u64>, ConfigError> {
        match self.int(k)? {
            Some(v) if v < 0 => Err(key_err(&self.key(k), "must not be negative")),
            v => Ok(v.map(|v| v as u64)),
        }
    }

    pub(crate) fn bytes(&mut self, k: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| key_err(&self.key(k), "expected a byte size")),
            Some(Value::String(s)) => parse_byte_size(s)
                .map(Some)
                .map_err(|e| key_err(&self.key(k), e.to_string())),
            Some(_) => Err(key_err(&self.key(k), "expected a byte size such as 64MiB")),
        }
    }

    pub(crate) fn child(&mut self, k: &str) -> Result<Option<Node<'a>>, ConfigError> {
        let key = self.key(k);
        match self.get(k) {
            None => Ok(None),
            Some(v) => Node::new(v, &key).map(Some),
        }
    }

    /// Keys present in the mapping that nobody asked for.
    pub(crate) fn unknown(&self) -> Vec<String> {
        let Some(m) = self.map else {
            return Vec::new();
        };
        m.keys()
            .filter_map(|k| match k {
                Value::String(s) => Some(s.clone()),
                other => serde_yaml_ng::to_string(other)
                    .ok()
                    .map(|s| s.trim().to_owned()),
            })
            .filter(|k| !self.seen.contains(k))
            .map(|k| self.key(&k))
            .collect()
    }
}

/// 1-based line of the first line that defines `key` (last path component), for warnings.
pub(crate) fn line_of(text: &str, dotted: &str) -> Option<usize> {
    let last = dotted.rsplit('.').next().unwrap_or(dotted);
    let last = last.split('[').next().unwrap_or(last);
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix(last)
                .is_some_and(|r| r.trim_start().starts_with(':'))
                || t.strip_prefix(&format!("\"{last}\""))
                    .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}
