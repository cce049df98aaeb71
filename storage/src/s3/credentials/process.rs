//! `credential_process`: a command from the shared config file that prints credentials as JSON
//! (`{"Version": 1, "AccessKeyId": ..., "SecretAccessKey": ..., "SessionToken": ...,
//! "Expiration": ...}`). It is run as the AWS SDK for Go runs it, by `sh -c`, with the engine's
//! environment; its standard error passes through. Nothing it prints is ever put in an error or
//! a log line: it holds secrets.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{from_fields, json_str, Credentials};

/// The SDK for Go's default.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Far above any credentials document; more is refused.
const MAX_OUTPUT: u64 = 64 << 10;

pub(super) async fn run(command: &str) -> Result<Credentials, String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("credential_process: cannot run sh: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or("credential_process: no standard output")?;
    let mut out = Vec::new();
    let done = tokio::time::timeout(TIMEOUT, async {
        stdout.take(MAX_OUTPUT + 1).read_to_end(&mut out).await?;
        // Closed before waiting, so a command that prints on and on is stopped by SIGPIPE.
        child.wait().await
    })
    .await
    .map_err(|_| format!("credential_process: no answer within {TIMEOUT:?}"))?
    .map_err(|e| format!("credential_process: {e}"))?;
    if out.len() as u64 > MAX_OUTPUT {
        return Err(format!(
            "credential_process printed more than {MAX_OUTPUT} bytes"
        ));
    }
    if !done.success() {
        return Err(format!("credential_process exited with {done}"));
    }
    parse(&out)
}

fn parse(out: &[u8]) -> Result<Credentials, String> {
    // serde_json's messages give a line and column, never the text.
    let v: serde_json::Value = serde_json::from_slice(out)
        .map_err(|e| format!("credential_process printed no JSON object: {e}"))?;
    if v.get("Version").and_then(serde_json::Value::as_u64) != Some(1) {
        return Err("credential_process output is not Version 1".into());
    }
    let expires = match json_str(&v, "Expiration") {
        Some(e) => Some(
            crate::timefmt::parse_rfc3339(&e)
                .ok_or("credential_process output has an Expiration that is not RFC 3339")?,
        ),
        None => None,
    };
    from_fields(
        "credential_process output",
        ["AccessKeyId", "SecretAccessKey", "SessionToken"],
        |k| json_str(&v, k),
        expires,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[tokio::test]
    async fn runs_the_command_and_reads_its_json() {
        let c = run(r#"printf '{"Version":1,"AccessKeyId":"AKP","SecretAccessKey":"S","SessionToken":"T","Expiration":"2030-01-01T00:00:00Z"}'"#)
            .await
            .expect("credentials");
        assert_eq!(c.access_key_id, "AKP");
        assert_eq!(c.session_token.as_ref().map(Secret::expose), Some("T"));
        assert!(c.expires.is_some());
    }

    #[tokio::test]
    async fn failures_never_show_the_output() {
        let secret = "hunter2-secret";
        for (cmd, want) in [
            (
                format!("echo {secret}; exit 3"),
                "exited with exit status: 3",
            ),
            (format!("echo {secret}"), "no JSON object"),
            (
                format!(r#"printf '{{"Version":2,"AccessKeyId":"{secret}"}}'"#),
                "not Version 1",
            ),
            (
                format!(r#"printf '{{"Version":1,"AccessKeyId":"{secret}"}}'"#),
                "no SecretAccessKey",
            ),
            ("yes".to_owned(), "more than"),
        ] {
            let e = run(&cmd).await.expect_err(&cmd);
            assert!(e.contains(want), "{cmd}: {e}");
            assert!(!e.contains(secret), "{cmd}: {e}");
        }
    }
}
