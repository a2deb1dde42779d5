//! AWS credentials and where they come from: the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or a profile of the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`; profile `AWS_PROFILE`, else
//! `default`), in the order AWS's SDKs try them
//! (https://docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// AWS credentials for SigV4.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl Credentials {
    /// From `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), if both are set.
    pub fn from_env() -> Option<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let access_key_id = var("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty())?;
        let secret_access_key = var("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty())?;
        let session_token = var("AWS_SESSION_TOKEN").filter(|v| !v.is_empty());
        Some(Credentials { access_key_id, secret_access_key, session_token })
    }

    /// A profile of a shared credentials file (INI: `[name]` sections of `key = value`).
    pub fn from_profile_file(path: &Path, profile: &str) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::InvalidInput(format!("reading {}: {error}", path.display()))),
        };
        let values = profile_values(&text, profile);
        Ok(Self::from_vars(|name| {
            let key = match name {
                "AWS_ACCESS_KEY_ID" => "aws_access_key_id",
                "AWS_SECRET_ACCESS_KEY" => "aws_secret_access_key",
                _ => "aws_session_token",
            };
            values.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        }))
    }

    /// The environment, then the shared credentials file; `None` if neither has any.
    pub fn from_default_chain() -> Result<Option<Self>> {
        if let Some(credentials) = Self::from_env() {
            return Ok(Some(credentials));
        }
        let Some(path) = shared_credentials_file() else { return Ok(None) };
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        Self::from_profile_file(&path, &profile)
    }
}

fn shared_credentials_file() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("AWS_SHARED_CREDENTIALS_FILE") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".aws").join("credentials"))
}

/// The `key = value` pairs of section `[profile]`.
fn profile_values(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut in_profile = false;
    let mut values = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
        } else if in_profile && let Some((key, value)) = line.split_once('=') {
            values.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_their_own_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n\
             # a comment\n[camera]\naws_access_key_id=AKCAMERA\naws_secret_access_key=s2\naws_session_token = t2\n",
        )
        .expect("written");
        let camera = Credentials::from_profile_file(&path, "camera").expect("reads").expect("found");
        assert_eq!((camera.access_key_id.as_str(), camera.secret_access_key.as_str()), ("AKCAMERA", "s2"));
        assert_eq!(camera.session_token.as_deref(), Some("t2"));
        let default = Credentials::from_profile_file(&path, "default").expect("reads").expect("found");
        assert_eq!(default.access_key_id, "AKDEFAULT");
        assert!(default.session_token.is_none());
        assert!(Credentials::from_profile_file(&path, "absent").expect("reads").is_none());
        assert!(Credentials::from_profile_file(&dir.path().join("nope"), "default").expect("no file").is_none());
    }

    #[test]
    fn the_environment_needs_both_halves_of_a_key() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert!(Credentials::from_vars(vars(&[("AWS_ACCESS_KEY_ID", "AK")])).is_none());
        let both = Credentials::from_vars(vars(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "s")]));
        assert_eq!(both.map(|c| c.access_key_id), Some("AK".to_string()));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let credentials =
            Credentials { access_key_id: "AK".into(), secret_access_key: "hidden".into(), session_token: None };
        assert!(!format!("{credentials:?}").contains("hidden"));
    }
}
