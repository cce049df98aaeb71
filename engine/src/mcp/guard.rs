//! Who may talk to the MCP server: the `Host` and `Origin` checks the MCP Streamable HTTP
//! transport requires against DNS rebinding, and the optional bearer token.
//!
//! A browser page can only reach this server under a name the attacker controls (DNS
//! rebinding) if the server accepts that name, so `Host` (and `Origin`, when a browser sends
//! one) must be an IP address, `localhost`, the host of `mcp-addr`, or a name listed in
//! `mcp-allowed-hosts`. The token, when set (`mcp-token`, or `LS_MCP_TOKEN`), is required as
//! `Authorization: Bearer <token>` on every request.

use hyper::header::{AUTHORIZATION, HOST, ORIGIN};
use hyper::{HeaderMap, StatusCode};

/// The environment variable that sets (and overrides) `mcp-token`.
pub const TOKEN_ENV: &str = "LS_MCP_TOKEN";

pub use ls_config::{McpConfig, Token};

/// The checks every request passes before it is looked at.
#[derive(Debug)]
pub(super) struct Guard {
    token: Option<Token>,
    /// Lower-case names, `localhost` included.
    hosts: Vec<String>,
}

impl Guard {
    /// `addr_host` is the host part of `mcp-addr` (may be empty or an IP address).
    pub(super) fn new(cfg: &McpConfig, token: Option<Token>, addr_host: &str) -> Guard {
        let mut hosts: Vec<String> = std::iter::once("localhost")
            .chain(std::iter::once(addr_host).filter(|h| !h.is_empty()))
            .chain(cfg.allowed_hosts.iter().map(String::as_str))
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        hosts.sort();
        hosts.dedup();
        Guard { token, hosts }
    }

    pub(super) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `Err((status, message))` for a request that must be refused.
    pub(super) fn check(&self, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
        let host = headers.get(HOST).map(|v| v.as_bytes());
        if !host
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(host_of_authority)
            .is_some_and(|h| self.host_ok(h))
        {
            return Err((StatusCode::FORBIDDEN, "Forbidden: invalid Host header"));
        }
        if let Some(o) = headers.get(ORIGIN) {
            let ok = std::str::from_utf8(o.as_bytes())
                .ok()
                .and_then(|o| o.split_once("://"))
                .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
                .and_then(|(_, rest)| host_of_authority(rest))
                .is_some_and(|h| self.host_ok(h));
            if !ok {
                return Err((StatusCode::FORBIDDEN, "Forbidden: invalid Origin header"));
            }
        }
        if let Some(t) = &self.token {
            let given = headers
                .get(AUTHORIZATION)
                .map(|v| v.as_bytes())
                .and_then(|v| {
                    let (scheme, rest) = v.split_at_checked(7)?;
                    scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
                });
            if !given.is_some_and(|g| t.matches(g)) {
                return Err((StatusCode::UNAUTHORIZED, "Unauthorized"));
            }
        }
        Ok(())
    }

    fn host_ok(&self, host: &str) -> bool {
        if host.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&h)
    }
}

/// The host of `host[:port]` / `[v6]:port` (no path allowed), brackets removed.
fn host_of_authority(a: &str) -> Option<&str> {
    if a.is_empty() || a.contains(['/', '@', ' ']) {
        return None;
    }
    if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return (after.is_empty() || port_ok(after.strip_prefix(':')?)).then_some(h);
    }
    match a.split_once(':') {
        Some((h, port)) if port_ok(port) && !h.is_empty() => Some(h),
        Some(_) => None,
        None => Some(a),
    }
}

fn port_ok(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(h: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        m
    }

    #[test]
    fn host_origin_and_token() {
        let cfg = McpConfig {
            allowed_hosts: vec!["Mcp.Example.".into()],
            ..McpConfig::default()
        };
        let g = Guard::new(&cfg, None, "");
        for ok in [
            "127.0.0.1:3001",
            "localhost:3001",
            "LOCALHOST",
            "[::1]:3001",
            "10.1.2.3",
            "mcp.example:80",
        ] {
            assert!(g.check(&headers(&[("host", ok)])).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example:3001",
            "localhost.evil.example",
            "",
            "127.0.0.1:x",
            "a/b",
        ] {
            assert_eq!(
                g.check(&headers(&[("host", bad)])).map_err(|e| e.0),
                Err(StatusCode::FORBIDDEN),
                "{bad}"
            );
        }
        assert!(g.check(&HeaderMap::new()).is_err(), "no Host");
        let h = |o: &str| headers(&[("host", "127.0.0.1:1"), ("origin", o)]);
        assert!(g.check(&h("http://localhost:5173")).is_ok());
        assert!(g.check(&h("https://127.0.0.1")).is_ok());
        for bad in ["http://evil.example", "null", "file://x", "localhost"] {
            assert!(g.check(&h(bad)).is_err(), "{bad}");
        }
        let t = Guard::new(&cfg, Token::non_empty("s3cret"), "myhost");
        let with = |a: &str| headers(&[("host", "myhost:1"), ("authorization", a)]);
        assert!(t.check(&with("Bearer s3cret")).is_ok());
        assert!(t.check(&with("bearer s3cret")).is_ok());
        for bad in ["Bearer s3cre", "Bearer s3cret ", "Basic s3cret", "s3cret"] {
            assert_eq!(
                t.check(&with(bad)).map_err(|e| e.0),
                Err(StatusCode::UNAUTHORIZED),
                "{bad}"
            );
        }
        assert!(t.check(&headers(&[("host", "myhost")])).is_err());
        assert_eq!(
            format!("{:?}", Token::non_empty("s3cret")),
            "Some([redacted])"
        );
        assert_eq!(Token::non_empty(String::new()), None);
    }
}
