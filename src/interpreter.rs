//! The kernel's interpreter for Notebook Predictor: turns the `Predictor`'s predictions into
//! kernel outputs, completions, inspections and comm replies. Knows no sockets.

use crate::kernel::{
    Completeness, Completion, ExecuteStatus, Inspection, Interpreter, InterpreterInfo,
    InterruptFlag, Output, OutputSink,
};
use crate::predictor::{OutputKind, PredictedOutput, Predictor, Progress};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// The comm target the JupyterLab extension talks to.
pub const COMM_TARGET: &str = "notebook_predictor";

/// A model, or why it could not be loaded.
pub type ModelResult = Result<Predictor, (PathBuf, String)>;

/// The model as the interpreter holds it: still loading on its own thread, or loaded.
enum ModelState {
    Loading(std::thread::JoinHandle<ModelResult>),
    Ready(Box<ModelResult>),
}

/// The predictor behind the kernel, or why it could not be loaded.
pub struct PredictorInterpreter {
    state: ModelState,
    banner: String,
    /// The last suggestion, keyed by (cells predicted so far, text before the cursor): the
    /// front end often asks twice for the same thing around an execution.
    last_suggestion: Option<((usize, String), (String, f64))>,
}

impl PredictorInterpreter {
    pub fn new(model: ModelResult) -> PredictorInterpreter {
        let banner = match &model {
            Ok(p) => banner_for(&p.checkpoint().path, Ok(&p.checkpoint().config)),
            Err((path, reason)) => banner_for(path, Err(reason)),
        };
        PredictorInterpreter {
            state: ModelState::Ready(Box::new(model)),
            banner,
            last_suggestion: None,
        }
    }

    /// Starts loading the model at `dir` on its own thread, so the kernel can answer
    /// `kernel_info` before the weights are in memory. The banner comes from `config.json`.
    pub fn loading(
        dir: PathBuf,
        load: impl FnOnce() -> ModelResult + Send + 'static,
    ) -> PredictorInterpreter {
        let banner = match crate::checkpoint::read_config(&dir) {
            Ok(cfg) => banner_for(&dir, Ok(&cfg)),
            Err(e) => banner_for(&dir, Err(&e.to_string())),
        };
        let state = match std::thread::Builder::new()
            .name("model-loader".into())
            .spawn(load)
        {
            Ok(handle) => ModelState::Loading(handle),
            Err(e) => ModelState::Ready(Box::new(Err((
                dir,
                format!("cannot start the loader thread: {e}"),
            )))),
        };
        PredictorInterpreter {
            state,
            banner,
            last_suggestion: None,
        }
    }

    /// The model, waiting for the loader thread the first time.
    fn model(&mut self) -> &mut ModelResult {
        if let ModelState::Loading(_) = self.state {
            let placeholder = ModelState::Ready(Box::new(Err((PathBuf::new(), String::new()))));
            if let ModelState::Loading(handle) = std::mem::replace(&mut self.state, placeholder) {
                let result = handle.join().unwrap_or_else(|_| {
                    Err((PathBuf::new(), "the model loader panicked".to_string()))
                });
                self.state = ModelState::Ready(Box::new(result));
            }
        }
        match &mut self.state {
            ModelState::Ready(m) => m.as_mut(),
            ModelState::Loading(_) => unreachable!("the loader was joined above"),
        }
    }
}

fn banner_for(
    path: &std::path::Path,
    config: Result<&crate::checkpoint::CheckpointConfig, &String>,
) -> String {
    let head = format!(
        "Notebook Predictor {}: predicts what Python would print; runs nothing.",
        env!("CARGO_PKG_VERSION")
    );
    match config {
        Ok(c) => {
            let valid = c
                .training
                .last_valid
                .as_ref()
                .map(|v| format!(", validation loss {:.3}", v.loss))
                .unwrap_or_default();
            format!(
                "{head}\nModel: {} ({} parameters; GRU {}x{}, vocabulary {}; trained on {} notebooks, {} tokens, {} epochs{valid})",
                path.display(),
                c.model.num_params(),
                c.model.num_layers,
                c.model.hidden_size,
                c.model.vocab_size,
                c.corpus.notebooks,
                c.training.tokens_seen,
                c.training.epoch,
            )
        }
        Err(reason) => format!("{head}\nNo model: {}: {reason}", path.display()),
    }
}

