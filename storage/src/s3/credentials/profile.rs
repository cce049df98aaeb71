//! The shared `config` and `credentials` files, and what a profile in them says to do to get
//! credentials (docs/s3-credentials.md#profiles). This part only reads files and decides; the
//! requests are made by the chain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{env, home, pair, Credentials};

type Section = HashMap<String, String>;

/// Sections of an INI file by their header, as written (`default`, `profile x`, `sso-session y`).
/// An indented `key = value` under a `parent =` with no value is a sub-property, kept as
/// `parent.key` (a `[services x]` section's `s3 =` then `  endpoint_url = ...`).
fn parse_ini(text: &str) -> HashMap<String, Section> {
    let mut out: HashMap<String, Section> = HashMap::new();
    let mut section: Option<String> = None;
    let mut parent: Option<String> = None;
    for raw in text.lines() {
        let indented = raw.starts_with([' ', '\t']);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            // `[profile   x]` and `[profile x]` are the same section.
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            section = Some(name);
            parent = None;
            continue;
        }
        if let (Some(sec), Some((k, v))) = (&section, line.split_once('=')) {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            let key = match &parent {
                Some(p) if indented => format!("{p}.{k}"),
                _ => {
                    parent = v.is_empty().then(|| k.clone());
                    k
                }
            };
            out.entry(sec.clone()).or_default().insert(key, v);
        }
    }
    out
}

/// The two shared files, read once per resolution.
#[derive(Debug, Default)]
pub(crate) struct Files {
    config: HashMap<String, Section>,
    credentials: HashMap<String, Section>,
    config_path: Option<PathBuf>,
    credentials_path: Option<PathBuf>,
}

impl Files {
    /// `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE`, or both under `~/.aws`. A missing
    /// file is an empty one.
    pub(crate) fn from_env() -> Files {
        let config = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".aws/config")));
        let credentials = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".aws/credentials")));
        Files::read(credentials, config)
    }

    pub(crate) fn read(credentials: Option<PathBuf>, config: Option<PathBuf>) -> Files {
        let load = |p: &Option<PathBuf>| {
            p.as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| parse_ini(&t))
                .unwrap_or_default()
        };
        Files {
            config: load(&config),
            credentials: load(&credentials),
            config_path: config,
            credentials_path: credentials,
        }
    }

    /// A profile's keys: the config file's `[profile x]` (`[default]` for the default), with
    /// the credentials file's `[x]` over it, as the AWS SDKs merge them. `None` if neither file
    /// has it.
    pub(crate) fn profile(&self, name: &str) -> Option<Section> {
        let from_config = self.config.get(&format!("profile {name}")).or_else(|| {
            (name == "default")
                .then(|| self.config.get("default"))
                .flatten()
        });
        let from_credentials = self.credentials.get(name);
        if from_config.is_none() && from_credentials.is_none() {
            return None;
        }
        let mut merged = from_config.cloned().unwrap_or_default();
        merged.extend(from_credentials.cloned().unwrap_or_default());
        merged.retain(|_, v| !v.is_empty());
        Some(merged)
    }

    /// A `[services name]` section of the config file.
    pub(crate) fn services(&self, name: &str) -> Option<&Section> {
        self.config.get(&format!("services {name}"))
    }

    fn sso_session(&self, name: &str) -> Option<&Section> {
        self.config.get(&format!("sso-session {name}"))
    }

    fn describe(&self) -> String {
        let show =
            |p: &Option<PathBuf>| p.as_deref().map_or("-".into(), |p| p.display().to_string());
        format!(
            "{} or {}",
            show(&self.config_path),
            show(&self.credentials_path)
        )
    }
}

/// A role assumed with `sts:AssumeRole` on top of other credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Role {
    pub arn: String,
    pub session_name: Option<String>,
    pub external_id: Option<String>,
    pub duration_secs: Option<u32>,
}

/// A role assumed with `sts:AssumeRoleWithWebIdentity`: the token is read from the file at
/// every refresh (Kubernetes rotates it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WebIdentity {
    pub token_file: PathBuf,
    pub role_arn: String,
    pub session_name: Option<String>,
}

/// An IAM Identity Center (SSO) role: the token `aws sso login` cached, exchanged at the
/// portal for the role's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sso {
    /// The file `aws sso login` writes the token to.
    pub cache_file: PathBuf,
    pub region: String,
    pub account_id: String,
    pub role_name: String,
}

