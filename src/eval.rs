//! `eval`: what users will see. Predicts every code cell's output and every next cell the way the
//! kernel does, compares them with the saved notebook, and scores the "no output" baseline beside.

use crate::notebook::{CellKind, Notebook, Output};
use crate::predictor::{OutputKind, Predictor, Quiet};
use crate::sequence::{code_cell_segments, Marker, Segments, TextLimits};
use crate::train::token_parts;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// chrF: character n-gram F-score with n = 1..=6 and β = 2, on a 0–100 scale. Whitespace is
/// ignored, as in sacreBLEU. Two empty texts score 100.
pub fn chrf(hyp: &str, reference: &str) -> f64 {
    const N: usize = 6;
    const BETA: f64 = 2.0;
    let h: Vec<char> = hyp.chars().filter(|c| !c.is_whitespace()).collect();
    let r: Vec<char> = reference.chars().filter(|c| !c.is_whitespace()).collect();
    if h.is_empty() && r.is_empty() {
        return 100.0;
    }
    if h.is_empty() || r.is_empty() {
        return 0.0;
    }
    fn grams(s: &[char], n: usize) -> HashMap<&[char], usize> {
        let mut m = HashMap::new();
        for w in s.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
        m
    }
    let (mut p_sum, mut r_sum, mut count) = (0.0, 0.0, 0usize);
    for n in 1..=N {
        let hg = grams(&h, n);
        let rg = grams(&r, n);
        let h_total: usize = hg.values().sum();
        let r_total: usize = rg.values().sum();
        if h_total == 0 || r_total == 0 {
            continue;
        }
        let matched: usize = hg
            .iter()
            .map(|(g, &c)| c.min(rg.get(g).copied().unwrap_or(0)))
            .sum();
        p_sum += matched as f64 / h_total as f64;
        r_sum += matched as f64 / r_total as f64;
        count += 1;
    }
    if count == 0 {
        return 0.0;
    }
    let (p, r) = (p_sum / count as f64, r_sum / count as f64);
    if p + r == 0.0 {
        return 0.0;
    }
    let b2 = BETA * BETA;
    100.0 * (1.0 + b2) * p * r / (b2 * p + r)
}

/// A cell's outputs as (kind, text) pairs, in the form the model learns them.
pub fn real_outputs(
    source: &str,
    outputs: &[Output],
    limits: &TextLimits,
) -> Vec<(Marker, String)> {
    let seg: Segments = code_cell_segments(source, outputs, limits);
    let mut out: Vec<(Marker, String)> = Vec::new();
    for (m, t) in seg.0 {
        match m {
            Some(m) if m.is_output() => out.push((m, String::new())),
            Some(_) => {}
            None => {
                if let Some(last) = out.last_mut() {
                    last.1.push_str(&t);
                }
            }
        }
    }
    out
}

fn kind_marker(k: OutputKind) -> Marker {
    match k {
        OutputKind::Stdout => Marker::Stdout,
        OutputKind::Stderr => Marker::Stderr,
        OutputKind::Result => Marker::Result,
        OutputKind::Display => Marker::Display,
        OutputKind::Error => Marker::Error,
    }
}

