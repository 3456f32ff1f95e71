//! Fine-tuning with `train --from`: a base model trained on part of the fixture notebooks adapts
//! to a handful of "user" notebooks with cells it never saw (validation loss on a held-out user
//! notebook goes down), and keeps the base model's tokenizer and sizes.

mod common;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Cells of the user's notebooks: (source, outputs), none of them in the fixture pool.
fn user_pool() -> Vec<(&'static str, Value)> {
    let stream = |t: &str| json!([{"output_type": "stream", "name": "stdout", "text": t}]);
    let result = |t: &str| json!([{"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": t}}]);
    vec![
        ("import pandas as pd", json!([])),
        ("df = pd.DataFrame({\"a\": [1, 2, 3]})", json!([])),
        ("df.shape", result("(3, 1)")),
        ("df[\"a\"].sum()", result("6")),
        ("print(\"user data ready\")", stream("user data ready\n")),
        ("total = 6 * 7\nprint(total)", stream("42\n")),
        (
            "names = [\"x\", \"y\"]\nprint(names)",
            stream("['x', 'y']\n"),
        ),
        ("df.columns.tolist()", result("['a']")),
    ]
}

fn write_user_notebook(path: &Path, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cells = user_pool();
    cells.shuffle(&mut rng);
    let cells: Vec<Value> = cells
        .into_iter()
        .enumerate()
        .map(|(i, (src, outs))| {
            json!({"cell_type": "code", "execution_count": i + 1, "metadata": {},
                   "source": src, "outputs": outs})
        })
        .collect();
    let nb = json!({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells});
    std::fs::write(path, serde_json::to_string_pretty(&nb).expect("json")).expect("write");
}

#[test]
fn fine_tuning_lowers_held_out_loss_and_keeps_the_tokenizer() {
    let work = common::tempdir();
    let base = work.path().join("base");
    let base_files: Vec<PathBuf> = common::fixture_files("train")[..20].to_vec();
    let base_refs: Vec<&Path> = base_files.iter().map(PathBuf::as_path).collect();
    common::train_small(&base_refs, &base, &["--epochs", "10"]);

    let user = work.path().join("user");
    let held = work.path().join("held-out");
    std::fs::create_dir_all(&user).expect("mkdir");
    std::fs::create_dir_all(&held).expect("mkdir");
    for s in 0..5 {
        write_user_notebook(&user.join(format!("user{s}.ipynb")), s);
    }
    write_user_notebook(&held.join("held.ipynb"), 99);

    let tuned = work.path().join("tuned");
    let args = [
        "train",
        common::path_str(&user),
        "--from",
        common::path_str(&base),
        "--valid",
        common::path_str(&held),
        "--out",
        common::path_str(&tuned),
        "--epochs",
        "8",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--warmup-steps",
        "4",
        "--lr",
        "0.003",
        "--seed",
        "3",
        "--cpu",
        "--quiet",
    ];
    common::run_ok(&args);

    let rows = common::metrics_rows(&tuned);
    let valid: Vec<(usize, f64)> = rows
        .iter()
        .filter(|r| r["kind"] == "valid")
        .map(|r| {
            (
                r["epoch"].parse().expect("epoch"),
                r["valid_loss"].parse().expect("valid loss"),
            )
        })
        .collect();
    assert_eq!(valid.first().map(|v| v.0), Some(0), "{valid:?}");
    assert_eq!(valid.last().map(|v| v.0), Some(8), "{valid:?}");
    let (before, after) = (valid[0].1, valid[valid.len() - 1].1);
    eprintln!("held-out loss: {before:.4} before, {after:.4} after fine-tuning");
    assert!(
        after < 0.8 * before,
        "held-out loss went from {before} to {after}"
    );

    let b = common::config_json(&base);
    let t = common::config_json(&tuned);
    assert_eq!(t["tokenizer"]["sha256"], b["tokenizer"]["sha256"]);
    assert_eq!(t["model"], b["model"]);
    assert_eq!(
        std::fs::read(base.join("tokenizer.model")).expect("read"),
        std::fs::read(tuned.join("tokenizer.model")).expect("read")
    );
    assert_eq!(
        t["training"]["from"].as_str(),
        Some(common::path_str(&base))
    );
    assert_eq!(t["corpus"]["notebooks"], 5);
    assert_eq!(t["corpus"]["valid_notebooks"], 1);
}

#[test]
fn the_same_seed_trains_the_same_weights() {
    let work = common::tempdir();
    let data = common::fixture_notebooks("valid");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    common::train_small(&[&data], &a, &["--epochs", "2"]);
    common::train_small(&[&data], &b, &["--epochs", "2"]);
    assert!(
        std::fs::read(a.join("model.safetensors")).expect("read")
            == std::fs::read(b.join("model.safetensors")).expect("read"),
        "two runs with --seed 7 trained different weights"
    );
}
