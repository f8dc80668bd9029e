//! Google Workload Identity Federation on loopback, for an AWS workload: a fake of the AWS
//! instance metadata service (the credential source: IMDSv2 session token, region, role
//! credentials), a fake of Google's Security Token Service that checks the subject token it is
//! given (the signed `GetCallerIdentity` request Google's STS forwards to AWS, its SigV4
//! signature verified with the role's secret) and a fake of the IAM Credentials API
//! (`generateAccessToken` of the impersonated service account, given the STS token).
//!
//! [`Federation::credential_file`] writes the `external_account` JSON file a user creates with
//! `gcloud iam workload-identity-pools create-cred-config … --aws`, its endpoints pointed here.
//! Nothing here shares code with the promoter or with Google's library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::{digest, hmac};

use super::receiver::{Receiver, Recorded, Reply};

/// The access key of the role the fake metadata service hands out.
pub const ROLE_ACCESS_KEY: &str = "ASIAFEDERATIONTEST";
/// Its secret (used by the fake STS to verify the subject token's signature).
pub const ROLE_SECRET: &str = "federation/secret+key";
/// Its session token.
pub const ROLE_SESSION: &str = "federation-session-token";
/// The region the fake metadata service reports.
pub const REGION: &str = "eu-west-1";
/// The workload identity provider (the STS `audience`).
pub const AUDIENCE: &str = "//iam.googleapis.com/projects/123456/locations/global/\
                            workloadIdentityPools/promoter/providers/aws";
/// The service account impersonated.
pub const SERVICE_ACCOUNT: &str = "promoter@project.iam.gserviceaccount.com";
/// The federated token the fake STS issues.
pub const FEDERATED_TOKEN: &str = "federated.sts-token";
/// The service account's access token the fake IAM Credentials API issues.
pub const ACCESS_TOKEN: &str = "ya29.workload-identity";

/// The three fakes.
pub struct Federation {
    /// The AWS instance metadata service.
    pub aws: Receiver,
    /// Google's STS.
    pub sts: Receiver,
    /// The IAM Credentials API.
    pub iam: Receiver,
}

impl Federation {
    /// Starts the three fakes.
    pub fn start() -> Self {
        Federation {
            aws: Receiver::start(|_, request| aws_metadata(request)),
            sts: Receiver::start(|_, request| match check_token_exchange(request) {
                Ok(()) => json_reply(&serde_json::json!({
                    "access_token": FEDERATED_TOKEN,
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                })),
                Err(problem) => oauth_error(&problem),
            }),
            iam: Receiver::start(|_, request| match check_generate_access_token(request) {
                Ok(()) => json_reply(&serde_json::json!({
                    "accessToken": ACCESS_TOKEN,
                    "expireTime": expire_time_in_an_hour(),
                })),
                Err(problem) => Reply::new(403, problem),
            }),
        }
    }

    /// Writes the `external_account` credential file into `dir` and returns its path.
    pub fn credential_file(&self, dir: &Path) -> PathBuf {
        let aws = |path: &str| self.aws.url(path);
        let file = serde_json::json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": self.sts.url("/v1/token"),
            "service_account_impersonation_url": self.iam.url(&format!(
                "/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken"
            )),
            "credential_source": {
                "environment_id": "aws1",
                "region_url": aws("/latest/meta-data/placement/availability-zone"),
                "url": aws("/latest/meta-data/iam/security-credentials"),
                "regional_cred_verification_url":
                    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
                "imdsv2_session_token_url": aws("/latest/api/token"),
            },
        });
        let path = dir.join("workload-identity.json");
        std::fs::write(&path, file.to_string()).expect("write the credential file");
        path
    }
}

fn json_reply(value: &serde_json::Value) -> Reply {
    Reply::new(200, value.to_string()).header("Content-Type", "application/json")
}

fn oauth_error(problem: &str) -> Reply {
    let body = serde_json::json!({"error": "invalid_request", "error_description": problem});
    Reply::new(400, body.to_string()).header("Content-Type", "application/json")
}

/// IMDSv2 as an EC2 instance (or any AWS compute with a metadata service) serves it.
fn aws_metadata(request: &Recorded) -> Reply {
    const SESSION: &str = "imds-session-token";
    if request.method == "PUT" && request.path == "/latest/api/token" {
        return match request.header("x-aws-ec2-metadata-token-ttl-seconds") {
            Some(_) => Reply::new(200, SESSION),
            None => Reply::new(400, "no TTL header"),
        };
    }
    if request.header("x-aws-ec2-metadata-token") != Some(SESSION) {
        return Reply::new(401, "IMDSv2 session token required");
    }
    match request.path.as_str() {
        "/latest/meta-data/placement/availability-zone" => Reply::new(200, format!("{REGION}b")),
        "/latest/meta-data/iam/security-credentials" => Reply::new(200, "promoter-role"),
        "/latest/meta-data/iam/security-credentials/promoter-role" => {
            json_reply(&serde_json::json!({
                "Code": "Success",
                "AccessKeyId": ROLE_ACCESS_KEY,
                "SecretAccessKey": ROLE_SECRET,
                "Token": ROLE_SESSION,
            }))
        }
        _ => Reply::new(404, "not found"),
    }
}

