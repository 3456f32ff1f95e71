//! The `Predictor`: a notebook session on a trained model. It carries the GRU state from cell to
//! cell, predicts each cell's output (feeding its own prediction back), and proposes the rest of
//! a cell or the next cell on a copy of the state.

pub mod sampling;

use crate::checkpoint::{self, CheckpointError, LoadedModel};
use crate::model::GruLm;
use crate::sequence::{parse_bundle_text, parse_error_text, Marker};
use crate::tokenizer::Tokenizer;
use sampling::{Sampler, Sampling};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The kind of one predicted output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Stdout,
    Stderr,
    Result,
    Display,
    Error,
}

impl OutputKind {
    fn from_marker(m: Marker) -> Option<OutputKind> {
        Some(match m {
            Marker::Stdout => OutputKind::Stdout,
            Marker::Stderr => OutputKind::Stderr,
            Marker::Result => OutputKind::Result,
            Marker::Display => OutputKind::Display,
            Marker::Error => OutputKind::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Stdout => "stdout",
            OutputKind::Stderr => "stderr",
            OutputKind::Result => "result",
            OutputKind::Display => "display",
            OutputKind::Error => "error",
        }
    }
}

/// One predicted output.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictedOutput {
    pub kind: OutputKind,
    pub text: String,
    /// Mean probability of this output's tokens.
    pub confidence: f64,
    /// True when generation stopped at the length limit.
    pub truncated: bool,
}

impl PredictedOutput {
    /// For display outputs: the `<mime>` placeholders and the plain text.
    pub fn display_parts(&self) -> (Vec<String>, String) {
        parse_bundle_text(&self.text)
    }

    /// For error outputs: `(ename, evalue, traceback lines)`.
    pub fn error_parts(&self) -> (String, String, Vec<String>) {
        parse_error_text(&self.text)
    }
}

/// The prediction for one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellPrediction {
    pub outputs: Vec<PredictedOutput>,
    /// Mean probability over every chosen token, including the "output or not" decision.
    pub confidence: f64,
    /// Probability the model gave to "no output" after this code.
    pub p_no_output: f64,
    pub tokens: usize,
    pub interrupted: bool,
}

/// A proposed continuation (rest of a cell, or a whole next cell).
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub text: String,
    pub confidence: f64,
}

/// Limits on generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Tokens generated for one cell's outputs at most.
    pub max_output_tokens: usize,
    /// Tokens generated for a completion or next cell at most.
    pub max_cell_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_tokens: 256,
            max_cell_tokens: 160,
        }
    }
}

/// Events reported while a cell's output is generated. Return `false` to stop.
pub trait Progress {
    fn output_started(&mut self, _kind: OutputKind) -> bool {
        true
    }
    fn text(&mut self, _kind: OutputKind, _text: &str) -> bool {
        true
    }
}

/// A progress sink that ignores everything.
pub struct Quiet;
impl Progress for Quiet {}

/// Splits decoded bytes into valid UTF-8 text as it arrives.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let s = s.to_string();
                self.pending.clear();
                s
            }
            Err(e) if e.error_len().is_none() => {
                let n = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.pending[..n]).into_owned();
                self.pending.drain(..n);
                s
            }
            Err(_) => {
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                s
            }
        }
    }

    fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// The model's view of a notebook session.
pub struct Predictor {
    loaded: LoadedModel,
    device: Device,
    /// Hidden state after everything fed so far: `[layers, 1, hidden]`.
    state: Tensor,
    /// Logits for the next token: `[vocab]` on the CPU.
    next_logits: Vec<f32>,
    pub limits: Limits,
    pub sampling: Sampling,
    sampler: Sampler,
    output_choices: Vec<u32>,
    cells: usize,
}

impl Predictor {
    /// Loads a model folder and starts a session.
    pub fn load(dir: &Path, device: Device) -> Result<Predictor, CheckpointError> {
        let loaded = checkpoint::load(dir, device)?;
        Ok(Predictor::new(loaded, device))
    }

    pub fn new(loaded: LoadedModel, device: Device) -> Predictor {
        let tok = &loaded.tokenizer;
        let mut output_choices: Vec<u32> = Marker::ALL
            .iter()
            .filter(|m| m.is_output())
            .map(|&m| tok.marker_id(m))
            .collect();
        output_choices.push(tok.marker_id(Marker::End));
        let state = loaded.model.zero_state(1, device);
        let mut p = Predictor {
            loaded,
            device,
            state,
            next_logits: Vec::new(),
            limits: Limits::default(),
            sampling: Sampling::greedy(),
            sampler: Sampler::new(Sampling::greedy()),
            output_choices,
            cells: 0,
        };
        p.reset();
        p
    }