fn meta(confidence: f64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "notebook_predictor".into(),
        crate::render::output_meta(confidence),
    );
    m
}

/// Kernel output for one finished predicted output.
fn to_output(o: &PredictedOutput) -> Output {
    match o.kind {
        OutputKind::Stdout | OutputKind::Stderr => Output::Stream {
            name: if o.kind == OutputKind::Stdout {
                "stdout".into()
            } else {
                "stderr".into()
            },
            text: o.text.clone(),
        },
        OutputKind::Result => Output::ExecuteResult {
            data: crate::render::bundle(o),
            metadata: meta(o.confidence),
        },
        OutputKind::Display => Output::DisplayData {
            data: crate::render::bundle(o),
            metadata: meta(o.confidence),
        },
        OutputKind::Error => {
            let (ename, evalue, traceback) = o.error_parts();
            Output::Error {
                ename,
                evalue,
                traceback,
            }
        }
    }
}

/// Streams stdout/stderr text as it is generated, as long as no other kind of output came
/// first (those are published whole at the end, so order is kept).
struct Live<'a> {
    sink: &'a mut dyn OutputSink,
    interrupt: &'a InterruptFlag,
    streaming: bool,
    /// Outputs started so far; those streamed live are not published again.
    started: usize,
    live: Vec<bool>,
}

impl Progress for Live<'_> {
    fn output_started(&mut self, kind: OutputKind) -> bool {
        let is_stream = matches!(kind, OutputKind::Stdout | OutputKind::Stderr);
        if !is_stream {
            self.streaming = false;
        }
        self.live.push(is_stream && self.streaming);
        self.started += 1;
        !self.interrupt.is_raised()
    }

    fn text(&mut self, kind: OutputKind, text: &str) -> bool {
        if self.live.last() == Some(&true) {
            self.sink.publish(Output::Stream {
                name: kind.as_str().into(),
                text: text.to_string(),
            });
        }
        !self.interrupt.is_raised()
    }
}

/// The identifier-like word that ends at `prefix`'s end (for the completer's replaced range).
fn word_before(prefix: &str) -> &str {
    let start = prefix
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map(|(i, _)| i)
        .unwrap_or(prefix.len());
    &prefix[start..]
}

fn char_prefix(code: &str, cursor: usize) -> &str {
    match code.char_indices().nth(cursor) {
        Some((i, _)) => &code[..i],
        None => code,
    }
}

impl Interpreter for PredictorInterpreter {
    fn info(&self) -> InterpreterInfo {
        InterpreterInfo {
            implementation: "notebook-predictor".into(),
            implementation_version: env!("CARGO_PKG_VERSION").into(),
            banner: self.banner.clone(),
            language_name: "python".into(),
            language_version: "3".into(),
            mimetype: "text/x-python".into(),
            file_extension: ".py".into(),
            pygments_lexer: "ipython3".into(),
            codemirror_mode: "ipython".into(),
            nbconvert_exporter: "python".into(),
        }
    }

