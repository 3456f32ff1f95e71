//! Reading `.ipynb` files (nbformat 4.0–4.5) into typed cells and outputs, with errors that name
//! the path and the reason.

use serde_json::Value;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// One output's text larger than this makes the notebook unreadable for training.
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum NotebookError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}: not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{path}: not valid JSON: {reason}")]
    BadJson { path: PathBuf, reason: String },
    #[error("{path}: not a notebook: {reason}")]
    NotNotebook { path: PathBuf, reason: String },
    #[error("{path}: nbformat {major} is not supported; convert it with `jupyter nbconvert --to notebook --nbformat 4 {path}`")]
    OldFormat { path: PathBuf, major: u64 },
    #[error("{path}: {field}: {reason}")]
    BadField {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

/// A stream's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamName {
    Stdout,
    Stderr,
}

impl StreamName {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamName::Stdout => "stdout",
            StreamName::Stderr => "stderr",
        }
    }
}

/// One output of a code cell, reduced to what the model can learn: text, plus the names of
/// binary payloads (never their bytes).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stream {
        name: StreamName,
        text: String,
    },
    /// `execute_result`: its `text/plain`, and the other mime types it carried.
    Result {
        text: Option<String>,
        mimes: Vec<String>,
    },
    /// `display_data`: its `text/plain`, and the other mime types it carried.
    Display {
        text: Option<String>,
        mimes: Vec<String>,
    },
    Error {
        ename: String,
        evalue: String,
        traceback: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Code,
    Markdown,
    Raw,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub kind: CellKind,
    pub source: String,
    pub outputs: Vec<Output>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notebook {
    pub path: PathBuf,
    pub nbformat_minor: u64,
    pub language: Option<String>,
    pub cells: Vec<Cell>,
}

impl Notebook {
    /// Reads and parses a notebook file.
    pub fn read(path: &Path) -> Result<Notebook, NotebookError> {
        let io = |source| NotebookError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(NotebookError::TooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
                limit: MAX_FILE_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::parse(path, &bytes)
    }

    /// Parses notebook bytes; `path` is used only in error messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Notebook, NotebookError> {
        let text = std::str::from_utf8(bytes).map_err(|e| NotebookError::NotUtf8 {
            path: path.to_path_buf(),
            offset: e.valid_up_to(),
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| NotebookError::BadJson {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_value(path, &value)
    }

    /// Builds a notebook from parsed JSON.
    pub fn from_value(path: &Path, value: &Value) -> Result<Notebook, NotebookError> {
        let p = Parser { path };
        let obj = value
            .as_object()
            .ok_or_else(|| NotebookError::NotNotebook {
                path: path.to_path_buf(),
                reason: format!("top level is {}, not an object", type_name(value)),
            })?;
        let major = match obj.get("nbformat") {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| p.bad("nbformat", "not an integer"))?,
            None => {
                return Err(NotebookError::NotNotebook {
                    path: path.to_path_buf(),
                    reason: "no `nbformat` field".into(),
                })
            }
        };
        if major < 4 {
            return Err(NotebookError::OldFormat {
                path: path.to_path_buf(),
                major,
            });
        }
        if major > 4 {
            return Err(p.bad("nbformat", &format!("version {major} is newer than 4")));
        }
        let minor = obj
            .get("nbformat_minor")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let language = obj
            .get("metadata")
            .and_then(|m| {
                m.pointer("/kernelspec/language")
                    .or_else(|| m.pointer("/language_info/name"))
            })
            .and_then(Value::as_str)
            .map(str::to_string);
        let cells_v = obj.get("cells").ok_or_else(|| NotebookError::NotNotebook {
            path: path.to_path_buf(),
            reason: "no `cells` list".into(),
        })?;
        let cells_a = cells_v
            .as_array()
            .ok_or_else(|| p.bad("cells", &format!("is {}, not a list", type_name(cells_v))))?;
        let mut cells = Vec::with_capacity(cells_a.len());
        for (i, c) in cells_a.iter().enumerate() {
            cells.push(p.cell(i, c)?);
        }
        Ok(Notebook {
            path: path.to_path_buf(),
            nbformat_minor: minor,
            language,
            cells,
        })
    }
}

struct Parser<'a> {
    path: &'a Path,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Parser<'_> {
    fn bad(&self, field: &str, reason: &str) -> NotebookError {
        NotebookError::BadField {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }

    /// nbformat's "multiline string": a string or a list of strings.
    fn multiline(&self, field: &str, v: &Value) -> Result<String, NotebookError> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                let mut s = String::new();
                for (j, part) in parts.iter().enumerate() {
                    match part.as_str() {
                        Some(t) => s.push_str(t),
                        None => {
                            return Err(self.bad(
                                &format!("{field}[{j}]"),
                                &format!("is {}, not a string", type_name(part)),
                            ))
                        }
                    }
                }
                s
            }
            other => {
                return Err(self.bad(
                    field,
                    &format!("is {}, not a string or list of strings", type_name(other)),
                ))
            }
        };
        if s.len() > MAX_OUTPUT_BYTES {
            return Err(self.bad(
                field,
                &format!(
                    "text is {} bytes, over the {}-byte limit",
                    s.len(),
                    MAX_OUTPUT_BYTES
                ),
            ));
        }
        Ok(s)
    }

    fn cell(&self, i: usize, c: &Value) -> Result<Cell, NotebookError> {
        let at = format!("cells[{i}]");
        let obj = c
            .as_object()
            .ok_or_else(|| self.bad(&at, &format!("is {}, not an object", type_name(c))))?;
        let kind = match obj.get("cell_type").and_then(Value::as_str) {
            Some("code") => CellKind::Code,
            Some("markdown") => CellKind::Markdown,
            Some("raw") => CellKind::Raw,
            Some(other) => {
                return Err(self.bad(
                    &format!("{at}.cell_type"),
                    &format!("unknown cell type {other:?}"),
                ))
            }
            None => return Err(self.bad(&format!("{at}.cell_type"), "missing or not a string")),
        };
        let source = match obj.get("source") {
            Some(v) => self.multiline(&format!("{at}.source"), v)?,
            None => return Err(self.bad(&format!("{at}.source"), "missing")),
        };
        let mut outputs = Vec::new();
        if kind == CellKind::Code {
            if let Some(v) = obj.get("outputs") {
                let arr = v.as_array().ok_or_else(|| {
                    self.bad(
                        &format!("{at}.outputs"),
                        &format!("is {}, not a list", type_name(v)),
                    )
                })?;
                for (j, o) in arr.iter().enumerate() {
                    outputs.push(self.output(&format!("{at}.outputs[{j}]"), o)?);
                }
            }
        }
        Ok(Cell {
            kind,
            source,
            outputs,
        })
    }

    fn mime_bundle(
        &self,
        at: &str,
        o: &serde_json::Map<String, Value>,
    ) -> Result<(Option<String>, Vec<String>), NotebookError> {
        let data = match o.get("data") {
            Some(Value::Object(d)) => d,
            Some(other) => {
                return Err(self.bad(
                    &format!("{at}.data"),
                    &format!("is {}, not an object", type_name(other)),
                ))
            }
            None => return Err(self.bad(&format!("{at}.data"), "missing")),
        };
        let mut text = None;
        let mut mimes = Vec::new();
        for (mime, v) in data {
            if mime == "text/plain" {
                text = Some(self.multiline(&format!("{at}.data.text/plain"), v)?);
            } else {
                mimes.push(mime.clone());
            }
        }
        mimes.sort();
        Ok((text, mimes))
    }

    fn output(&self, at: &str, o: &Value) -> Result<Output, NotebookError> {
        let obj = o
            .as_object()
            .ok_or_else(|| self.bad(at, &format!("is {}, not an object", type_name(o))))?;
        let kind = obj
            .get("output_type")
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad(&format!("{at}.output_type"), "missing or not a string"))?;
        match kind {
            "stream" => {
                // Front ends show any other stream name like stdout.
                let name = match obj.get("name").and_then(Value::as_str) {
                    Some("stderr") => StreamName::Stderr,
                    Some(_) => StreamName::Stdout,
                    None => return Err(self.bad(&format!("{at}.name"), "missing or not a string")),
                };
                let text = match obj.get("text") {
                    Some(v) => self.multiline(&format!("{at}.text"), v)?,
                    None => return Err(self.bad(&format!("{at}.text"), "missing")),
                };
                Ok(Output::Stream { name, text })
            }
            "execute_result" => {
                let (text, mimes) = self.mime_bundle(at, obj)?;
                Ok(Output::Result { text, mimes })
            }
            "display_data" | "update_display_data" => {
                let (text, mimes) = self.mime_bundle(at, obj)?;
                Ok(Output::Display { text, mimes })
            }
            "error" => {
                let s = |k: &str| -> Result<String, NotebookError> {
                    obj.get(k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| self.bad(&format!("{at}.{k}"), "missing or not a string"))
                };
                let traceback = match obj.get("traceback") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|t| t.as_str().unwrap_or_default().to_string())
                        .collect(),
                    _ => Vec::new(),
                };
                Ok(Output::Error {
                    ename: s("ename")?,
                    evalue: s("evalue")?,
                    traceback,
                })
            }
            other => Err(self.bad(
                &format!("{at}.output_type"),
                &format!("unknown output type {other:?}"),
            )),
        }
    }
}