    pub fn model(&self) -> &GruLm {
        &self.loaded.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.loaded.tokenizer
    }

    pub fn checkpoint(&self) -> &LoadedModel {
        &self.loaded
    }

    /// Cells predicted since the last reset.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Sets the sampling strategy (and reseeds).
    pub fn set_sampling(&mut self, sampling: Sampling) {
        self.sampling = sampling;
        self.sampler = Sampler::new(sampling);
    }

    /// Starts a new notebook: zero state, then the notebook marker.
    pub fn reset(&mut self) {
        self.state = self.loaded.model.zero_state(1, self.device);
        self.sampler = Sampler::new(self.sampling);
        self.cells = 0;
        let start = self.loaded.tokenizer.marker_id(Marker::Notebook);
        let (state, logits) = self.run(&self.state, &[start]);
        self.state = state;
        self.next_logits = logits;
    }

    /// Feeds tokens from `state`; returns the new state and the logits after the last token.
    fn run(&self, state: &Tensor, ids: &[u32]) -> (Tensor, Vec<f32>) {
        let _guard = tch::no_grad_guard();
        let x: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let xt = Tensor::from_slice(&x).view([1, -1]).to_device(self.device);
        let (out, h) = self.loaded.model.advance(&xt, state);
        let last = out.select(1, -1);
        let logits = self
            .loaded
            .model
            .head(&last)
            .view([-1])
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        (h, Vec::<f32>::try_from(logits).unwrap_or_default())
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        self.loaded.tokenizer.encode(text).unwrap_or_default()
    }

    /// Predicts the output of `code` as the next cell, feeding the code and the prediction into
    /// the session state.
    pub fn predict_cell(&mut self, code: &str, progress: &mut dyn Progress) -> CellPrediction {
        let tok = &self.loaded.tokenizer;
        let mut ids = vec![tok.marker_id(Marker::Code)];
        ids.extend(self.encode(code));
        let (state, logits) = self.run(&self.state, &ids);
        self.state = state;
        self.next_logits = logits;
        self.cells += 1;
        let end = tok.marker_id(Marker::End);
        let p_no_output = softmax_at(&self.next_logits, &self.output_choices, end);

        let mut outputs: Vec<PredictedOutput> = Vec::new();
        let mut probs: Vec<f64> = Vec::new();
        let mut tokens = 0usize;
        let mut interrupted = false;
        // The first token after code must open an output or end the cell. Python shows an
        // execute_result only when the cell ends in an expression, so no result otherwise.
        let result_id = self.loaded.tokenizer.marker_id(Marker::Result);
        let may_have_result = crate::sequence::ends_in_expression(code);
        let choices: Vec<u32> = self
            .output_choices
            .iter()
            .copied()
            .filter(|&id| may_have_result || id != result_id)
            .collect();
        let (mut next, p) = self.sampler.pick(&self.next_logits, Some(&choices));
        probs.push(p);
        let mut current: Option<OpenOutput> = None;
        loop {
            // Feed the chosen token.
            let (state, logits) = self.run(&self.state, &[next]);
            self.state = state;
            self.next_logits = logits;
            tokens += 1;
            match self.loaded.tokenizer.marker(next) {
                Some(Marker::End) => break,
                Some(m) if m.is_output() => {
                    if let Some(out) = finish_output(current.take(), false) {
                        outputs.push(out);
                    }
                    let kind = OutputKind::from_marker(m).unwrap_or(OutputKind::Stdout);
                    if !progress.output_started(kind) {
                        interrupted = true;
                        break;
                    }
                    current = Some(OpenOutput {
                        kind,
                        stream: Utf8Stream::default(),
                        probs: Vec::new(),
                        text: String::new(),
                        ids: Vec::new(),
                    });
                }
                Some(_) => {
                    // A new cell or a truncation: the outputs are over.
                    let end = self.loaded.tokenizer.marker_id(Marker::End);
                    let (state, logits) = self.run(&self.state, &[end]);
                    self.state = state;
                    self.next_logits = logits;
                    break;
                }
                None => {
                    if let Some(o) = current.as_mut() {
                        let text = o.stream.push(self.loaded.tokenizer.token_bytes(next));
                        o.text.push_str(&text);
                        if !text.is_empty() && !progress.text(o.kind, &text) {
                            interrupted = true;
                        }
                    }
                }
            }
            if interrupted {
                break;
            }
            if let Some(o) = current.as_mut() {
                o.ids.push(next);
            }
            let looping = current.as_ref().is_some_and(|o| repeats(&o.ids));
            if tokens >= self.limits.max_output_tokens || looping {
                let tok = &self.loaded.tokenizer;
                let tail = [tok.marker_id(Marker::Truncated), tok.marker_id(Marker::End)];
                let (state, logits) = self.run(&self.state, &tail);
                self.state = state;
                self.next_logits = logits;
                if let Some(out) = finish_output(current.take(), true) {
                    outputs.push(out);
                }
                break;
            }
            let (t, p) = self.sampler.pick(&self.next_logits, None);
            let (t, p) = if t == result_id && !may_have_result {
                // Not possible in Python: take the best token that is not a result marker.
                let allowed: Vec<u32> = (0..self.next_logits.len() as u32)
                    .filter(|&id| id != result_id)
                    .collect();
                self.sampler.pick(&self.next_logits, Some(&allowed))
            } else {
                (t, p)
            };
            next = t;
            probs.push(p);
            if let Some(o) = current.as_mut() {
                o.probs.push(p);
            }
        }
        if interrupted {
            // Close the cell in the state so the session stays well formed.
            let end = self.loaded.tokenizer.marker_id(Marker::End);
            let (state, logits) = self.run(&self.state, &[end]);
            self.state = state;
            self.next_logits = logits;
        }
        if let Some(out) = finish_output(current.take(), interrupted) {
            outputs.push(out);
        }
        CellPrediction {
            outputs,
            confidence: mean(&probs),
            p_no_output,
            tokens,
            interrupted,
        }
    }

