//! The shipped default model in `models/default`: silent cells stay silent, common cells get
//! the kind of output Python gives them, partly typed cells are continued, and `predict` on a
//! notebook it never saw writes valid nbformat with outputs related to the code.

mod common;

use notebook_predictor::predictor::{OutputKind, Predictor, Quiet};
use serde_json::Value;
use std::path::PathBuf;
use tch::Device;

fn default_model() -> PathBuf {
    common::repo().join("models/default")
}

fn predictor() -> Predictor {
    common::one_thread();
    Predictor::load(&default_model(), Device::Cpu).expect("load models/default")
}

#[test]
fn imports_and_definitions_show_nothing() {
    let mut p = predictor();
    for code in [
        "import numpy as np",
        "import os",
        "import pandas as pd\nimport matplotlib.pyplot as plt",
        "x = 5",
        "def add(a, b):\n    return a + b",
    ] {
        let pred = p.predict_cell(code, &mut Quiet);
        assert!(pred.outputs.is_empty(), "{code:?}: {pred:?}");
        assert!(pred.p_no_output > 0.5, "{code:?}: {pred:?}");
    }
    assert_eq!(p.cells(), 5);
}

#[test]
fn print_gives_stdout_and_an_expression_gives_a_result() {
    let mut p = predictor();
    p.predict_cell("import numpy as np", &mut Quiet);
    let pred = p.predict_cell("print(\"hello, world\")", &mut Quiet);
    assert_eq!(pred.outputs.len(), 1, "{pred:?}");
    assert_eq!(pred.outputs[0].kind, OutputKind::Stdout, "{pred:?}");
    assert!(
        pred.outputs[0].text.to_lowercase().contains("hello"),
        "{pred:?}"
    );

    let pred = p.predict_cell("df.head()", &mut Quiet);
    assert!(
        pred.outputs.iter().any(|o| o.kind == OutputKind::Result),
        "{pred:?}"
    );
    // A statement is not an expression: no execute_result, whatever the model would like.
    let pred = p.predict_cell("y = np.arange(10)", &mut Quiet);
    assert!(
        pred.outputs.iter().all(|o| o.kind != OutputKind::Result),
        "{pred:?}"
    );
}

#[test]
fn partly_typed_import_is_continued_with_its_alias() {
    let mut p = predictor();
    let s = p.complete("import matplotlib.pyplot as ");
    assert!(s.text.starts_with("plt"), "{s:?}");
    let s = p.complete("import numpy as ");
    assert!(s.text.starts_with("np"), "{s:?}");
    assert_eq!(p.cells(), 0, "completing does not advance the session");
}

#[test]
fn predict_on_an_unseen_notebook_is_valid_and_related_to_the_code() {
    let work = common::tempdir();
    let src = common::fixture_files("valid")
        .into_iter()
        .next()
        .expect("a fixture notebook");
    let out = work.path().join("predicted.ipynb");
    common::run_ok(&[
        "predict",
        common::path_str(&src),
        "--cpu",
        "--model",
        common::path_str(&default_model()),
        "--output",
        common::path_str(&out),
    ]);
    let (ok, text) = common::run_python("validate_notebooks.py", &[&out]);
    assert!(ok, "nbformat rejects the predicted notebook:\n{text}");
    let nb: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("json");
    for c in nb["cells"].as_array().expect("cells") {
        if c["cell_type"] != "code" {
            continue;
        }
        let source = match &c["source"] {
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => String::new(),
        };
        let outputs = c["outputs"].as_array().expect("outputs");
        if source.trim_start().starts_with("import ") && !source.contains(['\n', ';']) {
            assert!(outputs.is_empty(), "{source:?}: {outputs:?}");
        }
        assert_eq!(c["metadata"]["notebook_predictor"]["predicted"], true);
    }
}
