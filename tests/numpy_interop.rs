//! A checkpoint is readable outside this program: numpy, given only `config.json` and
//! `model.safetensors`, recomputes the logits tch computes (two GRU layers; tied weights).

mod common;

use notebook_predictor::checkpoint;
use serde_json::json;
use std::path::Path;
use tch::{Device, Tensor};

/// Loads `dir`, computes logits for two fixed token rows, and has numpy check them.
fn check_against_numpy(dir: &Path, layers: i64, tied: bool) {
    common::one_thread();
    let loaded = checkpoint::load(dir, Device::Cpu).expect("load checkpoint");
    assert_eq!(loaded.config.model.num_layers, layers);
    assert_eq!(loaded.config.model.tie_weights, tied);
    let names: Vec<String> = loaded.vs.variables().into_keys().collect();
    assert_eq!(
        names.contains(&"head.weight".to_string()),
        !tied,
        "{names:?}"
    );
    assert!(
        names.contains(&format!("gru.weight_hh_l{}", layers - 1)),
        "{names:?}"
    );

    let tok = &loaded.tokenizer;
    let rows = [
        "<|code|>print(\"hello, world\")<|stdout|>hello, world\n<|end|>",
        "<|code|>for i in range(3):\n    print(i)<|stdout|>0\n1\n2\n<|end|>",
    ];
    let mut ids: Vec<Vec<i64>> = rows
        .iter()
        .map(|r| {
            tok.encode(r)
                .expect("encode")
                .into_iter()
                .map(i64::from)
                .collect()
        })
        .collect();
    let t = ids.iter().map(Vec::len).min().expect("two rows").min(16);
    assert!(t >= 8, "rows are too short: {ids:?}");
    for r in &mut ids {
        r.truncate(t);
    }
    let flat: Vec<i64> = ids.concat();
    let x = Tensor::from_slice(&flat).view([2, t as i64]);
    let h0 = loaded.model.zero_state(2, Device::Cpu);
    let (logits, _) = tch::no_grad(|| loaded.model.forward(&x, &h0, false));
    let v = loaded.config.model.vocab_size;
    assert_eq!(logits.size(), vec![2, t as i64, v]);
    let values: Vec<f32> = Vec::try_from(logits.view([-1])).expect("logits to vec");
    let nested: Vec<Vec<Vec<f32>>> = values
        .chunks(v as usize)
        .collect::<Vec<_>>()
        .chunks(t)
        .map(|row| row.iter().map(|l| l.to_vec()).collect())
        .collect();
    // The model must say something: logits that are all equal would compare trivially.
    let spread = values.iter().fold(f32::MIN, |a, &b| a.max(b))
        - values.iter().fold(f32::MAX, |a, &b| a.min(b));
    assert!(spread > 1.0, "logits hardly vary ({spread})");

    let work = common::tempdir();
    let case = work.path().join("case.json");
    std::fs::write(
        &case,
        json!({"tokens": ids, "logits": nested, "tolerance": 1e-4}).to_string(),
    )
    .expect("write case");
    let (ok, text) = common::run_python("interop_numpy.py", &[dir, &case]);
    eprintln!("{}: {}", dir.display(), text.trim());
    assert!(
        ok,
        "numpy disagrees with tch for {}:\n{text}",
        dir.display()
    );
    assert!(text.contains("max abs diff"), "{text}");

    // The comparison is not vacuous: one logit moved by 1e-3 fails it.
    let mut off = nested;
    off[1][t - 1][3] += 1e-3;
    let bad = work.path().join("off.json");
    std::fs::write(
        &bad,
        json!({"tokens": ids, "logits": off, "tolerance": 1e-4}).to_string(),
    )
    .expect("write case");
    let (ok, text) = common::run_python("interop_numpy.py", &[dir, &bad]);
    assert!(!ok, "a wrong logit passed:\n{text}");
}

#[test]
fn two_layer_gru_matches_numpy() {
    let work = common::tempdir();
    let out = work.path().join("two-layers");
    let train = common::fixture_notebooks("train");
    common::train_small(&[&train], &out, &["--layers", "2", "--epochs", "2"]);
    check_against_numpy(&out, 2, false);
}

#[test]
fn tied_weights_match_numpy() {
    let work = common::tempdir();
    let out = work.path().join("tied");
    let train = common::fixture_notebooks("train");
    common::train_small(
        &[&train],
        &out,
        &["--tie-weights", "--hidden-size", "64", "--epochs", "2"],
    );
    check_against_numpy(&out, 1, true);
}
