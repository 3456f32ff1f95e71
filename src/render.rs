//! Turning predictions into notebook JSON: predicted outputs as nbformat 4 outputs, whole
//! predicted notebooks, and writing files atomically.

use crate::predictor::{CellPrediction, OutputKind, PredictedOutput};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The `notebook_predictor` metadata object of one output.
pub fn output_meta(confidence: f64) -> Value {
    json!({"predicted": true, "confidence": round4(confidence)})
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The mime bundle of a predicted result or display output.
pub fn bundle(o: &PredictedOutput) -> Map<String, Value> {
    let mut data = Map::new();
    match o.kind {
        OutputKind::Display => {
            let (mimes, plain) = o.display_parts();
            let text = if plain.is_empty() && !mimes.is_empty() {
                mimes
                    .iter()
                    .map(|m| format!("<predicted {m}>"))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                plain
            };
            data.insert("text/plain".into(), Value::String(text));
        }
        _ => {
            data.insert("text/plain".into(), Value::String(o.text.clone()));
        }
    }
    data
}

/// One predicted output as nbformat 4 JSON. Stream and error outputs cannot carry metadata in
/// nbformat, so only results and displays carry `metadata.notebook_predictor`.
pub fn output_json(o: &PredictedOutput, execution_count: Option<u64>) -> Value {
    let text = if o.truncated {
        format!("{}…", o.text)
    } else {
        o.text.clone()
    };
    match o.kind {
        OutputKind::Stdout | OutputKind::Stderr => json!({
            "output_type": "stream",
            "name": if o.kind == OutputKind::Stdout { "stdout" } else { "stderr" },
            "text": text,
        }),
        OutputKind::Result => json!({
            "output_type": "execute_result",
            "execution_count": execution_count,
            "data": bundle(o),
            "metadata": {"notebook_predictor": output_meta(o.confidence)},
        }),
        OutputKind::Display => json!({
            "output_type": "display_data",
            "data": bundle(o),
            "metadata": {"notebook_predictor": output_meta(o.confidence)},
        }),
        OutputKind::Error => {
            let (ename, evalue, traceback) = o.error_parts();
            json!({
                "output_type": "error",
                "ename": ename,
                "evalue": evalue,
                "traceback": traceback,
            })
        }
    }
}

/// The cell-level record of a prediction: marks every output, including streams and errors.
pub fn cell_meta(pred: &CellPrediction) -> Value {
    json!({
        "predicted": true,
        "confidence": round4(pred.confidence),
        "outputs": pred.outputs.iter().map(|o| json!({
            "kind": o.kind.as_str(),
            "predicted": true,
            "confidence": round4(o.confidence),
        })).collect::<Vec<_>>(),
    })
}

/// Replaces a code cell's outputs and execution count in place.
pub fn set_cell_prediction(cell: &mut Value, pred: &CellPrediction, count: u64) {
    let outputs: Vec<Value> = pred
        .outputs
        .iter()
        .map(|o| output_json(o, Some(count)))
        .collect();
    if let Some(obj) = cell.as_object_mut() {
        obj.insert("outputs".into(), Value::Array(outputs));
        obj.insert("execution_count".into(), json!(count));
        let meta = obj.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert("notebook_predictor".into(), cell_meta(pred));
        }
    }
}

/// A new nbformat 4.5 notebook from (code, prediction) pairs.
pub fn new_notebook(cells: &[(String, CellPrediction)], model: &str) -> Value {
    let cells: Vec<Value> = cells
        .iter()
        .enumerate()
        .map(|(i, (code, pred))| {
            let mut c = json!({
                "cell_type": "code",
                "id": format!("cell-{i}"),
                "metadata": {},
                "source": code,
                "outputs": [],
                "execution_count": null,
            });
            set_cell_prediction(&mut c, pred, i as u64 + 1);
            c
        })
        .collect();
    json!({
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "notebook-predictor", "display_name": "Notebook Predictor", "language": "python"},
            "language_info": {"name": "python", "file_extension": ".py", "mimetype": "text/x-python"},
            "notebook_predictor": {"generated": true, "model": model},
        },
        "cells": cells,
    })
}

/// Notebook metadata that cannot stay in a predicted copy is left out of it, with a note for
/// each thing left out:
/// - a `kernelspec` without `name` and `display_name`, or a `language_info` without `name`,
///   which nbformat requires when those objects are present (some real notebooks lack them);
/// - saved widget state (`widgets`), which holds the widgets' real outputs from the last run,
///   not predictions.
pub fn prepare_copy_metadata(doc: &mut Value) -> Vec<String> {
    const REQUIRED: [(&str, &[&str]); 2] = [
        ("kernelspec", &["name", "display_name"]),
        ("language_info", &["name"]),
    ];
    let mut notes = Vec::new();
    let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) else {
        return notes;
    };
    for (key, fields) in REQUIRED {
        let Some(obj) = meta.get(key) else { continue };
        let missing: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| !obj.get(*f).is_some_and(Value::is_string))
            .collect();
        if !obj.is_object() || !missing.is_empty() {
            let why = if obj.is_object() {
                format!("lacks {}", missing.join(" and "))
            } else {
                "is not an object".to_string()
            };
            notes.push(format!(
                "metadata.{key} {why}; left out of the predicted copy"
            ));
            meta.remove(key);
        }
    }
    if meta.remove("widgets").is_some() {
        notes.push(WIDGETS_NOTE.to_string());
    }
    notes
}

const WIDGETS_NOTE: &str =
    "metadata.widgets (saved widget state, with the real outputs) left out of the predicted copy";

/// Writes `value` as pretty JSON to `path` through a temporary file and a rename.
pub fn write_json_atomic(path: &Path, value: &Value) -> Result<(), WriteError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| WriteError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// half-written file never replaces a good one. The temporary file is created like any new file
/// (0666 less the umask), not private (0600) as temporary files are by default, since it becomes
/// the user's file once renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(&dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_kernelspec_and_widget_state_are_left_out() {
        let mut doc = json!({"metadata": {
            "kernelspec": {"language": "python"},
            "language_info": {"name": "python", "version": "3.11"},
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}},
            "other": 1,
        }});
        let notes = prepare_copy_metadata(&mut doc);
        assert_eq!(
            notes,
            [
                "metadata.kernelspec lacks name and display_name; left out of the predicted copy",
                WIDGETS_NOTE,
            ]
        );
        assert_eq!(
            doc,
            json!({"metadata": {"language_info": {"name": "python", "version": "3.11"}, "other": 1}})
        );
    }

    /// The process umask, from /proc (Linux).
    #[cfg(target_os = "linux")]
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .expect("Umask line");
        u32::from_str_radix(line.trim(), 8).expect("octal umask")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn written_files_get_the_usual_mode_not_a_private_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.ipynb");
        write_json_atomic(&path, &json!({"a": 1})).expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask(), "mode {mode:o}");
        let back: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(back, json!({"a": 1}));
    }

    #[test]
    fn complete_metadata_is_kept_as_is() {
        let mut doc = json!({"metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        }});
        let before = doc.clone();
        assert!(prepare_copy_metadata(&mut doc).is_empty());
        assert_eq!(doc, before);
        let mut odd = json!({"metadata": {"language_info": "python"}});
        assert_eq!(
            prepare_copy_metadata(&mut odd),
            ["metadata.language_info is not an object; left out of the predicted copy"]
        );
        assert_eq!(odd, json!({"metadata": {}}));
    }
}