    fn execute(
        &mut self,
        code: &str,
        silent: bool,
        sink: &mut dyn OutputSink,
        interrupt: &InterruptFlag,
    ) -> ExecuteStatus {
        let p = match self.model() {
            Ok(p) => p,
            Err((path, reason)) => {
                let evalue = format!("cannot load the model at {}: {reason}", path.display());
                return ExecuteStatus::Failed {
                    ename: "ModelLoadError".into(),
                    evalue: evalue.clone(),
                    traceback: vec![
                        format!("ModelLoadError: {evalue}"),
                        "Train one with `notebook-predictor train`, or pass --model DIR when installing the kernel.".into(),
                    ],
                };
            }
        };
        if code.trim().is_empty() {
            return ExecuteStatus::Ok;
        }
        let mut live = Live {
            sink,
            interrupt,
            streaming: !silent,
            started: 0,
            live: Vec::new(),
        };
        let pred = p.predict_cell(code, &mut live);
        let Live { sink, live, .. } = live;
        if !silent {
            for (i, o) in pred.outputs.iter().enumerate() {
                if live.get(i) == Some(&true) {
                    continue;
                }
                if !o.text.is_empty() || !matches!(o.kind, OutputKind::Stdout | OutputKind::Stderr)
                {
                    sink.publish(to_output(o));
                }
            }
        }
        if pred.interrupted {
            ExecuteStatus::Interrupted
        } else {
            ExecuteStatus::Ok
        }
    }

    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completion {
        let Ok(p) = self.model() else {
            return Completion {
                cursor_start: cursor_pos,
                cursor_end: cursor_pos,
                ..Completion::default()
            };
        };
        let prefix = char_prefix(code, cursor_pos);
        let word = word_before(prefix);
        let start = cursor_pos - word.chars().count();
        let alts = p.alternatives(prefix, 5);
        let mut matches: Vec<String> = Vec::new();
        let mut types = Vec::new();
        for s in alts {
            if s.text.is_empty() {
                continue;
            }
            let text = format!("{word}{}", s.text);
            if matches.contains(&text) {
                continue;
            }
            types.push(json!({
                "start": start,
                "end": cursor_pos,
                "text": text,
                "type": "predicted",
                "signature": format!("confidence {:.0}%", 100.0 * s.confidence),
            }));
            matches.push(text);
        }
        let mut metadata = Map::new();
        metadata.insert("_jupyter_types_experimental".into(), Value::Array(types));
        Completion {
            matches,
            cursor_start: start,
            cursor_end: cursor_pos,
            metadata,
        }
    }

