//! CompressionFormat: how an object's bytes are written, and the file extension Firehose gives
//! each (<https://docs.aws.amazon.com/firehose/latest/dev/create-destination.html>).

use std::io::Write;

/// The formats this server writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    /// A ZIP archive holding the object's bytes as one deflated entry.
    Zip,
    /// The Snappy framing format (`snzip`, `python-snappy`'s stream format).
    Snappy,
    /// Hadoop's block format: per block, the uncompressed and compressed lengths (4 bytes each,
    /// big-endian) and a raw Snappy block, as Hadoop's SnappyCodec reads.
    HadoopSnappy,
}

/// Hadoop's SnappyCodec reads blocks of at most this much uncompressed data by default.
const HADOOP_BLOCK_BYTES: usize = 256 << 10;

impl Compression {
    /// The API's name (note `Snappy`'s case, as the model spells it).
    pub fn parse(name: &str) -> Result<Compression, String> {
        Ok(match name {
            "UNCOMPRESSED" => Compression::Uncompressed,
            "GZIP" => Compression::Gzip,
            "ZIP" => Compression::Zip,
            "Snappy" => Compression::Snappy,
            "HADOOP_SNAPPY" => Compression::HadoopSnappy,
            other => return Err(format!("CompressionFormat {other} is not supported by this server.")),
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy | Compression::HadoopSnappy => ".snappy",
        }
    }

    /// `bytes` as the format writes them; a ZIP archive's one entry is named `entry_name`.
    pub fn compress(self, bytes: &[u8], entry_name: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::Zip => zip_archive(bytes, entry_name),
            Compression::Uncompressed => Ok(bytes.to_vec()),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(bytes)?;
                encoder.finish()
            }
            Compression::Snappy => {
                let mut encoder = snap::write::FrameEncoder::new(Vec::new());
                encoder.write_all(bytes)?;
                encoder.into_inner().map_err(|e| e.into_error())
            }
            Compression::HadoopSnappy => hadoop_snappy(bytes),
        }
    }
}

/// The archive's bytes depend only on `bytes` and the name (its entry's time is ZIP's epoch,
/// not the clock), so a buffer written again after a crash is the same object.
fn zip_archive(bytes: &[u8], entry_name: &str) -> std::io::Result<Vec<u8>> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
    let mut archive = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    archive.start_file(entry_name, options).map_err(std::io::Error::other)?;
    archive.write_all(bytes)?;
    Ok(archive.finish().map_err(std::io::Error::other)?.into_inner())
}

fn hadoop_snappy(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = snap::raw::Encoder::new();
    for block in bytes.chunks(HADOOP_BLOCK_BYTES) {
        let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample() -> Vec<u8> {
        (0..600_000u32).flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes()).take(600_000).collect()
    }

    #[test]
    fn every_format_reads_back_with_its_standard_reader() {
        let bytes = sample();
        let mut out = Vec::new();
        let gz = Compression::Gzip.compress(&bytes, "entry").expect("gzip");
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).expect("gunzip");
        assert_eq!(out, bytes);
        out.clear();
        let framed = Compression::Snappy.compress(&bytes, "entry").expect("snappy");
        snap::read::FrameDecoder::new(&framed[..]).read_to_end(&mut out).expect("unsnappy");
        assert_eq!(out, bytes);
        assert_eq!(Compression::Uncompressed.compress(&bytes, "entry").expect("plain"), bytes);
    }

    #[test]
    fn zip_holds_one_named_entry_and_is_the_same_every_time() {
        let bytes = sample();
        let archive = Compression::Zip.compress(&bytes, "s-1-2026-12-06-00-00-00-x").expect("zip");
        assert_eq!(archive, Compression::Zip.compress(&bytes, "s-1-2026-12-06-00-00-00-x").expect("zip"));
        let mut read = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("an archive");
        assert_eq!(read.len(), 1);
        let mut entry = read.by_index(0).expect("entry");
        assert_eq!(entry.name().expect("a UTF-8 name"), "s-1-2026-12-06-00-00-00-x");
        let mut out = Vec::new();
        entry.read_to_end(&mut out).expect("inflate");
        assert_eq!(out, bytes);
        assert_eq!(Compression::parse("ZIP"), Ok(Compression::Zip));
    }

    #[test]
    fn hadoop_blocks_carry_both_lengths() {
        let bytes = sample();
        let blocks = Compression::HadoopSnappy.compress(&bytes, "entry").expect("hadoop");
        let (mut at, mut out) = (0, Vec::new());
        while at < blocks.len() {
            let raw_len = u32::from_be_bytes(blocks[at..at + 4].try_into().expect("4")) as usize;
            let len = u32::from_be_bytes(blocks[at + 4..at + 8].try_into().expect("4")) as usize;
            let block = snap::raw::Decoder::new().decompress_vec(&blocks[at + 8..at + 8 + len]).expect("block");
            assert_eq!(block.len(), raw_len);
            out.extend(block);
            at += 8 + len;
        }
        assert_eq!(out, bytes);
        assert_eq!(Compression::parse("Snappy"), Ok(Compression::Snappy));
    }
}
