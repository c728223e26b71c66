//! Temporary directories, removed on drop.

use std::path::{Path, PathBuf};

pub use tempfile::TempDir;

/// A fresh directory under the system temp dir, named after `tag` and removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("penghubung-{tag}-"))
        .tempdir()
        .unwrap()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
