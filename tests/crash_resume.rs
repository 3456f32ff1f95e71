//! Checkpoints survive `kill -9`: training killed at a random moment leaves a folder that loads
//! and resumes to the end. Corrupt checkpoints give errors that name the path and the reason.

mod common;

use notebook_predictor::checkpoint::{self, CheckpointError};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tch::Device;

const TRAIN_ARGS: &[&str] = &[
    "--vocab-size",
    "400",
    "--embed-dim",
    "64",
    "--hidden-size",
    "128",
    "--batch-size",
    "16",
    "--seq-len",
    "64",
    "--warmup-steps",
    "20",
    "--lr",
    "0.006",
    "--seed",
    "7",
    "--epochs",
    "40",
    "--save-every",
    "1s",
    "--cpu",
    "--quiet",
];

#[test]
fn kill_9_leaves_a_checkpoint_that_resumes() {
    common::one_thread();
    let work = common::tempdir();
    let out = work.path().join("model");
    let data = common::fixture_notebooks("train");
    let seed: u64 = std::env::var("NOTEBOOK_PREDICTOR_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_240_611);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let delay = Duration::from_millis(rng.gen_range(0..6000));

    let mut child = common::cmd()
        .arg("train")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(TRAIN_ARGS)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start train");
    let started = Instant::now();
    while !out.join(checkpoint::CONFIG_FILE).exists() {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "train ended before its first checkpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = started.elapsed();
    std::thread::sleep(delay);
    let still_running = child.try_wait().expect("poll").is_none();
    eprintln!(
        "seed {seed}: first checkpoint after {:.2} s, kill -9 {} ms later (running: {still_running})",
        first.as_secs_f64(),
        delay.as_millis()
    );
    assert!(
        still_running,
        "training finished before the kill; make it longer"
    );
    // SAFETY: plain kill(2) on the child we started.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let status = child.wait().expect("wait");
    assert!(!status.success());

    let loaded = checkpoint::load(&out, Device::Cpu).expect("checkpoint after kill -9 loads");
    let killed_at = loaded.config.training.global_step;
    assert!(killed_at > 0);
    assert!(!loaded.config.training.finished);
    assert_eq!(
        loaded.tokenizer.vocab_size() as i64,
        loaded.config.model.vocab_size
    );
    assert_eq!(loaded.config.model.hidden_size, 128);
    assert_eq!(
        checkpoint::sha256_hex(&std::fs::read(out.join(checkpoint::TOKENIZER_FILE)).expect("read")),
        loaded.config.tokenizer.sha256
    );
    let opt = checkpoint::load_optimizer(&out, Device::Cpu).expect("optimizer state");
    let step = opt
        .iter()
        .find(|(n, _)| n == "step")
        .map(|(_, t)| t.int64_value(&[]))
        .expect("step in optimizer state");
    assert_eq!(step as usize, killed_at, "optimizer and config disagree");
    drop(loaded);

    let resumed = common::cmd()
        .arg("train")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(TRAIN_ARGS)
        .arg("--resume")
        .output()
        .expect("resume");
    common::assert_no_panic(&resumed);
    assert!(
        resumed.status.success(),
        "resume failed:\n{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let done = checkpoint::load(&out, Device::Cpu).expect("final checkpoint");
    let st = &done.config.training;
    eprintln!(
        "killed at step {killed_at}, finished at step {}",
        st.global_step
    );
    assert!(st.global_step > killed_at);
    assert!(st.finished);
    assert_eq!(st.epoch, 40);
    // Every epoch feeds each notebook's tokens once, so the count is exact when the resumed run
    // neither skipped nor repeated a step.
    let c = &done.config.corpus;
    assert_eq!(st.tokens_seen, 40 * (c.tokens - c.notebooks as u64));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v = common::config_json(dir);
    f(&mut v);
    std::fs::write(
        dir.join(checkpoint::CONFIG_FILE),
        serde_json::to_string_pretty(&v).expect("json"),
    )
    .expect("write config");
}

fn sha_of(path: &Path) -> String {
    checkpoint::sha256_hex(&std::fs::read(path).expect("read"))
}

#[test]
fn corrupt_checkpoints_give_clear_errors() {
    common::one_thread();
    let work = common::tempdir();
    let data = common::fixture_notebooks("valid");
    let good = work.path().join("good");
    common::train_small(&[&data], &good, &["--epochs", "1"]);
    let other = work.path().join("other");
    // A smaller vocabulary than the good one (whose 400 pieces the tiny corpus caps near 377).
    common::train_small(&[&data], &other, &["--epochs", "1", "--vocab-size", "350"]);
    checkpoint::load(&good, Device::Cpu).expect("the good checkpoint loads");

    type Corrupt = fn(&Path, &Path);
    let cases: Vec<(&str, Corrupt, &str, &str)> = vec![
        (
            "truncated-weights",
            |d, _| {
                let w = d.join(checkpoint::WEIGHTS_FILE);
                let bytes = std::fs::read(&w).expect("read");
                std::fs::write(&w, &bytes[..bytes.len() / 3]).expect("write");
            },
            "",
            "model.safetensors is not the one config.json was written with",
        ),
        (
            "truncated-weights-rehashed",
            |d, _| {
                let w = d.join(checkpoint::WEIGHTS_FILE);
                let bytes = std::fs::read(&w).expect("read");
                std::fs::write(&w, &bytes[..bytes.len() / 3]).expect("write");
                let sha = sha_of(&w);
                edit_config(d, |v| v["weights_sha256"] = sha.into());
            },
            "model.safetensors",
            "cannot load weights",
        ),
        (
            "config-not-json",
            |d, _| {
                let c = d.join(checkpoint::CONFIG_FILE);
                let text = std::fs::read_to_string(&c).expect("read");
                std::fs::write(&c, &text[..text.len() / 2]).expect("write");
            },
            "config.json",
            "config.json is not valid",
        ),
        (
            "config-wrong-size",
            |d, _| edit_config(d, |v| v["model"]["hidden_size"] = 96.into()),
            "model.safetensors",
            "cannot load weights",
        ),
        (
            "config-bad-field",
            |d, _| edit_config(d, |v| v["model"]["num_layers"] = "two".into()),
            "config.json",
            "invalid type: string \"two\", expected i64 at line",
        ),
        (
            "config-new-version",
            |d, _| edit_config(d, |v| v["format_version"] = 99.into()),
            "",
            "format_version 99",
        ),
        (
            "swapped-tokenizer",
            |d, o| {
                std::fs::copy(
                    o.join(checkpoint::TOKENIZER_FILE),
                    d.join(checkpoint::TOKENIZER_FILE),
                )
                .expect("copy");
            },
            "",
            "tokenizer.model is not the one config.json was written with",
        ),
        (
            "swapped-tokenizer-rehashed",
            |d, o| {
                let t = d.join(checkpoint::TOKENIZER_FILE);
                std::fs::copy(o.join(checkpoint::TOKENIZER_FILE), &t).expect("copy");
                let sha = sha_of(&t);
                edit_config(d, |v| v["tokenizer"]["sha256"] = sha.into());
            },
            "",
            "pieces, model expects",
        ),
        (
            "garbage-tokenizer-rehashed",
            |d, _| {
                let t = d.join(checkpoint::TOKENIZER_FILE);
                std::fs::write(&t, b"\x0a\xff\xff\xff garbage").expect("write");
                let sha = sha_of(&t);
                edit_config(d, |v| v["tokenizer"]["sha256"] = sha.into());
            },
            "tokenizer.model",
            "cannot read the tokenizer",
        ),
        (
            "missing-weights",
            |d, _| std::fs::remove_file(d.join(checkpoint::WEIGHTS_FILE)).expect("rm"),
            "",
            "missing model.safetensors",
        ),
    ];
    for (name, corrupt, file, why) in cases {
        let dir = work.path().join(name);
        copy_dir(&good, &dir);
        corrupt(&dir, &other);
        let where_ = if file.is_empty() {
            dir.clone()
        } else {
            dir.join(file)
        };
        let err = match checkpoint::load(&dir, Device::Cpu) {
            Ok(_) => panic!("{name}: a corrupt checkpoint loaded"),
            Err(e) => e,
        };
        let msg = err.to_string();
        eprintln!("{name}: {msg}");
        assert!(
            msg.contains(&where_.display().to_string()),
            "{name}: {msg} should name {}",
            where_.display()
        );
        assert!(msg.contains(why), "{name}: {msg} should contain {why:?}");
        assert!(
            !msg.contains('\n'),
            "{name}: the message runs over lines: {msg}"
        );
        assert!(!msg.contains("<memory>"), "{name}: {msg}");
        if name.starts_with("truncated-weights-") || name == "config-wrong-size" {
            assert!(
                matches!(err, CheckpointError::Weights { .. }),
                "{name}: {err:?}"
            );
        }

        // The binary reports the same, with no panic.
        let nb = common::fixture_files("valid")[0].clone();
        let res = common::cmd()
            .args(["predict", common::path_str(&nb), "--cpu", "--model"])
            .arg(&dir)
            .arg("--output")
            .arg(work.path().join(format!("{name}.ipynb")))
            .output()
            .expect("run predict");
        common::assert_no_panic(&res);
        assert!(!res.status.success(), "{name}: predict succeeded");
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert!(
            stderr.contains(why) && stderr.contains(&dir.display().to_string()),
            "{name}: {stderr}"
        );
    }
}
