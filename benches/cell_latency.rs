//! Cell latency: milliseconds to predict one cell's output of exactly 64 tokens in cell 1 and in
//! cell 200 of a session (the GRU state is carried from cell to cell, so the two should match),
//! against re-reading the whole notebook for cell 200, and against the same prediction in
//! PyTorch from Python. Run with `benches/latency_bench.sh [MODEL_DIR]`.
//!
//! Environment: `NOTEBOOK_PREDICTOR_BENCH_MODEL` names a model folder whose output head cannot
//! end an output (tests/fixtures/make_babbler_model.py makes one from any model; the script does
//! this), so every output runs to the 64-token limit; `NOTEBOOK_PREDICTOR_BENCH_THREADS` sets the
//! torch threads of both sides (default 1); `NOTEBOOK_PREDICTOR_BENCH_SESSIONS` the number of
//! 200-cell sessions (default 3); `NOTEBOOK_PREDICTOR_TORCH_PYTHON` a Python with torch.

use notebook_predictor::notebook::{CellKind, Notebook};
use notebook_predictor::predictor::sampling::Sampling;
use notebook_predictor::predictor::{Predictor, Quiet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use tch::Device;

const OUTPUT_TOKENS: usize = 64;
const CELLS: usize = 200;
const PROBE: &str = "for i in range(64):\n    print(i)";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Code cells of the committed fixture notebooks, as filler for a long session.
fn filler_cells() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notebooks/train");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ipynb"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| Notebook::read(p).ok())
        .flat_map(|nb| nb.cells)
        .filter(|c| c.kind == CellKind::Code && !c.source.trim().is_empty())
        .map(|c| c.source)
        .collect()
}

fn torch_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NOTEBOOK_PREDICTOR_TORCH_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let venv = dirs::cache_dir()?.join("notebook-predictor/bench-venv/bin/python");
    venv.exists().then_some(venv)
}