/// Sums of one group's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub notebooks: usize,
    pub cells: usize,
    pub cells_with_text_output: usize,
    pub cells_without_output: usize,
    pub model_exact: usize,
    pub model_exact_text: usize,
    pub model_chrf_text_sum: f64,
    pub model_has_output_correct: usize,
    pub baseline_exact: usize,
    pub baseline_exact_text: usize,
    pub baseline_chrf_text_sum: f64,
    pub baseline_has_output_correct: usize,
    pub next_cells: usize,
    pub next_exact: usize,
    pub next_first_line_exact: usize,
    pub next_chrf_sum: f64,
    pub code_bits: f64,
    pub code_chars: usize,
    pub output_bits: f64,
    pub output_chars: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.notebooks += o.notebooks;
        self.cells += o.cells;
        self.cells_with_text_output += o.cells_with_text_output;
        self.cells_without_output += o.cells_without_output;
        self.model_exact += o.model_exact;
        self.model_exact_text += o.model_exact_text;
        self.model_chrf_text_sum += o.model_chrf_text_sum;
        self.model_has_output_correct += o.model_has_output_correct;
        self.baseline_exact += o.baseline_exact;
        self.baseline_exact_text += o.baseline_exact_text;
        self.baseline_chrf_text_sum += o.baseline_chrf_text_sum;
        self.baseline_has_output_correct += o.baseline_has_output_correct;
        self.next_cells += o.next_cells;
        self.next_exact += o.next_exact;
        self.next_first_line_exact += o.next_first_line_exact;
        self.next_chrf_sum += o.next_chrf_sum;
        self.code_bits += o.code_bits;
        self.code_chars += o.code_chars;
        self.output_bits += o.output_bits;
        self.output_chars += o.output_chars;
    }

    /// The headline figures of this group.
    pub fn summary(&self) -> Summary {
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        let avg = |a: f64, b: usize| if b == 0 { f64::NAN } else { a / b as f64 };
        Summary {
            notebooks: self.notebooks,
            cells: self.cells,
            cells_with_text_output: self.cells_with_text_output,
            share_without_output: ratio(self.cells_without_output, self.cells),
            model: SideSummary {
                exact_all: ratio(self.model_exact, self.cells),
                exact_text: ratio(self.model_exact_text, self.cells_with_text_output),
                chrf_text: avg(self.model_chrf_text_sum, self.cells_with_text_output),
                has_output_accuracy: ratio(self.model_has_output_correct, self.cells),
            },
            baseline: SideSummary {
                exact_all: ratio(self.baseline_exact, self.cells),
                exact_text: ratio(self.baseline_exact_text, self.cells_with_text_output),
                chrf_text: avg(self.baseline_chrf_text_sum, self.cells_with_text_output),
                has_output_accuracy: ratio(self.baseline_has_output_correct, self.cells),
            },
            next_cell_exact: ratio(self.next_exact, self.next_cells),
            next_cell_first_line_exact: ratio(self.next_first_line_exact, self.next_cells),
            next_cell_chrf: avg(self.next_chrf_sum, self.next_cells),
            bits_per_char_code: avg(self.code_bits, self.code_chars),
            bits_per_char_output: avg(self.output_bits, self.output_chars),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SideSummary {
    pub exact_all: f64,
    pub exact_text: f64,
    pub chrf_text: f64,
    pub has_output_accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub notebooks: usize,
    pub cells: usize,
    pub cells_with_text_output: usize,
    pub share_without_output: f64,
    pub model: SideSummary,
    pub baseline: SideSummary,
    pub next_cell_exact: f64,
    pub next_cell_first_line_exact: f64,
    pub next_cell_chrf: f64,
    pub bits_per_char_code: f64,
    pub bits_per_char_output: f64,
}

/// The result of an evaluation: per folder and overall.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: String,
    pub folders: BTreeMap<String, Summary>,
    pub overall: Summary,
    pub skipped: Vec<String>,
}

/// Evaluates one notebook from a fresh session.
pub fn eval_notebook(p: &mut Predictor, nb: &Notebook, limits: &TextLimits) -> Tally {
    let mut t = Tally {
        notebooks: 1,
        ..Tally::default()
    };
    p.reset();
    let ln2 = std::f64::consts::LN_2;
    for cell in nb.cells.iter().filter(|c| c.kind == CellKind::Code) {
        // The next cell, predicted before it is seen.
        let guess = p.next_cell();
        let real_code = cell.source.trim_end();
        let guess_code = guess.text.trim_end();
        t.next_cells += 1;
        t.next_exact += usize::from(guess_code == real_code);
        t.next_first_line_exact +=
            usize::from(guess_code.lines().next() == real_code.lines().next());
        t.next_chrf_sum += chrf(guess_code, real_code);

        // Bits per character of the real code and the real outputs.
        let seg = code_cell_segments(&cell.source, &cell.outputs, limits);
        if let Ok(ids) = p.tokenizer().encode_segments(&seg) {
            let lp = p.score(&ids);
            let parts = token_parts(p.tokenizer(), &ids);
            for (k, &id) in ids.iter().enumerate() {
                let bits = -lp.get(k).copied().unwrap_or(0.0) / ln2;
                match parts[k] {
                    crate::sequence::Part::Code => {
                        t.code_bits += bits;
                        t.code_chars += p.tokenizer().token_chars(id);
                    }
                    crate::sequence::Part::Output => {
                        t.output_bits += bits;
                        t.output_chars += p.tokenizer().token_chars(id);
                    }
                    crate::sequence::Part::Marker => {
                        if k > 0 {
                            if let Some(m) = p.tokenizer().marker(id) {
                                if m.is_output() || m == Marker::End {
                                    t.output_bits += bits;
                                }
                            }
                        }
                    }
                    crate::sequence::Part::Other => {}
                }
            }
        }

        // The output, predicted as the kernel predicts it.
        let real = real_outputs(&cell.source, &cell.outputs, limits);
        let pred = p.predict_cell(&cell.source, &mut Quiet);
        let predicted: Vec<(Marker, String)> = pred
            .outputs
            .iter()
            .map(|o| (kind_marker(o.kind), o.text.clone()))
            .collect();
        let real_text: String = real.iter().map(|r| r.1.as_str()).collect();
        let pred_text: String = predicted.iter().map(|r| r.1.as_str()).collect();
        let has_text = !real.is_empty() && !real_text.trim().is_empty();
        t.cells += 1;
        let exact = predicted == real;
        t.model_exact += usize::from(exact);
        t.model_has_output_correct += usize::from(real.is_empty() == predicted.is_empty());
        t.baseline_exact += usize::from(real.is_empty());
        t.baseline_has_output_correct += usize::from(real.is_empty());
        if real.is_empty() {
            t.cells_without_output += 1;
        }
        if has_text {
            t.cells_with_text_output += 1;
            t.model_exact_text += usize::from(exact);
            t.model_chrf_text_sum += chrf(&pred_text, &real_text);
            t.baseline_chrf_text_sum += chrf("", &real_text);
        }
    }
    t
}

/// The folder a notebook is reported under: its first path component below the root it was
/// found in.
fn group_of(root: &Path, file: &Path) -> String {
    match file.strip_prefix(root) {
        Ok(rel) => {
            let comps: Vec<_> = rel.components().collect();
            if comps.len() > 1 {
                comps[0].as_os_str().to_string_lossy().into_owned()
            } else {
                ".".to_string()
            }
        }
        Err(_) => file
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| ".".into()),
    }
}

