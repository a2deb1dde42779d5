//! The `Authorization` header of a SigV4 request:
//! `AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/<service>/aws4_request,
//! SignedHeaders=<a;b;c>, Signature=<64 hex digits>`.

use crate::ALGORITHM;
use crate::error::SigV4Error;

/// The credential scope: the day, region and service a signature is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `yyyymmdd`.
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    /// `yyyymmdd/region/service/aws4_request`, as it appears in the string to sign.
    pub fn text(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub scope: Scope,
    /// Lower-case header names, in the order the client listed them (which must be sorted).
    pub signed_headers: Vec<String>,
    /// The 32-byte signature, decoded from hex.
    pub signature: Vec<u8>,
}

fn incomplete(what: &str) -> SigV4Error {
    SigV4Error::Incomplete(format!(
        "Authorization header requires '{what}' parameter. Authorization={ALGORITHM} Credential=..., \
         SignedHeaders=..., Signature=..."
    ))
}

/// Parses the header; every part is required and the credential must have its five fields.
pub fn parse_authorization(header: &str) -> Result<Authorization, SigV4Error> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| SigV4Error::Incomplete(format!("Authorization header must start with {ALGORITHM}.")))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else { continue };
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;
    let mut fields = credential.rsplitn(5, '/');
    let (terminator, service, region, date, access_key_id) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next());
    let (Some("aws4_request"), Some(service), Some(region), Some(date), Some(access_key_id)) =
        (terminator, service, region, date, access_key_id)
    else {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should be scoped to a valid region, service and date, and end with aws4_request: \
             '{credential}'."
        )));
    };
    if access_key_id.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigV4Error::Incomplete(format!("Credential is not well formed: '{credential}'.")));
    }
    let signature = hex::decode(signature)
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| SigV4Error::Incomplete("Signature must be 64 hexadecimal digits.".into()))?;
    let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_ascii_lowercase).collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(incomplete("SignedHeaders"));
    }
    Ok(Authorization {
        access_key_id: access_key_id.to_string(),
        scope: Scope { date: date.to_string(), region: region.to_string(), service: service.to_string() },
        signed_headers,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNATURE: &str = "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac";

    #[test]
    fn a_well_formed_header_parses_into_its_parts() {
        let header = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={SIGNATURE}"
        );
        let parsed = parse_authorization(&header).expect("parses");
        assert_eq!(parsed.access_key_id, "AKIDEXAMPLE");
        assert_eq!(parsed.scope.text(), "20150830/us-east-1/service/aws4_request");
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(hex::encode(&parsed.signature), SIGNATURE);
    }

    #[test]
    fn missing_or_malformed_parts_are_incomplete_signatures() {
        let cases = [
            "AWS4-HMAC-SHA256".to_string(),
            "Basic dXNlcjpwYXNz".to_string(),
            "AWS4-HMAC-SHA256 Credential=x".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/s/aws4_request, SignedHeaders=host, Signature={SIGNATURE}"
            ),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s/aws5, SignedHeaders=host, Signature={SIGNATURE}"
            ),
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s/aws4_request, SignedHeaders=host, Signature=zz"
                .to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s/aws4_request, SignedHeaders=, Signature={SIGNATURE}"
            ),
        ];
        for case in cases {
            assert!(matches!(parse_authorization(&case), Err(SigV4Error::Incomplete(_))), "{case}");
        }
    }
}
