//! The canonical request: method, URI, query, the signed headers and the payload hash, each in
//! the one form both sides compute.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::error::SigV4Error;

/// Everything but AWS's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is percent-encoded.
const AWS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The parts of a received request that a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path exactly as received (clients may have percent-encoded it).
    pub path: &'a str,
    /// The query string without its `?`, exactly as received.
    pub query: &'a str,
    /// Every header as received, names in any case; a name may repeat.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body, or what the client declared in `x-amz-content-sha256`
    /// (including `UNSIGNED-PAYLOAD`).
    pub payload_sha256: &'a str,
}

/// How the client encoded the path before signing: services other than S3 encode the path as it
/// goes on the wire (so an already encoded path is encoded twice); some clients encode once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEncoding {
    /// Encode the path as received (`%` becomes `%25`).
    AsReceived,
    /// Decode the received path first, then encode it once.
    Decoded,
}

/// The canonical request for `request`, covering `signed_headers` (lower-case, sorted).
pub fn canonical_request(
    request: &Request,
    signed_headers: &[String],
    normalize_path: bool,
    path_encoding: PathEncoding,
) -> Result<String, SigV4Error> {
    let mut out = String::with_capacity(256);
    out.push_str(request.method);
    out.push('\n');
    out.push_str(&canonical_uri(request.path, normalize_path, path_encoding));
    out.push('\n');
    out.push_str(&canonical_query(request.query));
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&header_value(request.headers, name)?);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(request.payload_sha256);
    Ok(out)
}

fn canonical_uri(path: &str, normalize: bool, encoding: PathEncoding) -> String {
    let decoded;
    let path = match encoding {
        PathEncoding::AsReceived => path,
        PathEncoding::Decoded => {
            decoded = percent_decode_str(path).decode_utf8_lossy().into_owned();
            &decoded
        }
    };
    let path = if normalize {
        normalized(path)
    } else if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    };
    path.split('/').map(|segment| utf8_percent_encode(segment, AWS_ENCODE).to_string()).collect::<Vec<_>>().join("/")
}

/// Removes empty, `.` and `..` segments (RFC 3986 dot-segment removal, and collapsed slashes),
/// keeping a trailing slash.
fn normalized(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let trailing = (path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..")) && !segments.is_empty();
    let mut out = format!("/{}", segments.join("/"));
    if trailing {
        out.push('/');
    }
    out
}

/// Parameters decoded then re-encoded the AWS way, sorted by name then value, `name=value`
/// joined with `&` (a parameter without `=` has an empty value).
fn canonical_query(query: &str) -> String {
    let encode = |text: &str| {
        let decoded = percent_decode_str(text).decode_utf8_lossy();
        utf8_percent_encode(&decoded, AWS_ENCODE).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(name), encode(value))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

/// Every value of header `name` in the order received, each trimmed with inner runs of white
/// space collapsed to one space, joined with commas.
fn header_value(headers: &[(&str, &str)], name: &str) -> Result<String, SigV4Error> {
    let values: Vec<String> = headers
        .iter()
        .filter(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    if values.is_empty() {
        return Err(SigV4Error::MissingSignedHeader(format!("The signed header '{name}' is not in the request.")));
    }
    Ok(values.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_like_rfc_3986_and_keep_a_trailing_slash() {
        assert_eq!(normalized("//example//"), "/example/");
        assert_eq!(normalized("/example1/example2/../.."), "/");
        assert_eq!(normalized("/./"), "/");
        assert_eq!(normalized(""), "/");
        assert_eq!(normalized("/a/./b/../c"), "/a/c");
    }

    #[test]
    fn paths_encode_as_received_or_once_after_decoding() {
        assert_eq!(canonical_uri("/a%20b", true, PathEncoding::AsReceived), "/a%2520b");
        assert_eq!(canonical_uri("/a%20b", true, PathEncoding::Decoded), "/a%20b");
        assert_eq!(canonical_uri("/example space/", true, PathEncoding::AsReceived), "/example%20space/");
    }

    #[test]
    fn query_parameters_are_reencoded_and_sorted() {
        assert_eq!(canonical_query("b=2&a=1&a=0&c"), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("x=a%2Bb&y=a+b"), "x=a%2Bb&y=a%2Bb");
    }
}
