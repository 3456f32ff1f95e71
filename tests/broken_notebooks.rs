//! Broken files in a training folder: each kind is refused by `Notebook::read` with the right
//! error, and `train` on a folder mixing them with good notebooks trains on the good ones and
//! lists every bad file with its path and reason, without panicking.

mod common;

use notebook_predictor::notebook::{Notebook, NotebookError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The broken files: (file name, expected error kind, text the reason must contain).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    BadJson,
    NotUtf8,
    NotNotebook,
    BadField,
    OldFormat,
}

fn kind_of(e: &NotebookError) -> Option<Kind> {
    Some(match e {
        NotebookError::BadJson { .. } => Kind::BadJson,
        NotebookError::NotUtf8 { .. } => Kind::NotUtf8,
        NotebookError::NotNotebook { .. } => Kind::NotNotebook,
        NotebookError::BadField { .. } => Kind::BadField,
        NotebookError::OldFormat { .. } => Kind::OldFormat,
        _ => return None,
    })
}

/// Writes the broken files into `dir`; returns (path, kind, reason fragment).
fn write_broken(dir: &Path) -> Vec<(PathBuf, Kind, &'static str)> {
    let good = std::fs::read_to_string(&common::fixture_files("train")[0]).expect("fixture");
    let mut cases = Vec::new();
    let mut put = |name: &str, bytes: &[u8], kind: Kind, why: &'static str| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write broken file");
        cases.push((p, kind, why));
    };
    put(
        "truncated.ipynb",
        &good.as_bytes()[..good.len() / 2],
        Kind::BadJson,
        "not valid JSON",
    );
    put("empty.ipynb", b"", Kind::BadJson, "EOF");
    let mut latin1 = br#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "source": "caf"#.to_vec();
    latin1.extend_from_slice(b"\xe9\", \"metadata\": {}, \"outputs\": []}]}");
    put("latin1.ipynb", &latin1, Kind::NotUtf8, "not UTF-8");
    put(
        "no-cells.ipynb",
        br#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}"#,
        Kind::NotNotebook,
        "no `cells` list",
    );
    put(
        "wrong-types.ipynb",
        br#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "source": ["a", 5], "metadata": {}, "outputs": []}]}"#,
        Kind::BadField,
        "cells[0].source[1]: is a number",
    );
    put(
        "outputs-not-list.ipynb",
        br#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "source": "x", "metadata": {}, "outputs": {"a": 1}}]}"#,
        Kind::BadField,
        "cells[0].outputs: is an object",
    );
    put(
        "a-list.ipynb",
        br#"[{"cell_type": "code"}]"#,
        Kind::NotNotebook,
        "top level is a list",
    );
    let png: Vec<u8> = [
        0x89u8, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13,
    ]
    .iter()
    .copied()
    .chain((0..200u32).map(|i| (i * 37 % 256) as u8))
    .collect();
    put("picture.ipynb", &png, Kind::NotUtf8, "not UTF-8");
    put(
        "v3.ipynb",
        br#"{"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}"#,
        Kind::OldFormat,
        "nbformat 3 is not supported",
    );
    // One output line of 50 MB, generated here rather than kept in the repository.
    let huge = dir.join("huge-output.ipynb");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&huge).expect("create"));
        f.write_all(br#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "source": "print('x' * 50_000_000)", "metadata": {}, "execution_count": 1, "outputs": [{"output_type": "stream", "name": "stdout", "text": ""#)
            .expect("write");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..50 {
            f.write_all(&chunk).expect("write");
        }
        f.write_all(br#"\n"}]}]}"#).expect("write");
    }
    assert!(std::fs::metadata(&huge).expect("stat").len() > 50_000_000);
    cases.push((huge, Kind::BadField, "over the 8388608-byte limit"));
    cases
}

#[test]
fn read_gives_the_expected_error_kind() {
    let work = common::tempdir();
    let cases = write_broken(work.path());
    assert!(cases.len() >= 10);
    for (path, kind, why) in &cases {
        let err = Notebook::read(path).expect_err(&path.display().to_string());
        assert_eq!(kind_of(&err), Some(*kind), "{}: {err}", path.display());
        let msg = err.to_string();
        assert!(
            msg.starts_with(&path.display().to_string()),
            "error does not start with the path: {msg}"
        );
        assert!(msg.contains(why), "{msg} should contain {why:?}");
    }
    let missing = work.path().join("missing.ipynb");
    assert!(matches!(
        Notebook::read(&missing),
        Err(NotebookError::Io { .. })
    ));
    for good in common::fixture_files("valid") {
        Notebook::read(&good).expect("fixture notebooks are good");
    }
}

#[test]
fn train_skips_bad_files_and_names_them() {
    let work = common::tempdir();
    let data = work.path().join("data");
    let nested = data.join("nested");
    std::fs::create_dir_all(&nested).expect("mkdir");
    let mut cases = write_broken(&data);
    // One more broken file in a subfolder, and good notebooks beside them.
    let sub = nested.join("truncated-too.ipynb");
    std::fs::write(&sub, b"{\"nbformat\": 4, \"cells\": [").expect("write");
    cases.push((sub, Kind::BadJson, "not valid JSON"));
    let good = common::fixture_files("train");
    let good = &good[..8];
    for (i, g) in good.iter().enumerate() {
        let to = if i % 2 == 0 { &data } else { &nested };
        std::fs::copy(g, to.join(g.file_name().expect("name"))).expect("copy");
    }
    let out_dir = work.path().join("model");
    let out = common::train_small(&[&data], &out_dir, &["--epochs", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "notebooks: {} trained on, 1 for validation, {} skipped",
            good.len() - 1,
            cases.len()
        )),
        "{stdout}"
    );
    let skipped: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("skipped "))
        .collect();
    assert_eq!(skipped.len(), cases.len(), "{stdout}");
    for (path, _, why) in &cases {
        let line = skipped
            .iter()
            .find(|l| l.contains(&path.display().to_string()))
            .unwrap_or_else(|| panic!("{} not listed:\n{stdout}", path.display()));
        assert!(line.contains(why), "{line} should contain {why:?}");
    }
    let cfg = common::config_json(&out_dir);
    assert_eq!(cfg["corpus"]["notebooks"], good.len() - 1);
    assert_eq!(cfg["corpus"]["skipped"], cases.len());
    assert!(cfg["training"]["global_step"].as_u64().expect("steps") > 0);
    assert_eq!(cfg["training"]["finished"], true);
}

#[test]
fn train_on_only_bad_files_fails_cleanly() {
    let work = common::tempdir();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("a.ipynb"), b"not json").expect("write");
    std::fs::write(data.join("b.ipynb"), b"[]").expect("write");
    let out = common::cmd()
        .args(["train", common::path_str(&data), "--out"])
        .arg(work.path().join("model"))
        .args(["--epochs", "1", "--cpu", "--quiet"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    common::assert_no_panic(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no usable notebooks to train on (2 skipped)"),
        "{stderr}"
    );
}
