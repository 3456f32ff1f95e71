//! The predictor on the tiny fixture model: exact outputs of cells it learned, completions, the
//! next cell, `eval`'s baseline against an independent count, and notebooks written by `predict`
//! and `generate` that nbformat accepts and that mark every predicted output.

mod common;

use notebook_predictor::eval;
use notebook_predictor::predictor::{OutputKind, Predictor, Quiet};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::Device;

fn predictor() -> Predictor {
    common::one_thread();
    Predictor::load(common::fixture_model(), Device::Cpu).expect("load the fixture model")
}

#[test]
fn hello_world_prints_exactly_once() {
    let mut p = predictor();
    let pred = p.predict_cell("print(\"hello, world\")", &mut Quiet);
    assert_eq!(pred.outputs.len(), 1, "{pred:?}");
    let o = &pred.outputs[0];
    assert_eq!(o.kind, OutputKind::Stdout);
    assert_eq!(o.text, "hello, world\n");
    assert!(!o.truncated && !pred.interrupted);
    assert!(pred.p_no_output < 0.5, "{pred:?}");
    // The cost, in model steps rather than seconds: the marker, the text, the end.
    let text_tokens = p
        .tokenizer()
        .encode("hello, world\n")
        .expect("encode")
        .len();
    assert_eq!(pred.tokens, text_tokens + 2, "{pred:?}");
    assert_eq!(p.cells(), 1);
}

#[test]
fn import_has_no_output() {
    let mut p = predictor();
    let pred = p.predict_cell("import os", &mut Quiet);
    assert!(pred.outputs.is_empty(), "{pred:?}");
    assert!(pred.p_no_output > 0.5, "{pred:?}");
    assert_eq!(pred.tokens, 1, "only the end marker is generated");
}

#[test]
fn other_learned_outputs_come_out_exactly() {
    let mut p = predictor();
    let cases: [(&str, OutputKind, &str); 3] = [
        ("6*7", OutputKind::Result, "42"),
        (
            "1/0",
            OutputKind::Error,
            "ZeroDivisionError: division by zero",
        ),
        (
            "for i in range(3):\n    print(i)",
            OutputKind::Stdout,
            "0\n1\n2\n",
        ),
    ];
    for (code, kind, want) in cases {
        p.reset();
        let pred = p.predict_cell(code, &mut Quiet);
        assert_eq!(pred.outputs.len(), 1, "{code}: {pred:?}");
        assert_eq!(pred.outputs[0].kind, kind, "{code}");
        assert!(pred.outputs[0].text.ends_with(want), "{code}: {pred:?}");
    }
}

#[test]
fn partly_typed_cell_is_completed() {
    let mut p = predictor();
    let s = p.complete("def greet(na");
    assert!(s.text.starts_with("me)"), "{s:?}");
    assert!(
        s.text.contains("return \"Hello, \" + name"),
        "the body follows: {s:?}"
    );
    // Completing does not advance the session.
    assert_eq!(p.cells(), 0);
    let alts = p.alternatives("def greet(na", 3);
    assert_eq!(alts.first().map(|a| a.text.as_str()), Some(s.text.as_str()));
    // The first line alone comes next.
    assert_eq!(alts.get(1).map(|a| a.text.as_str()), Some("me):"));
}

#[test]
fn next_cell_after_numpy_import() {
    let mut p = predictor();
    p.predict_cell("import numpy as np", &mut Quiet);
    let probe = p.tokenizer().encode("x = np.arange(5)").expect("encode");
    let before = p.score(&probe);
    let s = p.next_cell();
    assert_eq!(s.text.trim_end(), "x = np.arange(5)", "{s:?}");
    assert!(s.confidence > 0.5, "{s:?}");
    // The session is unchanged: asking again gives the same answer.
    assert_eq!(p.next_cell(), s);
    assert_eq!(p.score(&probe), before);
}

/// Share of code cells with no outputs in the given notebooks, counted from the JSON.
fn share_without_output(files: &[PathBuf]) -> (usize, usize) {
    let (mut cells, mut silent) = (0, 0);
    for f in files {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("json");
        for c in v["cells"].as_array().expect("cells") {
            if c["cell_type"] == "code" {
                cells += 1;
                if c["outputs"].as_array().expect("outputs").is_empty() {
                    silent += 1;
                }
            }
        }
    }
    (silent, cells)
}

