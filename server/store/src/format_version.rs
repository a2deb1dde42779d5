//! The version of the on-disk layout, kept in the meta column family so that a build never
//! reads (or, worse, writes) a data dir laid out in a way it does not know.
//!
//! Version 1 is the layout described in keys.rs and segments.rs. Data dirs written before the
//! version was stored have that same layout, so a missing version means 1; it is stamped on the
//! first open. A later layout change bumps `FORMAT_VERSION` and either reads the older version
//! too or refuses it with a message naming what to run.

use std::path::Path;

use rocksdb::DB;

use crate::error::{Result, StoreError};
use crate::keys::{CF_META, META_FORMAT_VERSION};
use crate::local::{cf, synced};

/// The newest layout this build writes; it reads every version from 1 up to this one.
pub const FORMAT_VERSION: u32 = 1;

/// Refuses a data dir of a layout this build cannot read, before anything opens it for writing
/// (which could add column families or rewrite RocksDB's own files in a layout it does not
/// know). A directory with no database yet passes.
pub(crate) fn check_before_open(path: &Path) -> Result<()> {
    if !path.join("CURRENT").exists() {
        return Ok(());
    }
    let db = DB::open_cf_for_read_only(&rocksdb::Options::default(), path, [CF_META], false)?;
    match stored(&db)? {
        Some(found) if !(1..=FORMAT_VERSION).contains(&found) => {
            Err(StoreError::FormatUnsupported { found, supported: FORMAT_VERSION })
        }
        _ => Ok(()),
    }
}

/// Stamps the version on a data dir that has none (a new one, or one written before versions
/// were stored, whose layout is version 1).
pub(crate) fn stamp(db: &DB) -> Result<()> {
    if stored(db)?.is_none() {
        db.put_cf_opt(cf(db, CF_META), META_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes(), &synced())?;
    }
    Ok(())
}

fn stored(db: &DB) -> Result<Option<u32>> {
    let Some(bytes) = db.get_cf(cf(db, CF_META), META_FORMAT_VERSION)? else { return Ok(None) };
    <[u8; 4]>::try_from(bytes.as_slice())
        .map(|b| Some(u32::from_be_bytes(b)))
        .map_err(|_| StoreError::CorruptEntry { key_hex: hex::encode(META_FORMAT_VERSION), reason: "not 4 bytes" })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keys::ALL_CFS;
    use crate::{Engine, EngineOptions, SystemClock};

    fn open(path: &std::path::Path) -> Result<Engine> {
        Engine::open(path, Arc::new(SystemClock), EngineOptions::default())
    }

    #[test]
    fn a_new_data_dir_is_stamped_and_opens_again() {
        let dir = tempfile::tempdir().expect("test step");
        drop(open(dir.path()).expect("test step"));
        drop(open(dir.path()).expect("test step"));
        let db = DB::open_cf(&rocksdb::Options::default(), dir.path(), ALL_CFS).expect("test step");
        assert_eq!(
            db.get_cf(cf(&db, CF_META), META_FORMAT_VERSION).expect("test step"),
            Some(FORMAT_VERSION.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn a_data_dir_from_a_newer_layout_is_refused_with_the_versions_named() {
        let dir = tempfile::tempdir().expect("test step");
        drop(open(dir.path()).expect("test step"));
        {
            let db = DB::open_cf(&rocksdb::Options::default(), dir.path(), ALL_CFS).expect("test step");
            db.put_cf(cf(&db, CF_META), META_FORMAT_VERSION, (FORMAT_VERSION + 1).to_be_bytes()).expect("test step");
        }
        let error = open(dir.path()).expect_err("refused");
        assert!(matches!(error, StoreError::FormatUnsupported { found, .. } if found == FORMAT_VERSION + 1));
        let message = error.to_string();
        assert!(message.contains(&format!("version {}", FORMAT_VERSION + 1)), "{message}");
        assert!(message.contains("framelog restore"), "{message}");
    }
}
