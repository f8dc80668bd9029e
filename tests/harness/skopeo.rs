//! `skopeo`, the independent client tests read registries with (to check that production
//! holds exactly what staging holds).

use std::process::Command;

use super::http::Credentials;
use super::registry::{TestRegistry, find_binary};

/// Something naming a registry host (`127.0.0.1:PORT`).
pub trait RegistryHost {
    /// `HOST:PORT`.
    fn registry_host(&self) -> String;
}

impl RegistryHost for TestRegistry {
    fn registry_host(&self) -> String {
        self.host()
    }
}

impl RegistryHost for str {
    fn registry_host(&self) -> String {
        self.to_owned()
    }
}

impl RegistryHost for String {
    fn registry_host(&self) -> String {
        self.clone()
    }
}

/// `sha256:HEX` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    super::image::sha256_digest(bytes)
}

/// `docker://HOST/REPO:TAG`, or `docker://HOST/REPO@sha256:...` for a digest.
pub fn image_ref(host: &str, repo: &str, reference: &str) -> String {
    if reference.contains(':') {
        format!("docker://{host}/{repo}@{reference}")
    } else {
        format!("docker://{host}/{repo}:{reference}")
    }
}

/// The exact manifest bytes, read with `skopeo inspect --raw`; panics if skopeo fails.
pub fn inspect_raw<R: RegistryHost + ?Sized>(
    registry: &R,
    repo: &str,
    reference: &str,
    credentials: Option<&Credentials>,
) -> Vec<u8> {
    try_inspect_raw(registry, repo, reference, credentials).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`inspect_raw`], with skopeo's error (manifest unknown, unauthorized...) as `Err`.
pub fn try_inspect_raw<R: RegistryHost + ?Sized>(
    registry: &R,
    repo: &str,
    reference: &str,
    credentials: Option<&Credentials>,
) -> Result<Vec<u8>, String> {
    let target = image_ref(&registry.registry_host(), repo, reference);
    run(&["inspect", "--raw"], &target, credentials)
}

/// The tags of a repository (`skopeo list-tags`), as listed.
pub fn list_tags<R: RegistryHost + ?Sized>(
    registry: &R,
    repo: &str,
    credentials: Option<&Credentials>,
) -> Result<Vec<String>, String> {
    let target = format!("docker://{}/{repo}", registry.registry_host());
    let out = run(&["list-tags"], &target, credentials)?;
    let json: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| format!("skopeo list-tags output: {e}"))?;
    Ok(json["Tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

fn run(args: &[&str], target: &str, credentials: Option<&Credentials>) -> Result<Vec<u8>, String> {
    let binary = find_binary("skopeo").unwrap_or_else(|| {
        panic!("`skopeo` not found: run infra/local/test.sh (or `infra/local/stack.sh install`)")
    });
    let mut command = Command::new(binary);
    command.args(args).arg("--tls-verify=false");
    match credentials {
        Some(c) => command.arg("--creds").arg(c.colon_pair()),
        None => command.arg("--no-creds"),
    };
    let output = command
        .arg(target)
        .output()
        .map_err(|e| format!("run skopeo: {e}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(format!(
            "skopeo {} {target} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
