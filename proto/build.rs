//! Compiles every `.proto` under `penghubung/` with protox (pure Rust, no system `protoc`),
//! generating messages with prost and services with tonic.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new("penghubung");
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=penghubung");
    let descriptors = protox::compile(&files, ["."])?;
    // Messages as prost generates them; services (the admin API) with tonic's server and
    // client (no transport: the gateway serves it on its own listener).
    tonic_prost_build::configure()
        .bytes(".")
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
