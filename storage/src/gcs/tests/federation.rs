//! Federated credentials against stand-ins of Google's STS, IAM Credentials and storage API.

use super::*;

/// A stand-in for Google's STS and IAM Credentials endpoints and the storage API: STS wants the
/// subject token `subj`, impersonation wants STS's token (or the user's) as its bearer.
fn federation_server() -> Arc<Handler> {
    Arc::new(|req: &Seen| {
        let p = req.path();
        if p == "/sts" {
            let f = form(&req.body);
            let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
            let ok = get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
                && get("audience") == "//iam.googleapis.com/projects/1/pool/p"
                && get("subject_token") == "subj"
                && get("subject_token_type") == "urn:ietf:params:oauth:token-type:jwt"
                && get("requested_token_type") == "urn:ietf:params:oauth:token-type:access_token";
            // Impersonation needs a cloud-platform token; used directly, the storage scope.
            let tok = match get("scope") {
                "https://www.googleapis.com/auth/cloud-platform" => "fed-cp",
                s if s == auth::SCOPE => "fed-storage",
                _ => "",
            };
            return Some(if ok && !tok.is_empty() {
                (
                    200,
                    format!(r#"{{"access_token":"{tok}","expires_in":3600}}"#),
                )
            } else {
                (400, r#"{"error":"invalid_grant"}"#.into())
            });
        }
        if p == "/subject" {
            return Some(match req.header("metadata").as_deref() {
                Some("true") => (200, "subj\n".into()),
                _ => (403, String::new()),
            });
        }
        if p == "/token" {
            return Some((
                200,
                r#"{"access_token":"user-tok","expires_in":3600}"#.into(),
            ));
        }
        if p.ends_with(":generateAccessToken") {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let bearer = req.header("authorization").unwrap_or_default();
            let ok = (bearer == "Bearer fed-cp" || bearer == "Bearer user-tok")
                && body["scope"] == serde_json::json!([auth::SCOPE])
                && body["lifetime"] == "600s";
            return Some(if ok {
                let delegated = body["delegates"] == serde_json::json!(["d@p.iam"]);
                let tok = if delegated { "sa-delegated" } else { "sa-tok" };
                (
                    200,
                    format!(r#"{{"accessToken":"{tok}","expireTime":"2099-01-01T00:00:00Z"}}"#),
                )
            } else {
                (403, r#"{"error":{"message":"denied"}}"#.into())
            });
        }
        Some(match req.header("authorization").as_deref() {
            Some("Bearer sa-tok" | "Bearer fed-storage" | "Bearer sa-delegated") => {
                (200, EMPTY_LIST.into())
            }
            _ => (401, r#"{"error":{"code":401,"message":"no token"}}"#.into()),
        })
    })
}

/// Lists through a replica authenticated by the credentials file `json`; the paths the
/// stand-in saw.
async fn list_with(
    url: &str,
    json: serde_json::Value,
    seen: &Arc<StdMutex<Vec<Seen>>>,
) -> Vec<String> {
    let creds = Credentials::from_json(json.to_string().as_bytes(), "test.json").expect("creds");
    let r = test_replica(url, TokenSource::with_credentials(creds));
    assert!(r.ltx_files(Level(0)).await.expect("list").is_empty());
    let paths = seen
        .lock()
        .expect("log")
        .iter()
        .map(|s| s.path().to_owned())
        .collect();
    seen.lock().expect("log").clear();
    paths
}

#[tokio::test]
async fn external_accounts_exchange_their_subject_token_and_impersonate() {
    let (url, seen) = serve(federation_server()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token.json");
    std::fs::write(&token_file, r#"{"id_token":"subj"}"#).expect("token");
    let base = serde_json::json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/pool/p",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{url}/sts"),
    });
    // A file in JSON format, then impersonation of a service account.
    let mut file = base.clone();
    file["credential_source"] = serde_json::json!({
        "file": token_file, "format": {"type": "json", "subject_token_field_name": "id_token"}
    });
    file["service_account_impersonation_url"] =
        format!("{url}/v1/projects/-/serviceAccounts/sa@p.iam:generateAccessToken").into();
    file["service_account_impersonation"] = serde_json::json!({"token_lifetime_seconds": 600});
    let paths = list_with(&url, file, &seen).await;
    assert_eq!(paths[0], "/sts");
    assert!(
        paths[1].ends_with("sa@p.iam:generateAccessToken"),
        "{paths:?}"
    );
    // A URL answering with the token as text, used without impersonation.
    let mut by_url = base;
    by_url["credential_source"] =
        serde_json::json!({"url": format!("{url}/subject"), "headers": {"Metadata": "true"}});
    let paths = list_with(&url, by_url, &seen).await;
    assert_eq!(&paths[..2], ["/subject", "/sts"]);
}

#[tokio::test]
async fn impersonated_service_accounts_use_their_source_token() {
    let (url, seen) = serve(federation_server()).await;
    let json = serde_json::json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url":
            format!("{url}/v1/projects/-/serviceAccounts/sa@p.iam:generateAccessToken"),
        "service_account_impersonation": {"token_lifetime_seconds": 600},
        "delegates": ["d@p.iam"],
        "source_credentials": {
            "type": "authorized_user", "client_id": "c", "client_secret": "s",
            "refresh_token": "r", "token_uri": format!("{url}/token")
        }
    });
    let paths = list_with(&url, json, &seen).await;
    assert_eq!(paths[0], "/token");
    assert!(paths[1].ends_with(":generateAccessToken"), "{paths:?}");
}

#[test]
fn federated_credential_files_that_cannot_work_say_why() {
    let bad = |v: serde_json::Value, want: &str| {
        let e = Credentials::from_json(v.to_string().as_bytes(), "cred.json")
            .expect_err(&v.to_string());
        assert!(e.contains("cred.json") && e.contains(want), "{e}");
    };
    let ext = |src: serde_json::Value| {
        serde_json::json!({"type": "external_account", "audience": "a",
            "subject_token_type": "t", "credential_source": src})
    };
    bad(
        ext(serde_json::json!({"executable": {"command": "x"}})),
        "executable",
    );
    bad(ext(serde_json::json!({"environment_id": "aws1"})), "AWS");
    bad(
        ext(serde_json::json!({"file": "/t", "format": {"type": "json"}})),
        "subject_token_field_name",
    );
    bad(
        serde_json::json!({"type": "external_account", "subject_token_type": "t",
            "credential_source": {"file": "/t"}}),
        "audience",
    );
    bad(
        serde_json::json!({"type": "impersonated_service_account",
            "source_credentials": {"type": "authorized_user", "client_id": "c", "refresh_token": "r"}}),
        "service_account_impersonation_url",
    );
    let nested = serde_json::json!({"type": "impersonated_service_account",
        "service_account_impersonation_url": "https://x",
        "source_credentials": {"type": "authorized_user", "client_id": "c", "refresh_token": "r"}});
    bad(
        serde_json::json!({"type": "impersonated_service_account",
            "service_account_impersonation_url": "https://x", "source_credentials": nested}),
        "may not be",
    );
}
