//! Which destinations the server calls on a user's behalf (consumer webhooks, notification and
//! image-generation URLs): when the operator lists URL prefixes, only URLs under one of them;
//! and unless private destinations are allowed, only public addresses (address.rs). The address
//! check runs on the resolved addresses, every one of them, and a call connects only to the
//! addresses that passed (`Pinned`): a name that resolves elsewhere between the check and the
//! connection (DNS rebinding) gains nothing.

use std::net::{SocketAddr, ToSocketAddrs as _};

use super::address::classify;
use super::outbound_tls::OutboundTrust;
use super::webhook_url::{Target, WebhookUrl, redact};
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// Loopback, link-local, private, unspecified, multicast and broadcast addresses allowed. The
    /// open developer mode (loopback, no credentials) allows them; a server with credentials
    /// should not, so that an API caller cannot reach what only the server can.
    pub allow_private: bool,
    /// When not empty, a destination must start with one of these URLs (compared without
    /// userinfo, scheme and host in lower case, port 80 implied).
    pub allowed_prefixes: Vec<String>,
    /// The CAs an `https://` destination's certificate must chain to.
    pub trust: OutboundTrust,
}

impl Default for DestinationPolicy {
    /// Today's behaviour (any destination) until the server's configuration says otherwise.
    fn default() -> Self {
        DestinationPolicy { allow_private: true, allowed_prefixes: Vec::new(), trust: OutboundTrust::default() }
    }
}

/// Addresses that passed the check: the only thing a call may connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned(Vec<SocketAddr>);

impl Pinned {
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.0
    }
}

/// Why a call cannot reach its destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// The policy refuses it: retrying the same call cannot help.
    #[error("the destination is refused: {0}")]
    Refused(String),
    /// The name did not resolve (now).
    #[error("{0}")]
    Lookup(String),
}

impl DestinationPolicy {
    /// The check when a destination is configured: InvalidArgument naming `field` when `url` is
    /// not an http:// URL, is outside the allow-list, or names (or resolves now to) a refused
    /// address. A name that does not resolve yet passes: delivery checks again.
    pub fn check_configured(&self, url: &str, field: &str) -> Result<WebhookUrl, ApiError> {
        let refuse = |reason: String| ApiError::invalid(format!("{field} {} is refused: {reason}.", redact(url)));
        let target = Target::parse(url).map_err(refuse)?;
        self.check_prefix(&target).map_err(refuse)?;
        if !self.allow_private
            && let Ok(addresses) = (target.host.as_str(), target.port).to_socket_addrs()
        {
            self.check_addresses(&target.host, addresses.collect()).map_err(refuse)?;
        }
        Ok(WebhookUrl::new(url))
    }

    /// Resolves `target` once and checks every address it resolves to: at delivery time, since
    /// DNS may have changed since the destination was configured.
    pub async fn resolve(&self, target: &Target) -> Result<Pinned, Unreachable> {
        self.check_prefix(target).map_err(Unreachable::Refused)?;
        let host = &target.host;
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), target.port))
            .await
            .map_err(|e| Unreachable::Lookup(format!("{host} did not resolve: {e}")))?
            .collect();
        if addresses.is_empty() {
            return Err(Unreachable::Lookup(format!("{host} resolved to no address")));
        }
        self.check_addresses(host, addresses).map_err(Unreachable::Refused)
    }

    /// Every address must be allowed: one refused address refuses the name, since which of them
    /// a connection would use is not up to the check.
    fn check_addresses(&self, host: &str, addresses: Vec<SocketAddr>) -> Result<Pinned, String> {
        if self.allow_private {
            return Ok(Pinned(addresses));
        }
        for address in &addresses {
            let ip = address.ip();
            if let Some(class) = classify(ip) {
                let what = if ip.to_string() == host {
                    format!("{ip} is {class}")
                } else {
                    format!("{host} resolves to {ip}, {class}")
                };
                return Err(format!(
                    "{what}; the server calls only public addresses unless its configuration allows private destinations"
                ));
            }
        }
        Ok(Pinned(addresses))
    }

    fn check_prefix(&self, target: &Target) -> Result<(), String> {
        if self.allowed_prefixes.is_empty() {
            return Ok(());
        }
        if has_dot_segment(&target.path_and_query) {
            // The receiving server would resolve `/allowed/../other` outside the allowed folder.
            return Err("its path has a '.' or '..' segment".into());
        }
        let url = target.normalized();
        let allowed = self
            .allowed_prefixes
            .iter()
            .filter_map(|prefix| Target::parse(prefix).ok())
            .any(|prefix| url.starts_with(&prefix.normalized()));
        if allowed {
            return Ok(());
        }
        Err(format!("it does not start with an allowed destination prefix ({})", self.allowed_prefixes.join(", ")))
    }

    /// Every allowed prefix must be an http:// or https:// URL: for the configuration to refuse a typo at
    /// startup rather than have it match nothing.
    pub fn validate(&self) -> Result<(), String> {
        for prefix in &self.allowed_prefixes {
            Target::parse(prefix).map_err(|reason| format!("allowed destination prefix {prefix}: {reason}"))?;
        }
        Ok(())
    }
}

