//! What the command line says when something is wrong: each cause once, with the path; a
//! config whose evidence directory cannot be written is refused by `validate` (not by
//! `validate --offline`); TOML errors name the key path and the line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_penghubung"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn minimal_with(dir: &Path, evidence_dir: &str) -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/minimal.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("dir = ") {
                format!("dir = {evidence_dir:?}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_missing_evidence_dir_is_named_and_its_cause_said_once() {
    let (code, text) = run(&["evidence", "verify", "/nonexistent/penghubung-evidence"]);
    assert_eq!(code, 1);
    assert!(text.contains("/nonexistent/penghubung-evidence"), "{text}");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    let (code, text) = run(&["evidence", "show", "/nonexistent/penghubung-evidence"]);
    assert_eq!(code, 1);
    assert_eq!(
        text.matches("/nonexistent/penghubung-evidence").count(),
        1,
        "{text}"
    );
}

#[test]
fn validate_refuses_an_evidence_dir_it_cannot_write_unless_offline() {
    let dir = std::env::temp_dir().join(format!("penghubung-cli-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Nobody, root included, creates files under /proc.
    let config = minimal_with(&dir, "/proc/penghubung-evidence");
    let (code, text) = run(&["validate", "-c", &config]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("evidence.dir: cannot write in /proc"),
        "{text}"
    );
    let (code, text) = run(&["validate", "--offline", "-c", &config]);
    assert_eq!(code, 0, "{text}");
    let writable = dir.join("evidence");
    let config = minimal_with(&dir, &writable.display().to_string());
    let (code, text) = run(&["validate", "-c", &config]);
    assert_eq!(code, 0, "{text}");
    assert!(!writable.exists(), "validate creates nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn toml_errors_name_the_key_path_and_line() {
    let dir = std::env::temp_dir().join(format!("penghubung-cli-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:8080\"\n[limits]\nheader_bytes = \"big\"\n",
    )
    .unwrap();
    let (code, text) = run(&["validate", "--offline", "-c", &path.display().to_string()]);
    assert_eq!(code, 1);
    assert!(text.contains("at limits.header_bytes"), "{text}");
    assert!(text.contains("line 5"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
