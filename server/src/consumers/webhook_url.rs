//! A destination URL as a consumer stores it, and its parts as a call needs them. The URL may
//! carry credentials (`http://user:pass@host/`, a token in the query), so `Debug` and `Display`
//! show it redacted: a URL that reaches a log line, a dead letter or an error message never gives
//! them away. Only `expose` (the stored definition, the request itself) shows the whole text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stored as the plain string (serde transparent), as before this type existed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn new(text: impl Into<String>) -> Self {
        WebhookUrl(text.into())
    }

    /// The whole URL, credentials included: for the request and the stored definition only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its userinfo and query replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebhookUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Where the authority of `url` starts and ends (after `scheme://`, up to the path, query or
/// fragment).
fn authority_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    Some((start, end))
}

/// `url` with the userinfo and the query hidden; text that is not a URL is hidden whole unless
/// it cannot hold a secret (no `@`, no `?`).
pub fn redact(url: &str) -> String {
    let Some((start, end)) = authority_span(url) else {
        return if url.contains(['@', '?']) { "***".into() } else { url.to_string() };
    };
    let mut out = url[..start].to_string();
    let authority = &url[start..end];
    match authority.rfind('@') {
        Some(at) => out.push_str(&format!("***@{}", &authority[at + 1..])),
        None => out.push_str(authority),
    }
    out.push_str(&redact_query(&url[end..]));
    out
}

/// `path?query` with the query replaced by `***`.
fn redact_query(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => path_and_query.to_string(),
    }
}

/// An `http://` URL taken apart for one call.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as the URL writes it, lower-cased, without brackets around an IPv6 address.
    pub host: String,
    pub port: u16,
    /// The explicit port, for the Host header (and the allow-list) as the URL writes it.
    pub explicit_port: Option<u16>,
    /// The origin-form request target: path and query, `/` when empty.
    pub path_and_query: String,
    /// The decoded `user:password` of the URL's userinfo, sent as HTTP Basic authentication.
    pub userinfo: Option<Vec<u8>>,
    /// `https://`: the connection is TLS, checked against the host name.
    pub tls: bool,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path_and_query", &redact_query(&self.path_and_query))
            .field("userinfo", &self.userinfo.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Target {
    /// Parses an `http://` or `https://` URL with a host; the error says what is wrong, without
    /// the URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let tls = url.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        if !tls && !url.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://")) {
            return Err("it must be an http:// or https:// URL".into());
        }
        let uri: axum::http::Uri = url.parse().map_err(|e| format!("it is not a URL ({e})"))?;
        let authority = uri.authority().ok_or("it has no host")?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if host.is_empty() {
            return Err("it has no host".into());
        }
        let (userinfo, host_port) = match authority.as_str().rsplit_once('@') {
            Some((info, host_port)) => (Some(percent_decode(info)), host_port),
            None => (None, authority.as_str()),
        };
        let explicit_port = port_of(host_port)?;
        Ok(Target {
            host,
            port: explicit_port.unwrap_or(if tls { 443 } else { 80 }),
            explicit_port,
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            userinfo,
            tls,
        })
    }

    /// `host[:port]` for the Host header: the userinfo stays out, and brackets go back around an
    /// IPv6 address.
    pub fn host_header(&self) -> String {
        let host = self.bracketed_host();
        let default_port = if self.tls { 443 } else { 80 };
        match self.explicit_port {
            Some(port) if port != default_port => format!("{host}:{port}"),
            _ => host,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The URL without its userinfo and default port, scheme and host lower-cased: what the
    /// allow-list matches.
    pub fn normalized(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.host_header(), self.path_and_query)
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() }
    }
}

/// The port of `host[:port]`. The http crate reads a port beyond 65535 as no port at all, which
/// would send the call to port 80 instead of refusing the URL.
fn port_of(host_port: &str) -> Result<Option<u16>, String> {
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port.find(':').map_or("", |colon| &host_port[colon..]),
    };
    match after_host.strip_prefix(':') {
        None => Ok(None),
        Some(port) => port.parse().map(Some).map_err(|_| format!("its port {port} is not a number from 0 to 65535")),
    }
}

/// `%XX` escapes decoded (a userinfo may escape `@` or `:`); anything else is kept as is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_userinfo_and_the_query() {
        let url = WebhookUrl::new("http://alice:s3cret@hooks.example.com:8080/frames?token=t0ken#x");
        for shown in [format!("{url:?}"), url.to_string()] {
            assert!(!shown.contains("s3cret") && !shown.contains("t0ken") && !shown.contains("alice"), "{shown}");
            assert!(shown.contains("http://***@hooks.example.com:8080/frames?***"), "{shown}");
        }
        assert_eq!(url.expose(), "http://alice:s3cret@hooks.example.com:8080/frames?token=t0ken#x");
        assert_eq!(redact("http://127.0.0.1:9/hook"), "http://127.0.0.1:9/hook");
        assert_eq!(redact("not a url with a@secret"), "***");
    }

    #[test]
    fn a_target_has_its_host_port_path_and_decoded_userinfo() {
        let target = Target::parse("HTTP://User:p%40ss@Hooks.Example.COM:8080/a/b?x=1").expect("parses");
        assert_eq!(target.host, "hooks.example.com");
        assert_eq!((target.port, target.host_header()), (8080, "hooks.example.com:8080".to_string()));
        assert_eq!(target.path_and_query, "/a/b?x=1");
        assert_eq!(target.userinfo.as_deref(), Some(&b"User:p@ss"[..]));
        assert_eq!(target.normalized(), "http://hooks.example.com:8080/a/b?x=1");
        assert!(!format!("{target:?}").contains("p@ss"));

        let v6 = Target::parse("http://[::1]/").expect("parses");
        assert_eq!((v6.host.as_str(), v6.port, v6.host_header()), ("::1", 80, "[::1]".to_string()));
        assert_eq!(Target::parse("http://h").expect("parses").path_and_query, "/");
        assert_eq!(Target::parse("http://[::1]:8080/").expect("parses").port, 8080);
        for bad in ["ftp://h/", "http://", "http:///x", "http://h:99999/", "http://[::1]:70000/"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
