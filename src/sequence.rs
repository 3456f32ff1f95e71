//! The training text: how a notebook becomes one sequence of text and structural markers, and how
//! a predicted output's text turns back into an output.

use crate::notebook::{CellKind, Notebook, Output, StreamName};
use serde::{Deserialize, Serialize};

/// A structural marker. Each is one user-defined symbol of the tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Marker {
    /// Start of a notebook.
    Notebook,
    Markdown,
    Raw,
    Code,
    Stdout,
    Stderr,
    Result,
    Error,
    Display,
    /// End of a code cell's outputs (also written when it has none).
    End,
    /// Text cut here because it was too long.
    Truncated,
}

impl Marker {
    pub const ALL: [Marker; 11] = [
        Marker::Notebook,
        Marker::Markdown,
        Marker::Raw,
        Marker::Code,
        Marker::Stdout,
        Marker::Stderr,
        Marker::Result,
        Marker::Error,
        Marker::Display,
        Marker::End,
        Marker::Truncated,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            Marker::Notebook => "<|notebook|>",
            Marker::Markdown => "<|markdown|>",
            Marker::Raw => "<|raw|>",
            Marker::Code => "<|code|>",
            Marker::Stdout => "<|stdout|>",
            Marker::Stderr => "<|stderr|>",
            Marker::Result => "<|result|>",
            Marker::Error => "<|error|>",
            Marker::Display => "<|display|>",
            Marker::End => "<|end|>",
            Marker::Truncated => "<|truncated|>",
        }
    }

    /// Markers that open an output of a code cell.
    pub fn is_output(self) -> bool {
        matches!(
            self,
            Marker::Stdout | Marker::Stderr | Marker::Result | Marker::Error | Marker::Display
        )
    }

    /// Markers that open a cell.
    pub fn is_cell(self) -> bool {
        matches!(
            self,
            Marker::Markdown | Marker::Raw | Marker::Code | Marker::Notebook
        )
    }
}

/// Limits applied when a notebook becomes text. Stored in the checkpoint's config.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TextLimits {
    /// Longest output text kept, in characters; longer ones are cut with `<|truncated|>`.
    pub max_output_chars: usize,
    /// Longest code cell kept, in characters.
    pub max_code_chars: usize,
    /// Longest markdown or raw cell kept, in characters; 0 leaves those cells out, since a
    /// kernel only ever sees code cells.
    pub max_markdown_chars: usize,
    /// How many lines of an error's traceback are kept before `ename: evalue`.
    pub traceback_lines: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        TextLimits {
            max_output_chars: 1500,
            max_code_chars: 6000,
            max_markdown_chars: 0,
            traceback_lines: 2,
        }
    }
}

/// Which part of a notebook a piece of text belongs to, for per-part statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Marker,
    Code,
    Output,
    Other,
}

/// A notebook as a list of (marker, text) segments. Marker segments have empty text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segments(pub Vec<(Option<Marker>, String)>);

impl Segments {
    fn marker(&mut self, m: Marker) {
        self.0.push((Some(m), String::new()));
    }
    fn text(&mut self, t: String) {
        if !t.is_empty() {
            self.0.push((None, t));
        }
    }

    /// The whole sequence as one string, markers written as their symbols.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (m, t) in &self.0 {
            match m {
                Some(m) => s.push_str(m.symbol()),
                None => s.push_str(t),
            }
        }
        s
    }
}