/// True when the path (not the query) has a `.` or `..` segment, `%2e` spellings included.
fn has_dot_segment(path_and_query: &str) -> bool {
    let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(prefixes: &[&str]) -> DestinationPolicy {
        DestinationPolicy {
            allow_private: false,
            allowed_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            ..DestinationPolicy::default()
        }
    }

    fn target(url: &str) -> Target {
        Target::parse(url).expect("an http URL")
    }

    #[test]
    fn the_allow_list_matches_whole_hosts_and_folders_without_userinfo() {
        let policy = strict(&["http://Hooks.Example.com", "http://10.0.0.5:8080/api/"]);
        for allowed in [
            "http://hooks.example.com/",
            "http://HOOKS.example.com/frames?x=1",
            "http://user:pw@hooks.example.com/frames",
            "http://hooks.example.com:80/frames",
            "http://10.0.0.5:8080/api/frames",
        ] {
            assert_eq!(policy.check_prefix(&target(allowed)), Ok(()), "{allowed}");
        }
        for refused in [
            "http://hooks.example.com.evil.net/",
            "http://hooks.example.com@evil.net/",
            "http://hooks.example.com:8080/",
            "http://10.0.0.5:8080/apis",
            "http://10.0.0.5:8080/api/../admin",
            "http://10.0.0.5:8080/api/%2E%2e/admin",
            "http://10.0.0.5/api/",
        ] {
            let error = policy.check_prefix(&target(refused)).expect_err(refused);
            assert!(error.contains("prefix") || error.contains("segment"), "{refused}: {error}");
        }
        assert_eq!(strict(&[]).check_prefix(&target("http://anything.example/")), Ok(()));
        assert!(strict(&["ftp://x/"]).validate().is_err());
        assert_eq!(strict(&["http://x/"]).validate(), Ok(()));
        assert_eq!(strict(&["https://x/"]).validate(), Ok(()));
        // An https prefix does not admit the http URL of the same host, nor the other way round.
        assert!(strict(&["https://x/"]).check_prefix(&target("http://x/a")).is_err());
        assert_eq!(strict(&["https://x/"]).check_prefix(&target("https://x:443/a")), Ok(()));
    }

    #[test]
    fn one_refused_address_among_those_a_name_resolves_to_refuses_it() {
        let public: SocketAddr = "93.184.216.34:80".parse().expect("address");
        let loopback: SocketAddr = "127.0.0.1:80".parse().expect("address");
        let mapped: SocketAddr = "[::ffff:169.254.169.254]:80".parse().expect("address");
        let policy = strict(&[]);
        assert_eq!(policy.check_addresses("example.com", vec![public]), Ok(Pinned(vec![public])));
        let error = policy.check_addresses("rebind.example", vec![public, loopback]).expect_err("refused");
        assert!(error.contains("rebind.example resolves to 127.0.0.1, a loopback address"), "{error}");
        let error = policy.check_addresses("::ffff:169.254.169.254", vec![mapped]).expect_err("refused");
        assert!(error.contains("link-local"), "{error}");
        let open = DestinationPolicy::default();
        assert_eq!(open.check_addresses("localhost", vec![loopback]), Ok(Pinned(vec![loopback])));
    }

    #[test]
    fn configuration_refuses_literal_and_resolved_private_hosts_with_invalid_argument() {
        let policy = strict(&[]);
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]:9000/",
            "http://user:s3cret@10.1.2.3/hook",
            "http://localhost:9000/hook",
            "http://2130706433/",
        ] {
            let error = policy.check_configured(url, "Webhook.Url").expect_err(url);
            assert_eq!(error.kind, crate::error::ErrorType::InvalidArgument, "{url}");
            let message = error.message.unwrap_or_default();
            assert!(message.starts_with("Webhook.Url http://") && message.contains("public addresses"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        assert!(policy.check_configured("http://93.184.216.34/hook", "Webhook.Url").is_ok());
        assert!(DestinationPolicy::default().check_configured("http://127.0.0.1:9/hook", "Webhook.Url").is_ok());
        let error = policy.check_configured("ftp://93.184.216.34/", "Webhook.Url").expect_err("ftp");
        assert!(error.message.unwrap_or_default().contains("must be an http:// or https:// URL"));
        assert!(policy.check_configured("https://93.184.216.34/hook", "Webhook.Url").is_ok(), "https is a destination");
    }

    #[tokio::test]
    async fn delivery_resolves_and_refuses_a_private_destination() {
        let error = strict(&[]).resolve(&target("http://127.0.0.1:9/hook")).await.expect_err("refused");
        assert!(matches!(&error, Unreachable::Refused(reason) if reason.contains("loopback")), "{error}");
        let pinned = DestinationPolicy::default().resolve(&target("http://127.0.0.1:9/hook")).await.expect("allowed");
        assert_eq!(pinned.addresses(), &["127.0.0.1:9".parse::<SocketAddr>().expect("address")]);
        let listed = strict(&["http://93.184.216.34/"]);
        assert!(matches!(listed.resolve(&target("http://8.8.8.8/")).await, Err(Unreachable::Refused(_))));
    }
}