/// PyTorch's median ms per cell for the same shapes, or why there is no figure.
fn torch_ms_per_cell(
    shape: [i64; 4],
    code_tokens: usize,
    cells: usize,
    threads: usize,
) -> Result<(f64, String), String> {
    let py = torch_python().ok_or("torch for Python not installed")?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/torch_reference.py");
    let mut args: Vec<String> = vec!["generate".into()];
    args.extend(shape.iter().map(i64::to_string));
    args.extend([code_tokens, OUTPUT_TOKENS, cells, threads].map(|n| n.to_string()));
    let out = Command::new(&py)
        .arg(&script)
        .args(&args)
        .output()
        .map_err(|e| format!("{}: {e}", py.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "torch_reference.py failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("unreadable output: {text}"))?;
    let times: Vec<f64> = v["ms_per_cell"]
        .as_array()
        .ok_or("no ms_per_cell")?
        .iter()
        .filter_map(|x| x.as_f64())
        .collect();
    Ok((
        median(&times),
        v["torch"].as_str().unwrap_or("?").to_string(),
    ))
}

fn main() {
    let threads = env_num("NOTEBOOK_PREDICTOR_BENCH_THREADS", 1);
    let sessions = env_num("NOTEBOOK_PREDICTOR_BENCH_SESSIONS", 3).max(1);
    tch::set_num_threads(threads as i32);
    let Some(model_dir) = std::env::var_os("NOTEBOOK_PREDICTOR_BENCH_MODEL").map(PathBuf::from)
    else {
        eprintln!("set NOTEBOOK_PREDICTOR_BENCH_MODEL (benches/latency_bench.sh does)");
        std::process::exit(2);
    };
    let mut p = Predictor::load(&model_dir, Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", model_dir.display()));
    p.limits.max_output_tokens = OUTPUT_TOKENS;
    let m = p.checkpoint().config.model;
    let filler = filler_cells();
    assert!(!filler.is_empty(), "no fixture code cells");
    let probe_tokens = p.tokenizer().encode(PROBE).map(|v| v.len()).unwrap_or(0) + 1;

    let (mut first, mut last, mut every, mut reread) = (vec![], vec![], vec![], vec![]);
    let mut short = 0usize;
    let mut per_cell: Vec<Vec<f64>> = vec![Vec::new(); CELLS];
    let mut history_tokens = 0usize;
    for s in 0..sessions {
        p.set_sampling(Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: s as u64,
        });
        p.reset();
        let mut fed: Vec<u32> = Vec::new();
        for k in 0..CELLS {
            let code = if k == 0 || k == CELLS - 1 {
                PROBE
            } else {
                filler[(k - 1) % filler.len()].as_str()
            };
            let t0 = Instant::now();
            let pred = p.predict_cell(code, &mut Quiet);
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            if pred.tokens != OUTPUT_TOKENS {
                short += 1;
                continue;
            }
            every.push(ms);
            per_cell[k].push(ms);
            if k == 0 {
                first.push(ms);
            } else if k == CELLS - 1 {
                last.push(ms);
            }
            if k < CELLS - 1 {
                // What a predictor without carried state re-reads for cell 200: each earlier
                // cell's marker and code, then its output and end marker (the cost of feeding
                // depends on the count of tokens, not on which they are).
                let code_ids = p.tokenizer().encode(code).unwrap_or_default();
                fed.push(0);
                fed.extend(code_ids.iter().copied());
                fed.extend((0..OUTPUT_TOKENS + 1).map(|i| code_ids.get(i).copied().unwrap_or(0)));
            }
        }
        // Cell 200 for a predictor that re-reads the notebook: feed the 199 cells before it
        // from a fresh state, then predict.
        history_tokens = fed.len();
        p.reset();
        let t0 = Instant::now();
        p.feed(&fed);
        let pred = p.predict_cell(PROBE, &mut Quiet);
        if pred.tokens == OUTPUT_TOKENS {
            reread.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let torch = torch_ms_per_cell(
        [m.vocab_size, m.embed_dim, m.hidden_size, m.num_layers],
        probe_tokens,
        20,
        threads,
    );

    let (c1, c200, all) = (median(&first), median(&last), median(&every));
    if let Some(csv) = std::env::var_os("NOTEBOOK_PREDICTOR_BENCH_CSV") {
        let rows: Vec<String> = per_cell
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{},{:.3}", k + 1, median(v)))
            .collect();
        let _ = std::fs::write(csv, format!("cell,median_ms\n{}\n", rows.join("\n")));
    }
    println!(
        "model {} (V={} E={} H={} layers={}), output head unable to end an output; \
         {threads} torch thread(s); {sessions} sessions of {CELLS} cells; outputs of exactly \
         {OUTPUT_TOKENS} tokens ({short} shorter outputs left out)",
        model_dir.display(),
        m.vocab_size,
        m.embed_dim,
        m.hidden_size,
        m.num_layers
    );
    let row = |what: &str, value: String, ratio: String| {
        println!("| {what:<58} | {value:>12} | {ratio:>14} |");
    };
    println!(
        "| {:<58} | {:>12} | {:>14} |",
        "measurement", "median", "ratio"
    );
    println!("|{}|{}|{}|", "-".repeat(60), "-".repeat(14), "-".repeat(16));
    row(
        "(a) predict one 64-token output, any cell",
        format!("{all:.1} ms"),
        "1.00x".into(),
    );
    row(
        "(b) the same cell as cell 1",
        format!("{c1:.1} ms"),
        "1.00x".into(),
    );
    row(
        "(c) the same cell as cell 200",
        format!("{c200:.1} ms"),
        format!("{:.2}x of (b)", c200 / c1),
    );
    row(
        &format!("(d) cell 200 re-reading the notebook ({history_tokens} tokens)"),
        format!("{:.1} ms", median(&reread)),
        format!("{:.1}x of (c)", median(&reread) / c200),
    );
    match torch {
        Ok((ms, version)) => row(
            &format!("(e) PyTorch {version} from Python, same shapes"),
            format!("{ms:.1} ms"),
            format!("{:.2}x of (a)", all / ms),
        ),
        Err(why) => row("(e) PyTorch from Python, same shapes", why, "-".into()),
    }
}
