//! Embeds hls.js into the binary for the web console. scripts/setup.sh installs it (pinned in
//! server/console/package-lock.json) under server/console/node_modules; without it the build
//! still succeeds and the console falls back to browsers' native HLS (Safari), saying so.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let hls = manifest_dir.join("console/node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed={}", hls.display());
    let bytes = std::fs::read(&hls).unwrap_or_default();
    if bytes.is_empty() {
        println!("cargo:warning=hls.js not found at {}: run scripts/setup.sh for the console player", hls.display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("hls.min.js"), bytes)?;
    Ok(())
}
