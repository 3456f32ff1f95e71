//! A small deterministic interpreter for tests and protocol checks. It understands a few
//! commands, one per line, and echoes anything else back as stdout in several chunks:
//!
//! - `print('text')` / `print("text")`: prints `text` and a newline
//! - `A + B`, `A - B`, `A * B` with integers: an `execute_result`
//! - `slow N`: prints `tick i` N times, one every 20 ms, stopping on interrupt
//! - `tokens N`: prints N single characters as separate stream outputs, 1 ms apart
//! - `stderr TEXT`: prints `TEXT` to stderr
//! - `display TEXT`: a `display_data` with `text/plain` and `text/html`
//! - `raise NAME: MESSAGE`: an `error` output (the reply stays ok)
//! - `fail`: the interpreter cannot run the cell (reply status error)
//! - `panic`: the interpreter panics

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::interpreter::{
    Completeness, Completion, ExecuteStatus, Inspection, Interpreter, InterpreterInfo,
    InterruptFlag, Output, OutputSink,
};

/// The comm target the mock accepts; it echoes every message back as `{"echo": data}`.
pub const ECHO_COMM_TARGET: &str = "notebook_predictor.echo";

const BUILTINS: &[(&str, &str)] = &[
    (
        "print",
        "print(*args, sep=' ', end='\\n', file=None, flush=False)",
    ),
    ("range", "range(stop) -> range object"),
    ("len", "len(obj, /) -> int"),
    ("list", "list(iterable=(), /)"),
    ("int", "int(x=0, /) -> integer"),
    ("isinstance", "isinstance(obj, class_or_tuple, /) -> bool"),
    ("import", "import statement"),
];

/// The mock interpreter. Names assigned with `name = ...` become completions.
#[derive(Debug, Default)]
pub struct MockInterpreter {
    names: BTreeSet<String>,
}

impl MockInterpreter {
    pub fn new() -> Self {
        Self::default()
    }
}

fn string_literal(text: &str) -> Option<&str> {
    let text = text.trim();
    ['\'', '"'].iter().find_map(|quote| {
        text.strip_prefix(*quote)
            .and_then(|rest| rest.strip_suffix(*quote))
    })
}

fn arithmetic(line: &str) -> Option<i64> {
    let op_at = line
        .char_indices()
        .skip(1)
        .find(|(_, c)| "+-*".contains(*c))?;
    let (left, right) = (line[..op_at.0].trim(), line[op_at.0 + 1..].trim());
    let (a, b): (i64, i64) = (left.parse().ok()?, right.parse().ok()?);
    match op_at.1 {
        '+' => a.checked_add(b),
        '-' => a.checked_sub(b),
        _ => a.checked_mul(b),
    }
}

/// Sleeps `total`, waking every 5 ms; true if the interrupt flag was raised.
fn sleep_interruptibly(total: Duration, interrupt: &InterruptFlag) -> bool {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        if interrupt.is_raised() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5).min(deadline - Instant::now()));
    }
    interrupt.is_raised()
}

fn stdout(text: impl Into<String>) -> Output {
    Output::Stream {
        name: "stdout".into(),
        text: text.into(),
    }
}

/// The identifier (dots allowed) that ends at `cursor` (in code points): (start, word).
fn word_before(code: &str, cursor: usize) -> (usize, String) {
    let chars: Vec<char> = code.chars().take(cursor).collect();
    let is_word = |c: &char| c.is_alphanumeric() || *c == '_' || *c == '.';
    let start = chars.len() - chars.iter().rev().take_while(|c| is_word(c)).count();
    (start, chars[start..].iter().collect())
}

impl Interpreter for MockInterpreter {
    fn info(&self) -> InterpreterInfo {
        InterpreterInfo {
            implementation: "notebook-predictor-mock".into(),
            implementation_version: env!("CARGO_PKG_VERSION").into(),
            banner: "Notebook Predictor (mock interpreter)".into(),
            language_name: "python".into(),
            language_version: "3.11".into(),
            mimetype: "text/x-python".into(),
            file_extension: ".py".into(),
            pygments_lexer: "ipython3".into(),
            codemirror_mode: "python".into(),
            nbconvert_exporter: "python".into(),
        }
    }