    fn inspect(&mut self, code: &str, cursor_pos: usize, _detail_level: u8) -> Inspection {
        let Ok(p) = self.model() else {
            return Inspection::default();
        };
        // The line under the cursor, evaluated on a copy of the session.
        let prefix = char_prefix(code, cursor_pos);
        let line_start = prefix.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = code[line_start..]
            .find('\n')
            .map(|i| line_start + i)
            .unwrap_or(code.len());
        let expr = code[line_start..line_end].trim();
        if expr.is_empty() {
            return Inspection::default();
        }
        let snap = p.snapshot();
        let pred = p.predict_cell(expr, &mut crate::predictor::Quiet);
        p.restore(&snap);
        let shown = if pred.outputs.is_empty() {
            "no output".to_string()
        } else {
            pred.outputs
                .iter()
                .map(|o| format!("[{}] {}", o.kind.as_str(), o.text.trim_end()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut data = Map::new();
        data.insert(
            "text/plain".into(),
            Value::String(format!(
                "Predicted for `{expr}` (confidence {:.0}%):\n{shown}",
                100.0 * pred.confidence
            )),
        );
        Inspection {
            found: true,
            data,
            metadata: Map::new(),
        }
    }

    fn is_complete(&mut self, code: &str) -> Completeness {
        python_completeness(code)
    }

    fn comm_msg(&mut self, target: &str, data: &Value) -> Option<Value> {
        if target != COMM_TARGET {
            return None;
        }
        let request_id = data.get("request_id").cloned().unwrap_or(Value::Null);
        let code = data.get("code").and_then(Value::as_str).unwrap_or("");
        let cursor = data
            .get("cursor")
            .and_then(Value::as_u64)
            .map(|c| c as usize)
            .unwrap_or_else(|| code.chars().count());
        let kind = if code.trim().is_empty() {
            "next_cell"
        } else {
            "rest"
        };
        let prefix = if kind == "next_cell" {
            ""
        } else {
            char_prefix(code, cursor)
        };
        let mut cache = self.last_suggestion.take();
        let (text, confidence) = match self.model() {
            Ok(p) => {
                let key = (p.cells(), prefix.to_string());
                match cache.as_ref() {
                    Some((k, v)) if *k == key => v.clone(),
                    _ => {
                        let s = p.complete(prefix);
                        let v = (s.text, s.confidence);
                        cache = Some((key, v.clone()));
                        v
                    }
                }
            }
            Err(_) => (String::new(), 0.0),
        };
        self.last_suggestion = cache;
        Some(json!({
            "request_id": request_id,
            "text": text,
            "confidence": confidence,
            "kind": kind,
        }))
    }

    fn comm_targets(&self) -> Vec<String> {
        vec![COMM_TARGET.to_string()]
    }
}

/// A Python-aware completeness check, in the spirit of IPython's: open brackets or strings, a
/// trailing `:` or `\`, or an unfinished indented block mean "incomplete"; a closing bracket
/// with no opener means "invalid".
pub fn python_completeness(code: &str) -> Completeness {
    let mut stack: Vec<char> = Vec::new();
    let mut chars = code.chars().peekable();
    let mut in_str: Option<(char, bool)> = None; // quote, triple
    while let Some(c) = chars.next() {
        if let Some((q, triple)) = in_str {
            if c == '\\' {
                chars.next();
                continue;
            }
            if c == q {
                if triple {
                    let mut rest = chars.clone();
                    if rest.next() == Some(q) && rest.next() == Some(q) {
                        chars.next();
                        chars.next();
                        in_str = None;
                    }
                } else {
                    in_str = None;
                }
            } else if c == '\n' && !triple {
                return Completeness::Invalid;
            }
            continue;
        }
        match c {
            '#' => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let mut rest = chars.clone();
                if rest.next() == Some(c) && rest.next() == Some(c) {
                    chars.next();
                    chars.next();
                    in_str = Some((c, true));
                } else {
                    in_str = Some((c, false));
                }
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(want) {
                    return Completeness::Invalid;
                }
            }
            _ => {}
        }
    }
    let last_line = code.lines().last().unwrap_or("");
    let indent_of =
        |l: &str| -> String { l.chars().take_while(|c| *c == ' ' || *c == '\t').collect() };
    if in_str.is_some() || !stack.is_empty() {
        return Completeness::Incomplete {
            indent: String::new(),
        };
    }
    let trimmed = code.trim_end();
    if trimmed.ends_with('\\') {
        return Completeness::Incomplete {
            indent: indent_of(last_line),
        };
    }
    if trimmed.ends_with(':') {
        let line = trimmed.lines().last().unwrap_or("");
        return Completeness::Incomplete {
            indent: format!("{}    ", indent_of(line)),
        };
    }
    // An indented block is finished by a blank line, as in the IPython console.
    let opens_block = code.lines().any(|l| {
        let t = l.split('#').next().unwrap_or("").trim_end();
        t.ends_with(':')
    });
    if opens_block && code.lines().count() > 1 && !code.ends_with('\n') {
        let ind = indent_of(last_line);
        if !ind.is_empty() {
            return Completeness::Incomplete { indent: ind };
        }
    }
    Completeness::Complete
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness_follows_python() {
        assert_eq!(python_completeness("x = 1"), Completeness::Complete);
        assert_eq!(
            python_completeness("print(1"),
            Completeness::Incomplete {
                indent: String::new()
            }
        );
        assert_eq!(
            python_completeness("def f(x):"),
            Completeness::Incomplete {
                indent: "    ".into()
            }
        );
        assert_eq!(
            python_completeness("x = 1 + \\"),
            Completeness::Incomplete {
                indent: String::new()
            }
        );
        assert_eq!(
            python_completeness("s = '''abc"),
            Completeness::Incomplete {
                indent: String::new()
            }
        );
        assert_eq!(
            python_completeness("for i in x:\n    print(i)"),
            Completeness::Incomplete {
                indent: "    ".into()
            }
        );
        assert_eq!(python_completeness("x = (1, 2))"), Completeness::Invalid);
        assert_eq!(python_completeness("s = ')'  # ("), Completeness::Complete);
    }

    #[test]
    fn word_before_takes_identifier_tail() {
        assert_eq!(word_before("x = np.ara"), "np.ara");
        assert_eq!(word_before("print("), "");
        assert_eq!(char_prefix("héllo", 2), "hé");
    }
}