#[test]
fn eval_baseline_is_the_share_of_silent_cells() {
    let mut p = predictor();
    let files = common::fixture_files("valid");
    let (silent, cells) = share_without_output(&files);
    assert!(silent > 0 && silent < cells);
    let report =
        eval::evaluate(&mut p, &[common::fixture_notebooks("valid")], |_| {}).expect("evaluate");
    let o = &report.overall;
    assert_eq!(o.notebooks, files.len());
    assert_eq!(o.cells, cells);
    let want = silent as f64 / cells as f64;
    assert!((o.baseline.exact_all - want).abs() < 1e-12, "{o:?}");
    assert!((o.share_without_output - want).abs() < 1e-12, "{o:?}");
    assert!((o.baseline.has_output_accuracy - want).abs() < 1e-12);
    assert_eq!(o.baseline.chrf_text, 0.0);
    // The model learned these cells; it should beat "no output" by a wide margin.
    assert!(o.model.exact_all > want + 0.2, "{o:?}");
    assert!(report.skipped.is_empty());
    let table = eval::table(&report);
    assert!(table.contains("OVERALL"), "{table}");
}

#[test]
fn chrf_of_identical_strings_is_100() {
    for s in [
        "hello, world\n",
        "[0 1 2 3 4]",
        "ZeroDivisionError: division by zero",
        "café 变量 🎉",
        "x",
        "",
    ] {
        assert!((eval::chrf(s, s) - 100.0).abs() < 1e-9, "{s:?}");
    }
    assert!(eval::chrf("hello, world", "goodbye") < 50.0);
}

/// Every execute_result and display_data carries `metadata.notebook_predictor.predicted`;
/// returns how many there were.
fn check_output_metadata(nb: &Value) -> usize {
    let mut n = 0;
    for c in nb["cells"].as_array().expect("cells") {
        if c["cell_type"] != "code" {
            continue;
        }
        assert_eq!(
            c["metadata"]["notebook_predictor"]["predicted"], true,
            "{c}"
        );
        for o in c["outputs"].as_array().expect("outputs") {
            if o["output_type"] == "execute_result" || o["output_type"] == "display_data" {
                assert_eq!(
                    o["metadata"]["notebook_predictor"]["predicted"], true,
                    "{o}"
                );
                n += 1;
            }
        }
    }
    n
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
}

/// `notebook-predictor predict SRC --output OUT` on the CPU with `model`.
fn predict(model: &Path, src: &Path, out: &Path) -> std::process::Output {
    common::run_ok(&[
        "predict",
        common::path_str(src),
        "--cpu",
        "--model",
        common::path_str(model),
        "--output",
        common::path_str(out),
    ])
}

#[test]
fn predicted_and_generated_notebooks_are_valid_nbformat() {
    let model = common::fixture_model();
    let work = common::tempdir();
    let mut written = Vec::new();
    let mut marked = 0;
    for src in common::fixture_files("valid") {
        let out = work
            .path()
            .join(src.file_name().expect("name"))
            .with_extension("predicted.ipynb");
        predict(model, &src, &out);
        let nb = read_json(&out);
        let before = read_json(&src);
        assert_eq!(
            nb["cells"].as_array().map(Vec::len),
            before["cells"].as_array().map(Vec::len)
        );
        marked += check_output_metadata(&nb);
        written.push(out);
    }
    assert!(
        marked > 0,
        "no execute_result or display_data was predicted"
    );
    // A source notebook whose kernelspec lacks the fields nbformat requires (some real ones do):
    // the predicted copy leaves that kernelspec out, says so, and keeps the rest.
    let first = common::fixture_files("valid")
        .into_iter()
        .next()
        .expect("a fixture");
    let mut odd = read_json(&first);
    odd["metadata"] = serde_json::json!({"kernelspec": {"language": "python"}, "tags": ["kept"]});
    let src = work.path().join("incomplete-kernelspec.ipynb");
    std::fs::write(&src, odd.to_string()).expect("write");
    let out = work.path().join("incomplete-kernelspec.predicted.ipynb");
    let run = predict(model, &src, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("metadata.kernelspec lacks name and display_name"),
        "{stderr}"
    );
    let nb = read_json(&out);
    assert_eq!(nb["metadata"], serde_json::json!({"tags": ["kept"]}));
    written.push(out);
    for seed in [1, 2] {
        let out = work.path().join(format!("generated-{seed}.ipynb"));
        common::run_ok(&[
            "generate",
            "--cpu",
            "--model",
            common::path_str(model),
            "--cells",
            "6",
            "--seed",
            &seed.to_string(),
            "--output",
            common::path_str(&out),
        ]);
        let nb = read_json(&out);
        assert_eq!(nb["cells"].as_array().map(Vec::len), Some(6));
        check_output_metadata(&nb);
        written.push(out);
    }
    let args: Vec<&Path> = written.iter().map(PathBuf::as_path).collect();
    let (ok, text) = common::run_python("validate_notebooks.py", &args);
    assert!(ok, "nbformat rejects a written notebook:\n{text}");
    assert!(text.contains(&format!("{} valid", written.len())), "{text}");
}