/// Evaluates every notebook under `roots`. `progress` is called after each notebook.
pub fn evaluate(
    p: &mut Predictor,
    roots: &[PathBuf],
    mut progress: impl FnMut(&Path),
) -> Result<Report, crate::notebook::NotebookError> {
    let limits = p.checkpoint().config.text;
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let mut skipped = Vec::new();
    for root in roots {
        for file in crate::notebook::find_notebooks(std::slice::from_ref(root))? {
            match Notebook::read(&file) {
                Ok(nb) => {
                    let t = eval_notebook(p, &nb, &limits);
                    groups.entry(group_of(root, &file)).or_default().add(&t);
                }
                Err(e) => skipped.push(e.to_string()),
            }
            progress(&file);
        }
    }
    let mut overall = Tally::default();
    for t in groups.values() {
        overall.add(t);
    }
    Ok(Report {
        model: p.checkpoint().path.display().to_string(),
        folders: groups
            .iter()
            .map(|(k, v)| (k.clone(), v.summary()))
            .collect(),
        overall: overall.summary(),
        skipped,
    })
}

/// The report as a text table: one row per folder and one overall, model beside baseline.
pub fn table(report: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<44} {:>5} {:>6} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>6} {:>6} {:>6} | {:>5} {:>5}\n",
        "folder", "nbs", "cells",
        "exact", "base", "exTxt", "base", "chrF", "base", "hasOut", "base",
        "nxtEx", "nxtL1", "nxtF", "bpcC", "bpcO"
    ));
    let pct = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * v)
        }
    };
    let num = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{v:.1}")
        }
    };
    let num2 = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{v:.2}")
        }
    };
    let mut row = |name: &str, m: &Summary| {
        let name = if name.chars().count() > 44 {
            name.chars().take(43).collect::<String>() + "…"
        } else {
            name.to_string()
        };
        s.push_str(&format!(
            "{:<44} {:>5} {:>6} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>6} {:>6} {:>6} | {:>5} {:>5}\n",
            name,
            m.notebooks,
            m.cells,
            pct(m.model.exact_all),
            pct(m.baseline.exact_all),
            pct(m.model.exact_text),
            pct(m.baseline.exact_text),
            num(m.model.chrf_text),
            num(m.baseline.chrf_text),
            pct(m.model.has_output_accuracy),
            pct(m.baseline.has_output_accuracy),
            pct(m.next_cell_exact),
            pct(m.next_cell_first_line_exact),
            num(m.next_cell_chrf),
            num2(m.bits_per_char_code),
            num2(m.bits_per_char_output),
        ));
    };
    for (k, v) in &report.folders {
        row(k, v);
    }
    row("OVERALL", &report.overall);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrf_is_100_for_equal_and_0_for_disjoint() {
        assert!((chrf("hello world", "hello world") - 100.0).abs() < 1e-9);
        assert_eq!(chrf("abc", "xyz"), 0.0);
        assert_eq!(chrf("", "x"), 0.0);
        let partial = chrf("hello", "hello world");
        assert!(partial > 0.0 && partial < 100.0, "{partial}");
    }

    #[test]
    fn chrf_matches_a_hand_computed_value() {
        // hyp "ab", ref "abc": n=1: P=2/2, R=2/3; n=2: P=1/1, R=1/2; n>=3: hyp has no n-grams.
        // sacreBLEU averages over the orders both sides have: P=1, R=(2/3+1/2)/2=7/12.
        let (p, r) = (1.0, 7.0 / 12.0);
        let want = 100.0 * 5.0 * p * r / (4.0 * p + r);
        assert!((chrf("ab", "abc") - want).abs() < 1e-9);
    }
}
