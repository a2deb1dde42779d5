//! The string to sign, the signing key derived from the secret, and the comparison.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::ALGORITHM;
use crate::authorization::{Authorization, Scope};
use crate::canonical::{PathEncoding, Request, canonical_request};
use crate::error::SigV4Error;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so new_from_slice cannot fail here.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `AWS4-HMAC-SHA256 \n <x-amz-date> \n <scope> \n <hex SHA-256 of the canonical request>`.
pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    let digest = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM}\n{amz_date}\n{}\n{digest}", scope.text())
}

/// The key for one day, region and service: HMAC chained from `AWS4<secret>`.
pub fn signing_key(secret: &str, scope: &Scope) -> [u8; 32] {
    let date = hmac(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
    let region = hmac(&date, scope.region.as_bytes());
    let service = hmac(&region, scope.service.as_bytes());
    hmac(&service, b"aws4_request")
}

pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> [u8; 32] {
    hmac(signing_key, string_to_sign.as_bytes())
}

/// Checks `authorization` against `request` with the caller's `secret`. `amz_date` is the
/// request's `X-Amz-Date` (the caller checks it against its clock). The signature must cover
/// `host`; the path is tried as the client sent it and, failing that, decoded once, since SDKs
/// differ in how many times they encode it.
pub fn verify(
    request: &Request,
    authorization: &Authorization,
    secret: &str,
    amz_date: &str,
) -> Result<(), SigV4Error> {
    if !authorization.signed_headers.iter().any(|name| name == "host") {
        return Err(SigV4Error::MissingSignedHeader(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    let key = signing_key(secret, &authorization.scope);
    for encoding in [PathEncoding::AsReceived, PathEncoding::Decoded] {
        let canonical = canonical_request(request, &authorization.signed_headers, true, encoding)?;
        let expected = signature(&key, &string_to_sign(amz_date, &authorization.scope, &canonical));
        if bool::from(expected.as_slice().ct_eq(&authorization.signature)) {
            return Ok(());
        }
    }
    Err(SigV4Error::Mismatch)
}
