//! `promoter promote` as an AWS Lambda function runs it against Google's registries: the role's
//! credentials in the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, as Lambda sets them), `GOOGLE_APPLICATION_CREDENTIALS`
//! naming an `external_account` file, and nothing else: no key file, no metadata server. The
//! fakes of Google's STS and IAM Credentials API (tests/harness/federation.rs) check the
//! signed subject token; the production registry accepts only the federated access token.

use std::process::Command;

use promoter_tests::harness::federation::{self, Federation};
use promoter_tests::harness::image::{ManifestFormat, push_single};
use promoter_tests::harness::registry::TestRegistry;
use promoter_tests::harness::skopeo;

#[test]
fn lambda_role_credentials_reach_google_through_workload_identity_federation() {
    let federation = Federation::start();
    let staging = TestRegistry::start();
    let production = TestRegistry::with_htpasswd("oauth2accesstoken", federation::ACCESS_TOKEN);
    let image = push_single(
        &staging,
        "staging/app",
        ManifestFormat::Oci,
        "lambda-wif",
        None,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let credential_file = federation.credential_file(dir.path());
    let manifest = format!(
        "registries:\n- name: {s}/staging\n  src: true\n- name: {p}/us\n- name: {p}/eu\n\
         images:\n- name: app\n  dmap:\n    \"{d}\": [\"v1\"]\n",
        s = staging.host(),
        p = production.host(),
        d = image.digest,
    );
    std::fs::write(dir.path().join("m.yaml"), manifest).expect("write manifest");
    std::fs::create_dir(dir.path().join("docker")).expect("docker config dir");

    let output = Command::new(env!("CARGO_BIN_EXE_promoter"))
        .args(["promote", "m.yaml", "--output", "json"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("DOCKER_CONFIG", dir.path().join("docker"))
        .env("AWS_ACCESS_KEY_ID", federation::ROLE_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", federation::ROLE_SECRET)
        .env("AWS_SESSION_TOKEN", federation::ROLE_SESSION)
        .env("AWS_REGION", federation::REGION)
        .env("GOOGLE_APPLICATION_CREDENTIALS", &credential_file)
        .env("PROMOTER_GOOGLE_REGISTRIES", production.host())
        .output()
        .expect("run the promoter binary");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for mirror in ["us/app", "eu/app"] {
        let bytes = skopeo::inspect_raw(&production, mirror, "v1", production.credentials());
        assert_eq!(bytes, image.bytes, "{mirror}");
    }
    assert!(
        federation.aws.requests().is_empty(),
        "the role's credentials come from the environment, as in Lambda"
    );
    assert_eq!(
        federation.sts.requests().len(),
        1,
        "one token exchange for the run"
    );
    assert_eq!(
        federation.iam.requests().len(),
        1,
        "one impersonation for the run"
    );
}
