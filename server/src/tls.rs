//! HTTPS: a rustls server configuration from PEM files (ALPN h2 and http/1.1), and the
//! development certificates `framelog cert --dev` writes (a local CA and a localhost
//! certificate). The listener that runs the handshakes is in listener.rs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The `[tls]` settings: both files or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}")]
    Read { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the certificate and key do not make a TLS configuration")]
    Config(#[from] rustls::Error),
    #[error("generating a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl TlsSettings {
    /// The server configuration: certificate chain and key from PEM, h2 preferred over http/1.1.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let read_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Read { path, source }
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .map_err(read_error(&self.cert_file))?
            .collect::<Result<_, _>>()
            .map_err(read_error(&self.cert_file))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(self.cert_file.clone()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(read_error(&self.key_file))?;
        // ring rather than aws-lc-rs: no C/CMake build of aws-lc in every cold build
        // (docs/decisions.md); rustls marks it deprecated only for lacking post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// What `framelog cert --dev` writes.
#[derive(Debug)]
pub struct DevCertificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server-key.pem` into `directory`: a new local CA and a
/// certificate it signs for `localhost`, `127.0.0.1` and `::1` (ECDSA P-256). Clients trust
/// `ca.pem`; the CA's own key is not kept, so it can sign nothing else.
pub fn write_dev_certificates(directory: &Path) -> Result<DevCertificates, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Framelog development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid_for_a_year(&mut ca_params);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    valid_for_a_year(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &Issuer::new(ca_params, ca_key))?;
    let written = DevCertificates {
        ca: directory.join("ca.pem"),
        cert: directory.join("server.pem"),
        key: directory.join("server-key.pem"),
    };
    let write = |path: &Path, text: &str, private: bool| {
        let mode = if private { 0o600 } else { 0o644 };
        crate::file_write::replace_file(path, text.as_bytes(), mode)
            .map_err(|source| TlsError::Write { path: path.into(), source })
    };
    std::fs::create_dir_all(directory).map_err(|source| TlsError::Write { path: directory.into(), source })?;
    write(&written.ca, &ca_cert.pem(), false)?;
    write(&written.cert, &cert.pem(), false)?;
    write(&written.key, &key.serialize_pem(), true)?;
    Ok(written)
}

/// From yesterday (clock differences) for a year: development certificates should not outlive
/// the machine they were made on, and a bounded validity is what browsers expect.
fn valid_for_a_year(params: &mut rcgen::CertificateParams) {
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = crate::civil_date::civil_from_days((now_secs / 86_400) as i64 - 1);
    let date = |year: i64| rcgen::date_time_ymd(year as i32, month as u8, day.min(28) as u8);
    params.not_before = date(year);
    params.not_after = date(year + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificates_load_into_a_server_config_offering_h2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_dev_certificates(dir.path()).expect("written");
        let settings = TlsSettings { cert_file: written.cert, key_file: written.key.clone() };
        let config = settings.server_config().expect("loads");
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&written.key).expect("key").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_missing_or_empty_certificate_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"").expect("written");
        let settings = TlsSettings { cert_file: empty.clone(), key_file: empty };
        assert!(matches!(settings.server_config(), Err(TlsError::NoCertificate(_))));
        let missing = TlsSettings { cert_file: dir.path().join("nope.pem"), key_file: dir.path().join("nope.pem") };
        assert!(matches!(missing.server_config(), Err(TlsError::Read { .. })));
    }
}
