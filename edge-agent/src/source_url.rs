//! A stream's source URL, which may carry a camera's password (`rtsp://user:pass@host/`): it
//! prints with the password masked, and can mask it in any text (GStreamer errors quote URLs).

use serde::Deserialize;

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SourceUrl(String);

impl SourceUrl {
    /// The password of `scheme://user:password@host...`, if any.
    fn password(&self) -> Option<&str> {
        let (_, rest) = self.0.split_once("://")?;
        let authority = rest.split('/').next()?;
        let (userinfo, _) = authority.rsplit_once('@')?;
        userinfo.split_once(':').map(|(_, password)| password).filter(|p| !p.is_empty())
    }

    /// `text` with this URL's password replaced by `***`.
    pub fn redact_in(&self, text: &str) -> String {
        match self.password() {
            Some(password) => text.replace(password, "***"),
            None => text.to_string(),
        }
    }
}

impl std::ops::Deref for SourceUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redact_in(&self.0))
    }
}

impl std::fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redact_in(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> SourceUrl {
        SourceUrl(text.to_string())
    }

    #[test]
    fn passwords_never_print() {
        let camera = url("rtsp://admin:s3cret@10.0.0.5:554/main");
        assert_eq!(format!("{camera}"), "rtsp://admin:***@10.0.0.5:554/main");
        assert!(!format!("{camera:?}").contains("s3cret"));
        assert_eq!(
            camera.redact_in("could not open rtsp://admin:s3cret@10.0.0.5"),
            "could not open rtsp://admin:***@10.0.0.5"
        );
        assert_eq!(format!("{}", url("rtsp://10.0.0.5/main")), "rtsp://10.0.0.5/main");
        assert_eq!(format!("{}", url("file:///video/a@b.mkv")), "file:///video/a@b.mkv");
        assert!(camera.starts_with("rtsp://"), "reads as the URL it is");
    }
}
