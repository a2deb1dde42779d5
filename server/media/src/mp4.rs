//! Fragmented MP4 ingest: ISO BMFF box reading and the fMP4 → fragment splitter.

mod boxes;
mod fragmenter;
mod init;

pub use fragmenter::Mp4Fragmenter;