/// Cuts `text` to `max` characters, appending the truncation marker's text form when cut.
fn cut(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((i, _)) => (text[..i].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// Replaces the corpus's own `<truncated N more chars>` tail by nothing, reporting whether it
/// was there (the caller then writes the truncation marker).
fn strip_saved_truncation(text: &str) -> (&str, bool) {
    if let Some(pos) = text.rfind("\n<truncated ") {
        if text[pos..].trim_end().ends_with("more chars>") {
            return (&text[..pos + 1], true);
        }
    }
    (text, false)
}

/// Removes ANSI escape sequences (colour codes in tracebacks).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The text the model sees for a display or result bundle: `<mime>` placeholders for payloads
/// that are not plain text, then the `text/plain` form.
pub fn bundle_text(text: Option<&str>, mimes: &[String]) -> String {
    let mut s = String::new();
    for m in mimes {
        let textual = m.starts_with("text/") && text.is_some();
        if !textual {
            s.push('<');
            s.push_str(m);
            s.push('>');
        }
    }
    if let Some(t) = text {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(t);
    }
    s
}

/// The text the model sees for an error: the traceback's last lines, then `ename: evalue`.
pub fn error_text(ename: &str, evalue: &str, traceback: &[String], keep: usize) -> String {
    let last = format!("{ename}: {evalue}");
    let joined = strip_ansi(&traceback.join("\n"));
    let mut lines: Vec<&str> = joined
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != last.trim())
        .filter(|l| !l.starts_with("----"))
        .collect();
    let tail = lines.split_off(lines.len().saturating_sub(keep));
    let mut s = String::new();
    for l in tail {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(&last);
    s
}

fn push_limited(seg: &mut Segments, text: &str, max: usize) {
    let (saved, was_cut) = strip_saved_truncation(text);
    let (kept, cut_here) = cut(saved, max);
    seg.text(kept);
    if was_cut || cut_here {
        seg.marker(Marker::Truncated);
    }
}

/// The marker and text for one output.
pub fn output_segments(out: &Output, limits: &TextLimits, seg: &mut Segments) {
    let (marker, text) = match out {
        Output::Stream { name, text } => (
            match name {
                StreamName::Stdout => Marker::Stdout,
                StreamName::Stderr => Marker::Stderr,
            },
            text.clone(),
        ),
        Output::Result { text, mimes } => (Marker::Result, bundle_text(text.as_deref(), mimes)),
        Output::Display { text, mimes } => (Marker::Display, bundle_text(text.as_deref(), mimes)),
        Output::Error {
            ename,
            evalue,
            traceback,
        } => (
            Marker::Error,
            error_text(ename, evalue, traceback, limits.traceback_lines),
        ),
    };
    seg.marker(marker);
    push_limited(seg, &text, limits.max_output_chars);
}

/// Merges consecutive stream outputs of the same name, as front ends display them.
pub fn merge_streams(outputs: &[Output]) -> Vec<Output> {
    let mut merged: Vec<Output> = Vec::with_capacity(outputs.len());
    for o in outputs {
        if let (Some(Output::Stream { name: n0, text: t0 }), Output::Stream { name, text }) =
            (merged.last_mut(), o)
        {
            if n0 == name {
                t0.push_str(text);
                continue;
            }
        }
        merged.push(o.clone());
    }
    merged
}

/// The segments of a code cell: `<|code|>`, its source, its outputs, and `<|end|>`.
pub fn code_cell_segments(source: &str, outputs: &[Output], limits: &TextLimits) -> Segments {
    let mut seg = Segments::default();
    seg.marker(Marker::Code);
    push_limited(&mut seg, source, limits.max_code_chars);
    for o in merge_streams(outputs) {
        output_segments(&o, limits, &mut seg);
    }
    seg.marker(Marker::End);
    seg
}

/// The whole notebook as one sequence of segments.
pub fn notebook_segments(nb: &Notebook, limits: &TextLimits) -> Segments {
    let mut seg = Segments::default();
    seg.marker(Marker::Notebook);
    for cell in &nb.cells {
        match cell.kind {
            CellKind::Code => {
                seg.0
                    .extend(code_cell_segments(&cell.source, &cell.outputs, limits).0);
            }
            CellKind::Markdown | CellKind::Raw if limits.max_markdown_chars > 0 => {
                seg.marker(if cell.kind == CellKind::Markdown {
                    Marker::Markdown
                } else {
                    Marker::Raw
                });
                push_limited(&mut seg, &cell.source, limits.max_markdown_chars);
            }
            CellKind::Markdown | CellKind::Raw => {}
        }
    }
    seg
}

/// Splits an error output's text back into `(ename, evalue, traceback lines)`.
pub fn parse_error_text(text: &str) -> (String, String, Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.last().copied().unwrap_or("");
    let (ename, evalue) = match last.split_once(": ") {
        Some((n, v)) if !n.contains(' ') => (n.to_string(), v.to_string()),
        _ => match last.strip_suffix(':') {
            Some(n) => (n.to_string(), String::new()),
            None => (last.trim().to_string(), String::new()),
        },
    };
    let ename = if ename.is_empty() {
        "Error".to_string()
    } else {
        ename
    };
    (ename, evalue, lines.iter().map(|l| l.to_string()).collect())
}

/// Splits a display/result text back into its `<mime>` placeholders and its plain text.
pub fn parse_bundle_text(text: &str) -> (Vec<String>, String) {
    let (first, rest) = match text.split_once('\n') {
        Some((f, r)) => (f, Some(r)),
        None => (text, None),
    };
    let mut mimes = Vec::new();
    let mut f = first;
    while let Some(stripped) = f.strip_prefix('<') {
        match stripped.find('>') {
            Some(end) if stripped[..end].contains('/') && !stripped[..end].contains(' ') => {
                mimes.push(stripped[..end].to_string());
                f = &stripped[end + 1..];
            }
            _ => break,
        }
    }
    if mimes.is_empty() || !f.is_empty() {
        return (Vec::new(), text.to_string());
    }
    (mimes, rest.unwrap_or("").to_string())
}

/// Whether a Python cell ends in an expression statement, the only case in which IPython shows
/// an `execute_result`: the last top-level statement is not an assignment, import, definition,
/// control-flow statement or magic, and does not end with `;`.
pub fn ends_in_expression(code: &str) -> bool {
    let lines: Vec<&str> = code
        .lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .collect();
    let Some(last) = lines.last() else {
        return false;
    };
    // The last statement starts at the last line that is not indented and does not continue
    // an open bracket; a simple bracket count over the whole cell is enough here.
    let start = lines
        .iter()
        .rposition(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .unwrap_or(0);
    let stmt = lines[start..].join("\n");
    let first = lines[start].trim_start();
    if last.starts_with(' ') || last.starts_with('\t') {
        // Inside a block (for/def/with ...), unless it is a bracket continuation.
        let opened = stmt.matches(['(', '[', '{']).count();
        let closed = stmt.matches([')', ']', '}']).count();
        if opened == 0 || opened != closed {
            return false;
        }
    }
    if stmt.trim_end().ends_with(';') {
        return false;
    }
    const KEYWORDS: [&str; 24] = [
        "import ",
        "from ",
        "def ",
        "class ",
        "for ",
        "while ",
        "if ",
        "with ",
        "try:",
        "return",
        "del ",
        "pass",
        "assert ",
        "raise",
        "global ",
        "nonlocal ",
        "elif ",
        "else:",
        "except",
        "finally:",
        "async ",
        "@",
        "%",
        "!",
    ];
    if KEYWORDS.iter().any(|k| first.starts_with(k)) || first.starts_with("print(") {
        return false;
    }
    // A top-level `=` (not ==, <=, >=, !=, and not inside brackets) is an assignment.
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let chars: Vec<char> = stmt.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '=' if depth == 0 => {
                let prev = if i > 0 { chars[i - 1] } else { ' ' };
                let next = chars.get(i + 1).copied().unwrap_or(' ');
                if next != '=' && !matches!(prev, '=' | '<' | '>' | '!') {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn expressions_and_statements() {
        use super::ends_in_expression as e;
        assert!(e("6*7"));
        assert!(e("x = 1\nx"));
        assert!(e("df.head()"));
        assert!(e("a == b"));
        assert!(e("plt.plot(\n    [1, 2],\n    [3, 4],\n)"));
        assert!(!e("x = 1"));
        assert!(!e("x += 1"));
        assert!(!e("import numpy as np"));
        assert!(!e("print('a = b')"));
        assert!(!e("for i in x:\n    i"));
        assert!(!e("def f():\n    return 1"));
        assert!(!e("x;"));
        assert!(!e("%matplotlib inline"));
        assert!(!e("# just a comment"));
        assert!(e("f(a=1)"));
    }

    use super::*;

    #[test]
    fn code_cell_text_has_markers_and_placeholders() {
        let outs = vec![
            Output::Stream {
                name: StreamName::Stdout,
                text: "a\n".into(),
            },
            Output::Stream {
                name: StreamName::Stdout,
                text: "b\n".into(),
            },
            Output::Display {
                text: Some("<Figure size 432x288 with 1 Axes>".into()),
                mimes: vec!["image/png".into()],
            },
        ];
        let s = code_cell_segments("print('a')", &outs, &TextLimits::default()).to_text();
        assert_eq!(
            s,
            "<|code|>print('a')<|stdout|>a\nb\n<|display|><image/png>\n<Figure size 432x288 with 1 Axes><|end|>"
        );
        let (mimes, plain) = parse_bundle_text("<image/png>\n<Figure size 432x288 with 1 Axes>");
        assert_eq!(mimes, vec!["image/png".to_string()]);
        assert_eq!(plain, "<Figure size 432x288 with 1 Axes>");
    }

    #[test]
    fn markdown_cells_are_left_out_unless_a_limit_keeps_them() {
        use crate::notebook::{Cell, CellKind, Notebook};
        let cell = |kind, source: &str| Cell {
            kind,
            source: source.into(),
            outputs: Vec::new(),
        };
        let nb = Notebook {
            path: "t.ipynb".into(),
            nbformat_minor: 5,
            language: None,
            cells: vec![
                cell(CellKind::Markdown, "# Title"),
                cell(CellKind::Code, "x = 1"),
                cell(CellKind::Raw, "raw text"),
            ],
        };
        let plain = notebook_segments(&nb, &TextLimits::default()).to_text();
        assert_eq!(plain, "<|notebook|><|code|>x = 1<|end|>");
        let kept = TextLimits {
            max_markdown_chars: 3,
            ..TextLimits::default()
        };
        assert_eq!(
            notebook_segments(&nb, &kept).to_text(),
            "<|notebook|><|markdown|># T<|truncated|><|code|>x = 1<|end|><|raw|>raw<|truncated|>"
        );
    }

    #[test]
    fn long_outputs_are_cut_and_errors_keep_their_tail() {
        let limits = TextLimits {
            max_output_chars: 5,
            ..TextLimits::default()
        };
        let outs = vec![Output::Stream {
            name: StreamName::Stdout,
            text: "0123456789".into(),
        }];
        let s = code_cell_segments("x", &outs, &limits).to_text();
        assert_eq!(s, "<|code|>x<|stdout|>01234<|truncated|><|end|>");
        let tb = vec![
            "\u{1b}[0;31m---------------\u{1b}[0m".to_string(),
            "Cell In[1], line 1\n----> 1 1/0".to_string(),
            "\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero".to_string(),
        ];
        let t = error_text("ZeroDivisionError", "division by zero", &tb, 2);
        assert_eq!(t, "Cell In[1], line 1\nZeroDivisionError: division by zero");
        let (n, v, _) = parse_error_text(&t);
        assert_eq!(
            (n.as_str(), v.as_str()),
            ("ZeroDivisionError", "division by zero")
        );
    }
}