/// Finds notebooks under the given paths: files are taken as they are, folders are searched
/// recursively for `*.ipynb` (skipping `.ipynb_checkpoints`). The result is sorted.
pub fn find_notebooks(paths: &[PathBuf]) -> Result<Vec<PathBuf>, NotebookError> {
    let mut found = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| NotebookError::Io {
            path: p.clone(),
            source,
        })?;
        if meta.is_file() {
            found.push(p.clone());
            continue;
        }
        for entry in walkdir::WalkDir::new(p)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".ipynb_checkpoints")
        {
            let entry = entry.map_err(|e| NotebookError::Io {
                path: e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone()),
                source: std::io::Error::other(e.to_string()),
            })?;
            if entry.file_type().is_file() && entry.path().extension().is_some_and(|x| x == "ipynb")
            {
                found.push(entry.into_path());
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Notebook, NotebookError> {
        Notebook::parse(Path::new("x.ipynb"), s.as_bytes())
    }

    #[test]
    fn reads_all_output_kinds_and_source_forms() {
        let nb = parse(
            r##"{"nbformat":4,"nbformat_minor":5,"metadata":{"kernelspec":{"language":"python"}},"extra":1,
            "cells":[
             {"cell_type":"markdown","source":["# T\n","x"],"metadata":{},"attachments":{"a.png":{"image/png":"AAA"}}},
             {"cell_type":"code","source":"print(1)","metadata":{},"execution_count":1,"outputs":[
               {"output_type":"stream","name":"stdout","text":["1\n"]},
               {"output_type":"execute_result","execution_count":1,"metadata":{},"data":{"text/plain":"2","text/html":"<b>2</b>"}},
               {"output_type":"display_data","metadata":{},"data":{"image/png":"AAAA","text/plain":["<Figure>"]}},
               {"output_type":"error","ename":"ValueError","evalue":"bad","traceback":["t1","t2"]}]},
             {"cell_type":"raw","source":"raw","metadata":{}}]}"##,
        )
        .expect("valid notebook");
        assert_eq!(nb.language.as_deref(), Some("python"));
        assert_eq!(nb.cells.len(), 3);
        assert_eq!(nb.cells[0].source, "# T\nx");
        assert_eq!(nb.cells[1].outputs.len(), 4);
        assert_eq!(
            nb.cells[1].outputs[1],
            Output::Result {
                text: Some("2".into()),
                mimes: vec!["text/html".into()]
            }
        );
        assert_eq!(nb.cells[2].kind, CellKind::Raw);
    }

    #[test]
    fn broken_files_name_the_reason() {
        let cases = [
            (
                r#"{"nbformat":4,"cells":[{"cell_type":"code","#,
                "not valid JSON",
            ),
            (r#"{"nbformat":4,"metadata":{}}"#, "no `cells`"),
            (r#"{"nbformat":4,"cells":{}}"#, "cells: is an object"),
            (r#"[1,2]"#, "top level is a list"),
            (r#"{"nbformat":3,"worksheets":[]}"#, "nbformat 3"),
            (
                r#"{"nbformat":4,"cells":[{"cell_type":"code","source":5}]}"#,
                "cells[0].source",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains("x.ipynb"), "{err}");
            assert!(err.contains(want), "{err} should contain {want}");
        }
        let err = Notebook::parse(Path::new("x.ipynb"), b"{\"a\":\"\xff\"}")
            .expect_err("not utf8")
            .to_string();
        assert!(err.contains("not UTF-8"), "{err}");
    }
}