    /// Proposes the rest of a partly typed cell (`prefix` is the text before the cursor), or the
    /// whole next cell when `prefix` is empty. The session state is not changed.
    pub fn complete(&mut self, prefix: &str) -> Suggestion {
        self.alternatives(prefix, 1)
            .into_iter()
            .next()
            .unwrap_or(Suggestion {
                text: String::new(),
                confidence: 0.0,
            })
    }

    /// Proposals for the rest of the cell after `prefix`, best first: the greedy continuation to
    /// the end of the cell; its first line alone when it runs over several lines, so the user
    /// can take just the line being typed; then up to `n - 1` that start with the next most
    /// likely tokens and run to the end of their line.
    ///
    /// The tokens of a half-typed word at the end of `prefix` are taken back and regenerated
    /// under the constraint that they spell the typed text ("token healing"), so `gree` can
    /// become `greet(...)` even though `gree` alone is not how the model saw that word.
    pub fn alternatives(&mut self, prefix: &str, n: usize) -> Vec<Suggestion> {
        let tok = &self.loaded.tokenizer;
        let mut ids = vec![tok.marker_id(Marker::Code)];
        let mut prefix_ids = self.encode(prefix);
        let mut heal: Vec<u8> = Vec::new();
        while let Some(&last) = prefix_ids.last() {
            let bytes = tok.token_bytes(last);
            let word_like = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
            let continues_word = heal.is_empty()
                || (bytes.last().is_some_and(|&b| word_like(b))
                    && heal.first().is_some_and(|&b| word_like(b)));
            if !continues_word || heal.len() + bytes.len() > 24 {
                break;
            }
            let mut joined = bytes.to_vec();
            joined.extend_from_slice(&heal);
            heal = joined;
            prefix_ids.pop();
            if !bytes.first().is_some_and(|&b| word_like(b)) {
                break;
            }
        }
        ids.extend(prefix_ids);
        let (state, logits) = self.run(&self.state, &ids);
        let cands = self.compatible(&heal);
        let p_of = |id: u32| softmax_at(&logits, &cands, id);
        let mut scored: Vec<(u32, f32)> = cands
            .iter()
            .map(|&id| (id, logits.get(id as usize).copied().unwrap_or(f32::MIN)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(n.max(1));
        let mut out: Vec<Suggestion> = Vec::new();
        for (rank, (first, _)) in scored.into_iter().enumerate() {
            let one_line = rank > 0;
            let (bytes, mut probs) = self.generate_from(&state, first, &heal, one_line);
            probs.insert(0, p_of(first));
            let rest = bytes.get(heal.len()..).unwrap_or(&[]);
            let text = String::from_utf8_lossy(rest).into_owned();
            let text = if one_line {
                text.split('\n').next().unwrap_or("").to_string()
            } else {
                text
            };
            let unlikely = rank > 0 && probs[0] < 0.02;
            if unlikely
                || (text.trim().is_empty() && rank > 0)
                || out.iter().any(|s| s.text == text)
            {
                continue;
            }
            let confidence = mean(&probs);
            let first_line = match text.split_once('\n') {
                Some((line, _)) if rank == 0 && !line.trim().is_empty() => Some(line.to_string()),
                _ => None,
            };
            out.push(Suggestion { text, confidence });
            if let Some(text) = first_line {
                out.push(Suggestion { text, confidence });
            }
        }
        out
    }

    /// Non-marker tokens whose bytes agree with `heal` (one is a prefix of the other); every
    /// non-marker token when `heal` is empty.
    fn compatible(&self, heal: &[u8]) -> Vec<u32> {
        let tok = &self.loaded.tokenizer;
        (0..tok.vocab_size() as u32)
            .filter(|&id| {
                let b = tok.token_bytes(id);
                !b.is_empty() && (heal.starts_with(b) || b.starts_with(heal))
            })
            .collect()
    }

    /// Greedy generation of cell text from `state`, starting with token `first`, until a marker
    /// or the limit (or the end of the line when `one_line`). While the text is shorter than
    /// `heal`, only tokens that keep spelling `heal` are allowed. Returns the bytes (including
    /// `first`'s) and the probabilities of the tokens after `first`.
    fn generate_from(
        &self,
        state: &Tensor,
        first: u32,
        heal: &[u8],
        one_line: bool,
    ) -> (Vec<u8>, Vec<f64>) {
        let tok = &self.loaded.tokenizer;
        let mut greedy = Sampler::new(Sampling::greedy());
        let mut bytes = tok.token_bytes(first).to_vec();
        let mut probs = Vec::new();
        let mut h = state.shallow_clone();
        let mut next = first;
        let mut ids = vec![first];
        for _ in 0..self.limits.max_cell_tokens {
            if one_line && bytes.len() > heal.len() && bytes[heal.len()..].contains(&b'\n') {
                break;
            }
            let (h2, logits) = self.run(&h, &[next]);
            h = h2;
            let (t, p) = if bytes.len() < heal.len() {
                let allowed = self.compatible(&heal[bytes.len()..]);
                greedy.pick(&logits, Some(&allowed))
            } else {
                greedy.pick(&logits, None)
            };
            if tok.marker(t).is_some() {
                break;
            }
            probs.push(p);
            bytes.extend_from_slice(tok.token_bytes(t));
            ids.push(t);
            if repeats(&ids) || ends_with_repeated_line(&mut bytes) {
                break;
            }
            next = t;
        }
        (bytes, probs)
    }

    /// The whole next cell the model expects, without changing the session.
    pub fn next_cell(&mut self) -> Suggestion {
        self.complete("")
    }

    /// Generates a whole new notebook: `(code, outputs)` for `cells` code cells, sampled with
    /// the predictor's sampling. Uses and resets the session.
    pub fn generate_notebook(&mut self, cells: usize) -> Vec<(String, CellPrediction)> {
        self.reset();
        let mut result = Vec::new();
        for _ in 0..cells {
            let tok = &self.loaded.tokenizer;
            let code_id = tok.marker_id(Marker::Code);
            let (mut h, mut next_logits) = self.run(&self.state, &[code_id]);
            let mut bytes = Vec::new();
            for _ in 0..self.limits.max_cell_tokens {
                let (t, _) = self.sampler.pick(&next_logits, None);
                if self.loaded.tokenizer.marker(t).is_some() {
                    break;
                }
                bytes.extend_from_slice(self.loaded.tokenizer.token_bytes(t));
                let (h2, l) = self.run(&h, &[t]);
                h = h2;
                next_logits = l;
            }
            let code = String::from_utf8_lossy(&bytes).trim_end().to_string();
            let pred = self.predict_cell(&code, &mut Quiet);
            result.push((code, pred));
        }
        result
    }

    /// Natural-log probability the model gives `ids` after the current state, token by token,
    /// without changing the session. Returns one value per token.
    pub fn score(&self, ids: &[u32]) -> Vec<f64> {
        if ids.is_empty() {
            return Vec::new();
        }
        let _guard = tch::no_grad_guard();
        let mut out = Vec::with_capacity(ids.len());
        let first = log_softmax_at(&self.next_logits, ids[0]);
        out.push(first);
        if ids.len() > 1 {
            let x: Vec<i64> = ids[..ids.len() - 1].iter().map(|&i| i64::from(i)).collect();
            let xt = Tensor::from_slice(&x).view([1, -1]).to_device(self.device);
            let (o, _) = self.loaded.model.advance(&xt, &self.state);
            let logp = self
                .loaded
                .model
                .head(&o)
                .view([x.len() as i64, -1])
                .log_softmax(-1, Kind::Float);
            let y: Vec<i64> = ids[1..].iter().map(|&i| i64::from(i)).collect();
            let yt = Tensor::from_slice(&y).view([-1, 1]).to_device(self.device);
            let lp = logp.gather(1, &yt, false).view([-1]).to_device(Device::Cpu);
            out.extend(
                Vec::<f32>::try_from(lp)
                    .unwrap_or_default()
                    .into_iter()
                    .map(f64::from),
            );
        }
        out
    }

    /// Feeds tokens into the session as given (e.g. real outputs), keeping the state.
    pub fn feed(&mut self, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        let (state, logits) = self.run(&self.state, ids);
        self.state = state;
        self.next_logits = logits;
    }

    /// A copy of the session state, to restore later with `restore`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state.copy(),
            next_logits: self.next_logits.clone(),
            cells: self.cells,
        }
    }