/// The decoded fields of an `application/x-www-form-urlencoded` body (how Google's library
/// posts the token exchange).
fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Google's STS token exchange with an AWS subject token: the grant, the audience, and a
/// `GetCallerIdentity` request signed with the role's key for the audience.
fn check_token_exchange(request: &Recorded) -> Result<(), String> {
    if request.method != "POST" || request.path != "/v1/token" {
        return Err(format!("unexpected {} {}", request.method, request.path));
    }
    let form = form_fields(&request.body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let expected = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        (
            "subject_token_type",
            "urn:ietf:params:aws:token-type:aws4_request",
        ),
        ("audience", AUDIENCE),
    ];
    for (name, value) in expected {
        if field(name) != value {
            return Err(format!("{name} is {:?}, not {value:?}", field(name)));
        }
    }
    check_aws_subject_token(&percent_decode(field("subject_token")))
}

/// The subject token: JSON of a signed `POST` to STS `GetCallerIdentity`, its headers naming
/// the audience as `x-goog-cloud-target-resource`, signed (SigV4) with the role's secret.
fn check_aws_subject_token(json: &str) -> Result<(), String> {
    let token: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("subject token is not JSON: {e}"))?;
    let url = token["url"].as_str().ok_or("no url")?;
    let expected_url =
        format!("https://sts.{REGION}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    if url != expected_url || token["method"] != "POST" {
        return Err(format!("subject token asks {} {url}", token["method"]));
    }
    let headers: BTreeMap<String, String> = token["headers"]
        .as_array()
        .ok_or("no headers")?
        .iter()
        .filter_map(|h| {
            Some((
                h["key"].as_str()?.to_ascii_lowercase(),
                h["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let header = |name: &str| headers.get(name).map(String::as_str).unwrap_or_default();
    if header("x-goog-cloud-target-resource") != AUDIENCE {
        return Err("x-goog-cloud-target-resource is not the audience".to_owned());
    }
    if header("x-amz-security-token") != ROLE_SESSION {
        return Err("not the role's session token".to_owned());
    }
    let authorization = header("authorization");
    let date = header("x-amz-date");
    let signed: Vec<&str> = headers
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "authorization")
        .collect();
    let scope = format!(
        "{}/{REGION}/sts/aws4_request",
        date.get(..8).unwrap_or_default()
    );
    let canonical_headers: String = signed
        .iter()
        .map(|k| format!("{k}:{}\n", header(k).trim()))
        .collect();
    let canonical_request = format!(
        "POST\n/\nAction=GetCallerIdentity&Version=2011-06-15\n{canonical_headers}\n{}\n{}",
        signed.join(";"),
        sha256_hex(b"")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = format!("AWS4{ROLE_SECRET}").into_bytes();
    for part in [&date[..8.min(date.len())], REGION, "sts", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    let expected = format!(
        "AWS4-HMAC-SHA256 Credential={ROLE_ACCESS_KEY}/{scope}, SignedHeaders={}, \
         Signature={signature}",
        signed.join(";")
    );
    if authorization != expected {
        return Err(format!("bad SigV4 authorization: {authorization}"));
    }
    Ok(())
}

/// `generateAccessToken` of the service account, authorized by the federated token.
fn check_generate_access_token(request: &Recorded) -> Result<(), String> {
    let path = format!("/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken");
    if request.method != "POST" || request.path != path {
        return Err(format!("unexpected {} {}", request.method, request.path));
    }
    if request.header("authorization") != Some(&format!("Bearer {FEDERATED_TOKEN}")) {
        return Err("not authorized by the federated token".to_owned());
    }
    let body: serde_json::Value =
        serde_json::from_slice(&request.body).map_err(|e| format!("body is not JSON: {e}"))?;
    let scopes = body["scope"].as_array().ok_or("no scope")?;
    if !scopes
        .iter()
        .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
    {
        return Err(format!("scope {scopes:?}"));
    }
    Ok(())
}

fn expire_time_in_an_hour() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let (days, seconds) = (now / 86_400, now % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
