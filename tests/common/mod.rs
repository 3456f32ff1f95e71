//! Shared helpers of the integration tests: the binary, the fixture notebooks, the venv's Python,
//! and the tiny fixture model trained once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `notebook-predictor` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_notebook-predictor"))
}

/// The source tree's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/notebooks/{train,valid}`.
pub fn fixture_notebooks(split: &str) -> PathBuf {
    repo().join("tests/fixtures/notebooks").join(split)
}

/// The fixture notebooks of one split, sorted.
pub fn fixture_files(split: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture_notebooks(split))
        .expect("fixture folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    v.sort();
    v
}

/// The binary as a command, with torch limited to one thread: on a busy machine several
/// threads spin against each other and run many times slower.
pub fn cmd() -> Command {
    let mut c = Command::new(bin());
    c.env("OMP_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .env_remove("NOTEBOOK_PREDICTOR_MODEL");
    c
}

/// Limits torch to one thread in this process (see [`cmd`]).
pub fn one_thread() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| tch::set_num_threads(1));
}

/// Runs the binary with `args`, returning its output; panics with both streams if it fails.
pub fn run_ok(args: &[&str]) -> Output {
    let out = cmd().args(args).output().expect("start the binary");
    assert!(
        out.status.success(),
        "notebook-predictor {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_panic(&out);
    out
}

/// Fails when either stream shows a Rust panic.
pub fn assert_no_panic(out: &Output) {
    for s in [&out.stdout, &out.stderr] {
        let s = String::from_utf8_lossy(s);
        assert!(
            !s.contains("panicked") && !s.contains("RUST_BACKTRACE"),
            "panic in output:\n{s}"
        );
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The Python with numpy, safetensors and nbformat: `$NOTEBOOK_PREDICTOR_PYTHON`, else the
/// repository's `.venv/bin/python`. Panics with instructions when neither exists.
pub fn python() -> PathBuf {
    let p = std::env::var_os("NOTEBOOK_PREDICTOR_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python at {}: create it with `python3 -m venv .venv && .venv/bin/pip install -r \
         tests/requirements.txt`, or set NOTEBOOK_PREDICTOR_PYTHON to a Python with numpy, \
         safetensors and nbformat",
        p.display()
    );
    p
}

/// Runs a Python script from `tests/python` with arguments; returns (success, stdout+stderr).
pub fn run_python(script: &str, args: &[&Path]) -> (bool, String) {
    let out = Command::new(python())
        .arg(repo().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("start python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A fresh temporary folder under the target directory.
pub fn tempdir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("target tmp dir");
    tempfile::tempdir_in(base).expect("temp dir")
}

/// Trains a small model with the binary: the fixture settings, where flags in `extra` replace
/// the default of the same flag.
pub fn train_small(inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let defaults: [(&str, Option<&str>); 11] = [
        ("--vocab-size", Some("400")),
        ("--embed-dim", Some("64")),
        ("--hidden-size", Some("128")),
        ("--batch-size", Some("16")),
        ("--seq-len", Some("64")),
        ("--warmup-steps", Some("20")),
        ("--lr", Some("0.006")),
        ("--seed", Some("7")),
        ("--epochs", Some("1")),
        ("--cpu", None),
        ("--quiet", None),
    ];
    let mut args: Vec<&str> = vec!["train"];
    args.extend(inputs.iter().map(|p| path_str(p)));
    args.extend(["--out", path_str(out)]);
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.push(flag);
            args.extend(value);
        }
    }
    args.extend_from_slice(extra);
    run_ok(&args)
}

/// The tiny fixture model (`tests/fixtures/train-fixture-model.sh`), trained once per test
/// binary into a temporary folder. `$NOTEBOOK_PREDICTOR_FIXTURE_MODEL` names a ready one instead.
pub fn fixture_model() -> &'static Path {
    static MODEL: OnceLock<(Option<tempfile::TempDir>, PathBuf)> = OnceLock::new();
    let (_, path) = MODEL.get_or_init(|| {
        if let Some(p) =
            std::env::var_os("NOTEBOOK_PREDICTOR_FIXTURE_MODEL").filter(|p| !p.is_empty())
        {
            return (None, PathBuf::from(p));
        }
        let dir = tempdir();
        let out = dir.path().join("fixture-model");
        let started = std::time::Instant::now();
        let res = Command::new("bash")
            .arg(repo().join("tests/fixtures/train-fixture-model.sh"))
            .arg(&out)
            .arg(bin())
            .env("OMP_NUM_THREADS", "1")
            .env("MKL_NUM_THREADS", "1")
            .output()
            .expect("run train-fixture-model.sh");
        assert!(
            res.status.success(),
            "training the fixture model failed:\n{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        eprintln!(
            "fixture model trained in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        (Some(dir), out)
    });
    path
}

/// Rows of a `metrics.csv` as header-keyed maps.
pub fn metrics_rows(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

/// `config.json` of a checkpoint as JSON.
pub fn config_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("config.json")).expect("config.json");
    serde_json::from_str(&text).expect("config.json is JSON")
}