    pub fn restore(&mut self, snap: &Snapshot) {
        self.state = snap.state.copy();
        self.next_logits = snap.next_logits.clone();
        self.cells = snap.cells;
    }
}

/// A saved session state (see `Predictor::snapshot`).
pub struct Snapshot {
    state: Tensor,
    next_logits: Vec<f32>,
    cells: usize,
}

/// An output being generated.
struct OpenOutput {
    kind: OutputKind,
    stream: Utf8Stream,
    probs: Vec<f64>,
    text: String,
    ids: Vec<u32>,
}

/// When the last complete line of `bytes` already appeared earlier (a loop over several
/// lines), cuts it off and returns true.
fn ends_with_repeated_line(bytes: &mut Vec<u8>) -> bool {
    if bytes.last() != Some(&b'\n') {
        return false;
    }
    let body = &bytes[..bytes.len() - 1];
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = &body[start..];
    if line.iter().filter(|b| !b.is_ascii_whitespace()).count() < 4 {
        return false;
    }
    let earlier = body[..start].split(|&b| b == b'\n').any(|l| l == line);
    if earlier {
        bytes.truncate(start);
    }
    earlier
}

/// True when the tail of `ids` is one short pattern (1 to 8 tokens) repeated at least 6 times
/// (or one token 12 times): greedy decoding has fallen into a loop it will not leave.
fn repeats(ids: &[u32]) -> bool {
    for period in 1..=8usize {
        let times = if period == 1 { 12 } else { 6 };
        let need = period * times;
        if ids.len() < need {
            continue;
        }
        let tail = &ids[ids.len() - need..];
        if tail.chunks(period).all(|c| c == &tail[..period]) {
            return true;
        }
    }
    false
}

fn finish_output(current: Option<OpenOutput>, truncated: bool) -> Option<PredictedOutput> {
    let mut o = current?;
    let rest = o.stream.finish();
    o.text.push_str(&rest);
    Some(PredictedOutput {
        kind: o.kind,
        text: o.text,
        confidence: mean(&o.probs),
        truncated,
    })
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        1.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Probability of `target` under the softmax of `logits` restricted to `among`.
fn softmax_at(logits: &[f32], among: &[u32], target: u32) -> f64 {
    let vals: Vec<f64> = among
        .iter()
        .filter_map(|&i| logits.get(i as usize).map(|&l| f64::from(l)))
        .collect();
    let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = vals.iter().map(|v| (v - max).exp()).sum();
    logits
        .get(target as usize)
        .map(|&l| (f64::from(l) - max).exp() / z)
        .unwrap_or(0.0)
}

fn log_softmax_at(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = logits.iter().map(|&v| f64::from(v - max).exp()).sum();
    logits
        .get(target as usize)
        .map(|&l| f64::from(l - max) - z.ln())
        .unwrap_or(f64::NEG_INFINITY)
}
