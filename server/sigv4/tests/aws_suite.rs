//! AWS's published SigV4 cases (the `Authorization` header form): for every case the canonical
//! request, the string to sign and the signature computed from the signed request equal AWS's, a
//! signed request verifies, and changing any signed part of it makes verification fail.
//!
//! The cases are AWS's test data, not ours: their folder is `FRAMELOG_SIGV4_SUITE`, else
//! `vendor/sigv4-test-suite/v4` under `FRAMELOG_SHARED_DIR` (set for every cargo run in
//! .cargo/config.toml). A missing suite fails the test.

use std::path::{Path, PathBuf};

use framelog_sigv4::{
    Authorization, PathEncoding, Request, SigV4Error, canonical_request, parse_authorization, signature, signing_key,
    string_to_sign, verify,
};
use sha2::{Digest, Sha256};

fn suite_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FRAMELOG_SIGV4_SUITE") {
        return PathBuf::from(dir);
    }
    let shared = std::env::var_os("FRAMELOG_SHARED_DIR").expect("FRAMELOG_SHARED_DIR (see .cargo/config.toml)");
    Path::new(&shared).join("vendor/sigv4-test-suite/v4")
}

/// A signed request file: request line, headers (continuation lines folded in), blank, body.
struct SignedRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse_request(text: &str) -> SignedRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().expect("a request line");
    let target = request_line.split(' ').skip(1).collect::<Vec<_>>();
    // The target may contain spaces (get-space-*): everything between the method and the version.
    let target = target[..target.len() - 1].join(" ");
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    SignedRequest {
        method: request_line.split(' ').next().unwrap_or_default().to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

impl SignedRequest {
    /// A header's value, trimmed; names in any case.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }

    /// What the client declared in `x-amz-content-sha256`, else the body's hash.
    fn payload_sha256(&self) -> String {
        self.header("x-amz-content-sha256").map_or_else(|| hex::encode(Sha256::digest(&self.body)), str::to_string)
    }

    fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    fn request<'a>(&'a self, headers: &'a [(&'a str, &'a str)], payload_sha256: &'a str) -> Request<'a> {
        Request { method: &self.method, path: &self.path, query: &self.query, headers, payload_sha256 }
    }

    fn authorization(&self) -> Result<Authorization, SigV4Error> {
        parse_authorization(self.header("authorization").expect("an Authorization header"))
    }

    fn amz_date(&self) -> &str {
        self.header("x-amz-date").expect("X-Amz-Date")
    }
}

struct Case {
    name: String,
    dir: PathBuf,
    context: serde_json::Value,
}

impl Case {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_else(|e| panic!("{}/{name}: {e}", self.name))
    }

    fn secret(&self) -> String {
        self.context["credentials"]["secret_access_key"].as_str().expect("a secret").to_string()
    }
}

fn cases() -> Vec<Case> {
    let dir = suite_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("the SigV4 suite at {}: {e}", dir.display()));
    let mut cases: Vec<Case> = entries
        .flatten()
        .filter(|entry| entry.path().join("header-signed-request.txt").exists())
        .map(|entry| {
            let context = std::fs::read_to_string(entry.path().join("context.json")).expect("context.json");
            Case {
                name: entry.file_name().to_string_lossy().into_owned(),
                dir: entry.path(),
                context: serde_json::from_str(&context).expect("context.json is JSON"),
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 30, "found {} cases in {}", cases.len(), dir.display());
    cases
}

/// Checks one signed request; returns the error verification gave.
fn check(case: &Case, signed: &SignedRequest) -> Result<(), SigV4Error> {
    let (headers, payload) = (signed.header_pairs(), signed.payload_sha256());
    verify(&signed.request(&headers, &payload), &signed.authorization()?, &case.secret(), signed.amz_date())
}

#[test]
fn canonical_request_string_to_sign_and_signature_match_aws_for_every_case() {
    for case in cases() {
        let signed = parse_request(&case.file("header-signed-request.txt"));
        let authorization = signed.authorization().expect("parses");
        let (headers, payload) = (signed.header_pairs(), signed.payload_sha256());
        let request = signed.request(&headers, &payload);
        let normalize = case.context["normalize"].as_bool().unwrap_or(true);
        let canonical = canonical_request(&request, &authorization.signed_headers, normalize, PathEncoding::AsReceived)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(canonical, case.file("header-canonical-request.txt"), "{}: canonical request", case.name);
        let sts = string_to_sign(signed.amz_date(), &authorization.scope, &canonical);
        assert_eq!(sts, case.file("header-string-to-sign.txt"), "{}: string to sign", case.name);
        let computed = signature(&signing_key(&case.secret(), &authorization.scope), &sts);
        assert_eq!(hex::encode(computed), case.file("header-signature.txt").trim(), "{}: signature", case.name);
    }
}

#[test]
fn every_signed_request_verifies_and_any_change_to_a_signed_part_fails() {
    let mut checked = 0;
    for case in cases().into_iter().filter(|c| c.context["normalize"].as_bool().unwrap_or(true)) {
        let signed = parse_request(&case.file("header-signed-request.txt"));
        assert_eq!(check(&case, &signed), Ok(()), "{}: the signed request verifies", case.name);
        let mut other_method = parse_request(&case.file("header-signed-request.txt"));
        other_method.method = if signed.method == "GET" { "POST".into() } else { "GET".into() };
        assert_eq!(check(&case, &other_method), Err(SigV4Error::Mismatch), "{}: method", case.name);
        let mut other_path = parse_request(&case.file("header-signed-request.txt"));
        other_path.path.push('x');
        assert_eq!(check(&case, &other_path), Err(SigV4Error::Mismatch), "{}: path", case.name);
        let mut other_query = parse_request(&case.file("header-signed-request.txt"));
        other_query.query.push_str("&extra=1");
        assert_eq!(check(&case, &other_query), Err(SigV4Error::Mismatch), "{}: query", case.name);
        let mut other_date = parse_request(&case.file("header-signed-request.txt"));
        for (name, value) in &mut other_date.headers {
            if name.eq_ignore_ascii_case("x-amz-date") {
                *value = "20150830T123601Z".into();
            }
        }
        assert_eq!(check(&case, &other_date), Err(SigV4Error::Mismatch), "{}: x-amz-date", case.name);
        checked += 1;
    }
    assert!(checked >= 25, "{checked} cases verified");
}

#[test]
fn a_wrong_secret_never_verifies_and_an_unsigned_host_is_refused() {
    let case = cases().into_iter().find(|c| c.name == "get-vanilla").expect("get-vanilla");
    let signed = parse_request(&case.file("header-signed-request.txt"));
    let wrong = Case { context: serde_json::json!({"credentials": {"secret_access_key": "not-the-secret"}}), ..case };
    assert_eq!(check(&wrong, &signed), Err(SigV4Error::Mismatch));
    let mut no_host = signed;
    for (name, value) in &mut no_host.headers {
        if name.eq_ignore_ascii_case("authorization") {
            *value = value.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date");
        }
    }
    assert!(matches!(check(&wrong, &no_host), Err(SigV4Error::MissingSignedHeader(_))));
}