/// Where the first credentials of a chain come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    Static(Credentials),
    /// `credential_source = Environment`: the `AWS_*` keys.
    Environment,
    WebIdentity(WebIdentity),
    /// `credential_process`: the command line, run by `sh -c`.
    Process(String),
    Sso(Sso),
    /// The ECS/EKS container endpoint (`AWS_CONTAINER_CREDENTIALS_*`).
    Container,
    /// The EC2 instance metadata service.
    Imds,
}

/// The base credentials, then each role in order, each assumed with the credentials before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub base: Base,
    pub roles: Vec<Role>,
}

/// What credentials fall back to when no file says anything: the container endpoint when its
/// variables are set, else the instance metadata service.
pub(crate) fn remote_base() -> Base {
    if env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        || env("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
    {
        Base::Container
    } else {
        Base::Imds
    }
}

/// The plan for profile `name`. `explicit`: the profile was named (`AWS_PROFILE`), so a
/// missing one is an error, as in the AWS SDKs; the default profile may be absent.
pub(crate) fn plan(files: &Files, name: &str, explicit: bool) -> Result<Plan, String> {
    let mut roles: Vec<Role> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut name = name.to_owned();
    let mut must_exist = explicit;
    loop {
        if seen.contains(&name) {
            return Err(format!(
                "AWS profiles {} name each other as source_profile",
                seen.join(" -> ")
            ));
        }
        seen.push(name.clone());
        let Some(p) = files.profile(&name) else {
            if must_exist {
                return Err(format!(
                    "AWS profile {name:?} is not in {}",
                    files.describe()
                ));
            }
            return Ok(Plan {
                base: remote_base(),
                roles,
            });
        };
        let get = |k: &str| p.get(k).cloned();
        let keys = pair(
            get("aws_access_key_id"),
            get("aws_secret_access_key"),
            get("aws_session_token"),
        );
        let role = get("role_arn").map(|arn| Role {
            arn,
            session_name: get("role_session_name"),
            external_id: get("external_id"),
            duration_secs: get("duration_seconds").and_then(|d| d.parse().ok()),
        });
        let need_role = |what: &str| {
            role.clone()
                .ok_or_else(|| format!("AWS profile {name:?} sets {what} without role_arn"))
        };
        if let (Some(src), Some(r)) = (get("source_profile"), &role) {
            roles.insert(0, r.clone());
            if src == name {
                // A profile may be its own source: its keys assume its role.
                let base = keys.ok_or_else(|| {
                    format!("AWS profile {name:?} is its own source_profile but has no keys")
                })?;
                return Ok(Plan {
                    base: Base::Static(base),
                    roles,
                });
            }
            name = src;
            must_exist = true;
            continue;
        }
        let base = if let Some(k) = keys {
            Base::Static(k)
        } else if let Some(src) = get("credential_source") {
            roles.insert(0, need_role("credential_source")?);
            let base = match src.as_str() {
                "Environment" => Base::Environment,
                "Ec2InstanceMetadata" => Base::Imds,
                "EcsContainer" => Base::Container,
                other => {
                    return Err(format!(
                        "AWS profile {name:?}: credential_source {other:?} is not Environment, \
                         Ec2InstanceMetadata or EcsContainer"
                    ))
                }
            };
            return Ok(Plan { base, roles });
        } else if let Some(file) = get("web_identity_token_file") {
            // The role is the web identity's own, not one assumed after it.
            let r = need_role("web_identity_token_file")?;
            Base::WebIdentity(WebIdentity {
                token_file: PathBuf::from(file),
                role_arn: r.arn,
                session_name: r.session_name,
            })
        } else if let Some(sso) = sso(files, &name, &p)? {
            Base::Sso(sso)
        } else if let Some(cmd) = get("credential_process") {
            Base::Process(cmd)
        } else {
            remote_base()
        };
        if let (Some(r), false) = (role, matches!(base, Base::WebIdentity(_))) {
            roles.insert(0, r);
        }
        return Ok(Plan { base, roles });
    }
}

/// A profile's SSO settings, directly (`sso_start_url`, the legacy form) or through an
/// `[sso-session]` section; the token cache file is named by the SHA-1 of the session name or
/// of the start URL, as the AWS CLI writes it.
fn sso(files: &Files, name: &str, p: &Section) -> Result<Option<Sso>, String> {
    let (account, role) = (p.get("sso_account_id"), p.get("sso_role_name"));
    let (key, region) = if let Some(session) = p.get("sso_session") {
        let s = files.sso_session(session).ok_or_else(|| {
            format!("AWS profile {name:?} names sso_session {session:?}, which is not in the config file")
        })?;
        (session.clone(), s.get("sso_region").cloned())
    } else if let Some(url) = p.get("sso_start_url") {
        (url.clone(), p.get("sso_region").cloned())
    } else {
        return Ok(None);
    };
    let (Some(account), Some(role), Some(region)) = (account, role, region) else {
        return Err(format!(
            "AWS profile {name:?} is an SSO profile without sso_account_id, sso_role_name or sso_region"
        ));
    };
    let dir = home()
        .map(|h| h.join(".aws/sso/cache"))
        .ok_or("SSO token cache: HOME is not set")?;
    Ok(Some(Sso {
        cache_file: cache_file(&dir, &key),
        region,
        account_id: account.clone(),
        role_name: role.clone(),
    }))
}

fn cache_file(dir: &Path, key: &str) -> PathBuf {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(credentials: &str, config: &str) -> (tempfile::TempDir, Files) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (c, f) = (dir.path().join("credentials"), dir.path().join("config"));
        std::fs::write(&c, credentials).expect("write");
        std::fs::write(&f, config).expect("write");
        let files = Files::read(Some(c), Some(f));
        (dir, files)
    }

    fn static_id(p: &Plan) -> &str {
        match &p.base {
            Base::Static(c) => &c.access_key_id,
            other => panic!("not static keys: {other:?}"),
        }
    }

    /// A `services` section's indented sub-properties are kept under their parent, and an
    /// unindented key after them is the section's own again.
    #[test]
    fn services_sections_keep_sub_properties() {
        let (_d, f) = files(
            "",
            "[default]\nservices = local\nendpoint_url = http://global\n\
             [services local]\ns3 =\n  endpoint_url = http://s3-only\n\tsignature_version = v4\n\
             sts =\n  endpoint_url = http://sts-only\nother = x\n",
        );
        let p = f.profile("default").expect("default");
        assert_eq!(
            p.get("endpoint_url").map(String::as_str),
            Some("http://global")
        );
        let s = f.services("local").expect("services local");
        assert_eq!(
            s.get("s3.endpoint_url").map(String::as_str),
            Some("http://s3-only")
        );
        assert_eq!(
            s.get("s3.signature_version").map(String::as_str),
            Some("v4")
        );
        assert_eq!(
            s.get("sts.endpoint_url").map(String::as_str),
            Some("http://sts-only")
        );
        assert_eq!(s.get("other").map(String::as_str), Some("x"));
        assert!(!s.contains_key("endpoint_url"));
    }

    #[test]
    fn static_keys_merge_credentials_over_config() {
        let (_d, f) = files(
            "[default]\naws_access_key_id = AKD\naws_secret_access_key = SKD\n\n[prod]\n\
             aws_access_key_id=AKP\naws_secret_access_key=SKP\naws_session_token=TOK\n",
            "[default]\nregion = us-west-2\n[profile cfg]\naws_access_key_id = AKC\n\
             aws_secret_access_key = SKC\n[sso-session x]\naws_access_key_id = no\n\
             [profile prod]\naws_access_key_id = OLD\n",
        );
        let get = |n: &str| plan(&f, n, true).expect(n);
        assert_eq!(static_id(&get("default")), "AKD");
        assert_eq!(static_id(&get("prod")), "AKP");
        assert_eq!(static_id(&get("cfg")), "AKC");
        assert!(
            plan(&f, "x", true).is_err(),
            "an sso-session is not a profile"
        );
        let missing = plan(&f, "missing", true).expect_err("named and missing");
        assert!(missing.contains("\"missing\""), "{missing}");
        assert!(get("default").roles.is_empty());
    }

    #[test]
    fn roles_chain_from_source_profiles_outermost_last() {
        let (_d, f) = files(
            "[base]\naws_access_key_id = AKB\naws_secret_access_key = SKB\n",
            "[profile mid]\nrole_arn = arn:mid\nsource_profile = base\nexternal_id = ext\n\
             [profile top]\nrole_arn = arn:top\nsource_profile = mid\nduration_seconds = 1800\n\
             role_session_name = me\n\
             [profile self]\nrole_arn = arn:self\nsource_profile = self\n\
             aws_access_key_id = AKS\naws_secret_access_key = SKS\n\
             [profile loop1]\nrole_arn = arn:1\nsource_profile = loop2\n\
             [profile loop2]\nrole_arn = arn:2\nsource_profile = loop1\n\
             [profile dangling]\nrole_arn = arn:d\nsource_profile = nowhere\n",
        );
        let top = plan(&f, "top", true).expect("top");
        assert_eq!(static_id(&top), "AKB");
        let arns: Vec<_> = top.roles.iter().map(|r| r.arn.as_str()).collect();
        assert_eq!(arns, ["arn:mid", "arn:top"]);
        assert_eq!(top.roles[0].external_id.as_deref(), Some("ext"));
        assert_eq!(top.roles[1].duration_secs, Some(1800));
        assert_eq!(top.roles[1].session_name.as_deref(), Some("me"));
        let me = plan(&f, "self", true).expect("self");
        assert_eq!((static_id(&me), me.roles.len()), ("AKS", 1));
        let e = plan(&f, "loop1", true).expect_err("cycle");
        assert!(e.contains("loop1 -> loop2"), "{e}");
        // A source profile must exist even when the first profile was not named explicitly.
        assert!(plan(&f, "dangling", false).is_err());
    }

    #[test]
    fn sources_web_identity_process_and_sso() {
        let (_d, f) = files(
            "",
            "[profile env]\nrole_arn = arn:e\ncredential_source = Environment\n\
             [profile imds]\nrole_arn = arn:i\ncredential_source = Ec2InstanceMetadata\n\
             [profile bad]\nrole_arn = arn:b\ncredential_source = Somewhere\n\
             [profile norole]\ncredential_source = Environment\n\
             [profile web]\nrole_arn = arn:w\nweb_identity_token_file = /t/token\n\
             [profile proc]\ncredential_process = /bin/creds --json\n\
             [profile procrole]\ncredential_process = /bin/creds\nrole_arn = arn:p\n\
             [profile sso]\nsso_session = corp\nsso_account_id = 111\nsso_role_name = Dev\n\
             [sso-session corp]\nsso_region = eu-west-1\nsso_start_url = https://x/start\n\
             [profile ssolegacy]\nsso_start_url = https://y/start\nsso_region = us-east-2\n\
             sso_account_id = 222\nsso_role_name = Ops\n\
             [profile ssobroken]\nsso_session = nowhere\nsso_account_id = 1\nsso_role_name = r\n",
        );
        let p = |n: &str| plan(&f, n, true);
        let env = p("env").expect("env");
        assert_eq!(
            (env.base.clone(), env.roles[0].arn.as_str()),
            (Base::Environment, "arn:e")
        );
        assert_eq!(p("imds").expect("imds").base, Base::Imds);
        assert!(p("bad").expect_err("bad").contains("Somewhere"));
        assert!(p("norole").expect_err("norole").contains("role_arn"));
        let web = p("web").expect("web");
        assert!(
            web.roles.is_empty(),
            "the web identity's role is not assumed twice"
        );
        assert_eq!(
            web.base,
            Base::WebIdentity(WebIdentity {
                token_file: "/t/token".into(),
                role_arn: "arn:w".into(),
                session_name: None
            })
        );
        assert_eq!(
            p("proc").expect("proc").base,
            Base::Process("/bin/creds --json".into())
        );
        assert_eq!(p("procrole").expect("procrole").roles.len(), 1);
        let Base::Sso(s) = p("sso").expect("sso").base else {
            panic!("not sso")
        };
        assert_eq!(
            (s.region.as_str(), s.account_id.as_str()),
            ("eu-west-1", "111")
        );
        // The AWS CLI names the cache file by the SHA-1 of the session name.
        assert!(s
            .cache_file
            .ends_with(".aws/sso/cache/".to_owned() + &cache_name("corp")));
        let Base::Sso(l) = p("ssolegacy").expect("legacy").base else {
            panic!("not sso")
        };
        assert!(l.cache_file.ends_with(cache_name("https://y/start")));
        assert!(p("ssobroken").is_err());
    }

    fn cache_name(key: &str) -> String {
        cache_file(Path::new(""), key).display().to_string()
    }

    #[test]
    fn sso_cache_file_is_named_by_sha1() {
        // `printf corp | sha1sum`
        assert_eq!(
            cache_name("corp"),
            "ee0bfd2552fbd840c02cc48b6e823320543c450f.json"
        );
    }
}