    fn execute(
        &mut self,
        code: &str,
        _silent: bool,
        sink: &mut dyn OutputSink,
        interrupt: &InterruptFlag,
    ) -> ExecuteStatus {
        for line in code.lines() {
            let line = line.trim_end();
            let word = line.split_whitespace().next().unwrap_or("");
            let rest = line.get(word.len()..).unwrap_or("").trim();
            if interrupt.is_raised() {
                return ExecuteStatus::Interrupted;
            }
            if let Some(text) = line
                .strip_prefix("print(")
                .and_then(|inner| inner.strip_suffix(')'))
                .and_then(string_literal)
            {
                sink.publish(stdout(format!("{text}\n")));
            } else if let Some(value) = arithmetic(line) {
                let mut data = Map::new();
                data.insert("text/plain".into(), json!(value.to_string()));
                sink.publish(Output::ExecuteResult {
                    data,
                    metadata: Map::new(),
                });
            } else if word == "slow" {
                for i in 0..rest.parse::<u64>().unwrap_or(10) {
                    sink.publish(stdout(format!("tick {i}\n")));
                    if sleep_interruptibly(Duration::from_millis(20), interrupt) {
                        return ExecuteStatus::Interrupted;
                    }
                }
            } else if word == "tokens" {
                for _ in 0..rest.parse::<u64>().unwrap_or(10) {
                    sink.publish(stdout("x"));
                    if sleep_interruptibly(Duration::from_millis(1), interrupt) {
                        return ExecuteStatus::Interrupted;
                    }
                }
            } else if word == "stderr" {
                sink.publish(Output::Stream {
                    name: "stderr".into(),
                    text: format!("{rest}\n"),
                });
            } else if word == "display" {
                let mut data = Map::new();
                data.insert("text/plain".into(), json!(rest));
                data.insert("text/html".into(), json!(format!("<b>{rest}</b>")));
                sink.publish(Output::DisplayData {
                    data,
                    metadata: Map::new(),
                });
            } else if word == "raise" {
                let (ename, evalue) = rest.split_once(':').unwrap_or((rest, ""));
                let (ename, evalue) = (ename.trim(), evalue.trim());
                sink.publish(Output::Error {
                    ename: ename.into(),
                    evalue: evalue.into(),
                    traceback: vec![format!("{ename}: {evalue}")],
                });
            } else if line == "fail" {
                return ExecuteStatus::Failed {
                    ename: "MockFailure".into(),
                    evalue: "the mock was asked to fail".into(),
                    traceback: vec!["MockFailure: the mock was asked to fail".into()],
                };
            } else if line == "panic" {
                panic!("the mock was asked to panic");
            } else if !line.is_empty() {
                if let Some((name, _)) = line.split_once('=') {
                    let name = name.trim();
                    if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        self.names.insert(name.to_string());
                    }
                }
                // Echo the line back in a few chunks, as a streaming predictor would.
                let chars: Vec<char> = format!("{line}\n").chars().collect();
                for chunk in chars.chunks(4) {
                    sink.publish(stdout(chunk.iter().collect::<String>()));
                }
            }
        }
        ExecuteStatus::Ok
    }

    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completion {
        let (start, word) = word_before(code, cursor_pos);
        let candidates = BUILTINS
            .iter()
            .map(|(name, _)| (*name, "function"))
            .chain(self.names.iter().map(|name| (name.as_str(), "instance")));
        let mut matches = Vec::new();
        let mut types = Vec::new();
        if !word.is_empty() {
            for (name, kind) in candidates {
                if name.starts_with(&word) && !matches.iter().any(|m| m == name) {
                    matches.push(name.to_string());
                    types.push(json!({
                        "start": start, "end": cursor_pos, "text": name, "type": kind,
                        "signature": ""
                    }));
                }
            }
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
        let (_, mut word) = word_before(code, cursor_pos);
        let after: String = code
            .chars()
            .skip(cursor_pos)
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        word.push_str(&after);
        match BUILTINS.iter().find(|(name, _)| *name == word) {
            Some((_, doc)) => {
                let mut data = Map::new();
                data.insert("text/plain".into(), json!(doc));
                Inspection {
                    found: true,
                    data,
                    metadata: Map::new(),
                }
            }
            None => Inspection::default(),
        }
    }

    fn is_complete(&mut self, code: &str) -> Completeness {
        let mut depth: i64 = 0;
        for c in code.chars() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return Completeness::Invalid;
            }
        }
        let last = code.lines().last().unwrap_or("").trim_end();
        if last.ends_with(':') {
            let indent: String = last.chars().take_while(|c| c.is_whitespace()).collect();
            Completeness::Incomplete {
                indent: format!("{indent}    "),
            }
        } else if depth > 0 || last.ends_with('\\') {
            Completeness::Incomplete {
                indent: String::new(),
            }
        } else {
            Completeness::Complete
        }
    }

    fn comm_msg(&mut self, target: &str, data: &Value) -> Option<Value> {
        (target == ECHO_COMM_TARGET).then(|| json!({ "echo": data }))
    }

    fn comm_targets(&self) -> Vec<String> {
        vec![ECHO_COMM_TARGET.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<Output>);

    impl OutputSink for Collect {
        fn publish(&mut self, output: Output) {
            self.0.push(output);
        }
    }

    #[test]
    fn echoes_and_prints() {
        let mut mock = MockInterpreter::new();
        let mut sink = Collect::default();
        let status = mock.execute(
            "print('hi')\nab = 12345",
            false,
            &mut sink,
            &InterruptFlag::default(),
        );
        assert_eq!(status, ExecuteStatus::Ok);
        let text: String = sink
            .0
            .iter()
            .map(|o| match o {
                Output::Stream { text, .. } => text.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(text, "hi\nab = 12345\n");
        assert_eq!(sink.0.len(), 1 + 3, "the echo comes in chunks");
        assert_eq!(mock.complete("a", 1).matches, ["ab"]);
    }

    #[test]
    fn completion_and_completeness() {
        let mut mock = MockInterpreter::new();
        let completion = mock.complete("x = pri", 7);
        assert_eq!(completion.matches, ["print"]);
        assert_eq!((completion.cursor_start, completion.cursor_end), (4, 7));
        assert_eq!(
            mock.complete("λ = pr", 6).cursor_start,
            4,
            "code points, not bytes"
        );
        assert_eq!(
            mock.is_complete("for i in x:"),
            Completeness::Incomplete {
                indent: "    ".into()
            }
        );
        assert_eq!(
            mock.is_complete("print(1"),
            Completeness::Incomplete {
                indent: String::new()
            }
        );
        assert_eq!(mock.is_complete("print(1))"), Completeness::Invalid);
        assert_eq!(mock.is_complete("print(1)"), Completeness::Complete);
        assert!(mock.inspect("print", 2, 0).found);
        assert!(!mock.inspect("nothing", 2, 0).found);
    }
}
