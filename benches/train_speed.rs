//! Training and generation speed: our train step (batched TBPTT) against the same model in
//! PyTorch from Python and against a batch-1, one-token-per-step loop, plus greedy generation
//! cost per token. Run with `cargo bench --bench train_speed` (or `benches/train_bench.sh`).
//!
//! Environment: `NOTEBOOK_PREDICTOR_TORCH_PYTHON` names a Python with torch (default: the
//! bench venv under `~/.cache/notebook-predictor/bench-venv`, when present);
//! `NOTEBOOK_PREDICTOR_BENCH_THREADS` sets the torch threads of both sides (default 1);
//! `NOTEBOOK_PREDICTOR_BENCH_STEPS` the measured batched steps (default 6).

use notebook_predictor::model::{GruLm, ModelConfig};
use notebook_predictor::predictor::sampling::{Sampler, Sampling};
use notebook_predictor::train::{train_step, Adam};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

const V: i64 = 8000;
const E: i64 = 256;
const H: i64 = 512;
const LAYERS: i64 = 1;
const B: i64 = 32;
const T: i64 = 128;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn config() -> ModelConfig {
    ModelConfig {
        vocab_size: V,
        embed_dim: E,
        hidden_size: H,
        num_layers: LAYERS,
        dropout: 0.0,
        tie_weights: false,
    }
}

/// Tokens per second of `train_step` at batch `b` × length `t` on random tokens.
fn train_tokens_per_s(b: i64, t: i64, steps: usize) -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GruLm::new(&vs.root(), config());
    let mut adam = Adam::new(&vs);
    let data = Tensor::randint(V, [steps as i64 + 2, b, t + 1], (Kind::Int64, Device::Cpu));
    let mut h = model.zero_state(b, Device::Cpu);
    let mut run = |i: i64, h: &Tensor| {
        let chunk = data.get(i);
        let x = chunk.narrow(1, 0, t).contiguous();
        let y = chunk.narrow(1, 1, t).contiguous();
        train_step(&model, &mut adam, &x, &y, h, 1e-3, 1.0).1
    };
    for i in 0..2 {
        h = run(i, &h);
    }
    let start = Instant::now();
    for i in 0..steps as i64 {
        h = run(i + 2, &h);
    }
    (steps as i64 * b * t) as f64 / start.elapsed().as_secs_f64()
}

/// Milliseconds per generated token: one token fed at a time, logits to the CPU, greedy pick,
/// as the predictor does.
fn generation_ms_per_token(tokens: usize) -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = GruLm::new(&vs.root(), config());
    let _guard = tch::no_grad_guard();
    let mut sampler = Sampler::new(Sampling::greedy());
    let mut h = model.zero_state(1, Device::Cpu);
    let mut next = 1u32;
    let mut step = |next: u32, h: &Tensor| {
        let x = Tensor::from_slice(&[i64::from(next)]).view([1, 1]);
        let (out, h2) = model.advance(&x, h);
        let logits = model.head(&out.select(1, -1)).view([-1]);
        let logits = Vec::<f32>::try_from(logits).expect("logits");
        (sampler.pick(&logits, None).0, h2)
    };
    for _ in 0..10 {
        (next, h) = step(next, &h);
    }
    let start = Instant::now();
    for _ in 0..tokens {
        (next, h) = step(next, &h);
    }
    start.elapsed().as_secs_f64() * 1000.0 / tokens as f64
}

fn torch_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NOTEBOOK_PREDICTOR_TORCH_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let venv = dirs::cache_dir()?.join("notebook-predictor/bench-venv/bin/python");
    venv.exists().then_some(venv)
}

/// PyTorch's tokens per second, or why there is no figure.
fn torch_tokens_per_s(steps: usize, threads: usize) -> Result<(f64, String), String> {
    let py = torch_python().ok_or("torch for Python not installed")?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/torch_reference.py");
    let args: Vec<String> = [V, E, H, LAYERS, B, T, steps as i64, threads as i64]
        .iter()
        .map(i64::to_string)
        .collect();
    let out = Command::new(&py)
        .arg(&script)
        .args(&args)
        .output()
        .map_err(|e| format!("{}: {e}", py.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'torch'") {
            return Err("torch for Python not installed".into());
        }
        return Err(format!(
            "torch_reference.py failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let v: serde_json::Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("unreadable output: {text}"))?;
    let tps = v["tokens_per_s"].as_f64().ok_or("no tokens_per_s")?;
    Ok((tps, v["torch"].as_str().unwrap_or("?").to_string()))
}

fn main() {
    let threads = env_num("NOTEBOOK_PREDICTOR_BENCH_THREADS", 1);
    let steps = env_num("NOTEBOOK_PREDICTOR_BENCH_STEPS", 6);
    tch::set_num_threads(threads as i32);
    println!(
        "model V={V} E={E} H={H} layers={LAYERS}; batch {B}x{T}; {threads} torch thread(s); \
         {steps} measured steps; libtorch CPU"
    );
    let ours = train_tokens_per_s(B, T, steps);
    let torch = torch_tokens_per_s(steps, threads);
    let batch1 = train_tokens_per_s(1, 1, 60);
    let gen_ms = generation_ms_per_token(200);

    let row = |what: &str, value: String, ratio: String, goal: &str| {
        println!("| {what:<50} | {value:>22} | {ratio:>18} | {goal:<22} |");
    };
    println!(
        "| {:<50} | {:>22} | {:>18} | {:<22} |",
        "measurement", "value", "ours / this", "goal"
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(52),
        "-".repeat(24),
        "-".repeat(20),
        "-".repeat(24)
    );
    row(
        "(a) our train step, B=32 T=128",
        format!("{ours:.0} tok/s"),
        "1.00x".into(),
        "",
    );
    match &torch {
        Ok((tps, version)) => row(
            &format!("(b) PyTorch {version} from Python, same batch"),
            format!("{tps:.0} tok/s"),
            format!("{:.2}x", ours / tps),
            ">= 1.0x",
        ),
        Err(why) => row(
            "(b) PyTorch from Python, same batch",
            why.clone(),
            "-".into(),
            ">= 1.0x",
        ),
    }
    row(
        "(c) batch-1 loop, one token per step",
        format!("{batch1:.0} tok/s"),
        format!("{:.1}x", ours / batch1),
        ">= 20x",
    );
    row(
        "(d) greedy generation, one token at a time",
        format!("{gen_ms:.3} ms/token"),
        "-".into(),
        "<= 1 ms/token",
    );
}
