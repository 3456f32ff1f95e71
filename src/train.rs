//! Training: reading the corpus, training the tokenizer, batching notebook streams for truncated
//! backprop through time, Adam with clipping and a schedule, validation, metrics and checkpoints.

use crate::checkpoint::{
    self, CheckpointConfig, CheckpointError, CorpusSummary, TrainingState, ValidMetrics,
};
use crate::model::{GruLm, ModelConfig};
use crate::notebook::{find_notebooks, CellKind, Notebook, NotebookError};
use crate::sequence::{notebook_segments, Marker, Part, TextLimits};
use crate::tokenizer::{self, Tokenizer, TokenizerError};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{nn, Device, Kind, Tensor};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Notebook(#[from] NotebookError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("no usable notebooks to train on ({skipped} skipped)")]
    NoData { skipped: usize },
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tensor operation failed: {0}")]
    Torch(#[from] tch::TchError),
}

/// Everything `train` needs to know.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub from: Option<PathBuf>,
    pub resume: bool,
    pub valid: Vec<PathBuf>,
    pub epochs: usize,
    pub time_budget: Option<Duration>,
    pub batch_size: usize,
    pub seq_len: usize,
    pub lr: Option<f64>,
    pub warmup_steps: usize,
    pub clip_norm: f64,
    pub seed: u64,
    pub model: ModelConfig,
    pub text: TextLimits,
    pub tokenizer: tokenizer::TrainOptions,
    /// Save a checkpoint at least this often, besides each epoch's end.
    pub save_every: Duration,
    /// Cap on validation tokens evaluated each epoch.
    pub max_valid_tokens: usize,
    pub device: Device,
    pub quiet: bool,
}

/// A notebook that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What a finished (or stopped) training run reports.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub out: PathBuf,
    pub state: TrainingState,
    pub corpus: CorpusSummary,
    pub skipped: Vec<Skipped>,
    pub stopped_early: bool,
    pub tokens_per_sec: f64,
}

/// Reads every notebook under `paths`, keeping the good ones and the reasons for the bad.
pub fn read_corpus(paths: &[PathBuf]) -> Result<(Vec<Notebook>, Vec<Skipped>), TrainError> {
    let files = find_notebooks(paths)?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        match Notebook::read(&f) {
            Ok(nb) => good.push(nb),
            Err(e) => bad.push(Skipped {
                path: f,
                reason: e.to_string(),
            }),
        }
    }
    Ok((good, bad))
}

/// One notebook as token ids.
pub fn encode_notebook(
    tok: &Tokenizer,
    nb: &Notebook,
    limits: &TextLimits,
) -> Result<Vec<u32>, TokenizerError> {
    tok.encode_segments(&notebook_segments(nb, limits))
}

/// Per-token part (code, output, marker, other) of a token stream, following its markers.
pub fn token_parts(tok: &Tokenizer, ids: &[u32]) -> Vec<Part> {
    let mut part = Part::Other;
    ids.iter()
        .map(|&id| match tok.marker(id) {
            Some(m) => {
                part = if m == Marker::Code {
                    Part::Code
                } else if m.is_output() {
                    Part::Output
                } else if m == Marker::Truncated {
                    part
                } else {
                    Part::Other
                };
                Part::Marker
            }
            None => part,
        })
        .collect()
}

/// Fixed-length chunks of notebook streams laid out in `batch` lanes. Each chunk belongs to one
/// notebook; the hidden state is reset at a notebook's first chunk and carried otherwise.
struct Batches {
    /// `[steps][batch]` of (notebook index, chunk index) or None for padding.
    plan: Vec<Vec<Option<(usize, usize)>>>,
}

impl Batches {
    fn new(lens: &[usize], batch: usize, seq_len: usize, seed: u64, epoch: usize) -> Batches {
        let chunks_of = |nb: usize| lens[nb].saturating_sub(1).div_ceil(seq_len);
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
        // Longest notebooks first, each to the least-loaded lane, keeps the lanes even (so few
        // steps run half empty); each lane's notebooks are then shuffled.
        let mut order: Vec<usize> = (0..lens.len()).collect();
        order.shuffle(&mut rng);
        order.sort_by_key(|&nb| std::cmp::Reverse(chunks_of(nb)));
        let mut assigned: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); batch.max(1)];
        for nb in order {
            let lane = assigned
                .iter_mut()
                .min_by_key(|l| l.0)
                .expect("batch is at least 1");
            lane.0 += chunks_of(nb);
            lane.1.push(nb);
        }
        let lanes: Vec<Vec<(usize, usize)>> = assigned
            .into_iter()
            .map(|(_, mut nbs)| {
                nbs.shuffle(&mut rng);
                nbs.into_iter()
                    .flat_map(|nb| (0..chunks_of(nb)).map(move |c| (nb, c)))
                    .collect()
            })
            .collect();
        let steps = lanes.iter().map(Vec::len).max().unwrap_or(0);
        let plan = (0..steps)
            .map(|s| lanes.iter().map(|l| l.get(s).copied()).collect())
            .collect();
        Batches { plan }
    }
}

/// Builds the input, target and reset tensors of one step.
fn make_step(
    data: &[Vec<u32>],
    slots: &[Option<(usize, usize)>],
    seq_len: usize,
    device: Device,
) -> (Tensor, Tensor, Tensor, i64) {
    let b = slots.len();
    let mut x = vec![0i64; b * seq_len];
    let mut y = vec![-100i64; b * seq_len];
    let mut keep = vec![1f32; b];
    let mut count = 0i64;
    for (lane, slot) in slots.iter().enumerate() {
        let Some((nb, chunk)) = *slot else {
            keep[lane] = 0.;
            continue;
        };
        if chunk == 0 {
            keep[lane] = 0.;
        }
        let ids = &data[nb];
        let start = chunk * seq_len;
        for t in 0..seq_len {
            let i = start + t;
            if i + 1 >= ids.len() {
                break;
            }
            x[lane * seq_len + t] = i64::from(ids[i]);
            y[lane * seq_len + t] = i64::from(ids[i + 1]);
            count += 1;
        }
    }
    let shape = [b as i64, seq_len as i64];
    (
        Tensor::from_slice(&x).view(shape).to_device(device),
        Tensor::from_slice(&y).view(shape).to_device(device),
        Tensor::from_slice(&keep)
            .view([1, b as i64, 1])
            .to_device(device),
        count,
    )
}

/// Adam with decoupled state tensors that can be saved and restored.
pub struct Adam {
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: i64,
}

impl Adam {
    const B1: f64 = 0.9;
    const B2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    pub fn new(vs: &nn::VarStore) -> Adam {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Adam {
            params,
            m,
            v,
            step: 0,
        }
    }

    fn restore(&mut self, saved: &[(String, Tensor)]) -> Result<(), String> {
        let find = |name: &str| saved.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let step = find("step").ok_or("optimizer state has no step")?;
        self.step = step.int64_value(&[]);
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (buf, prefix) in [(&mut self.m[i], "m."), (&mut self.v[i], "v.")] {
                let t = find(&format!("{prefix}{name}"))
                    .ok_or_else(|| format!("optimizer state has no {prefix}{name}"))?;
                if t.size() != p.size() {
                    return Err(format!(
                        "optimizer state {prefix}{name} has shape {:?}, expected {:?}",
                        t.size(),
                        p.size()
                    ));
                }
                tch::no_grad(|| buf.copy_(t));
            }
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("v.{name}"), self.v[i].shallow_clone()));
        }
        out
    }

    /// Clips the global gradient norm, applies one update and clears the gradients. Returns the
    /// norm before clipping.
    pub fn step(&mut self, lr: f64, clip: f64) -> f64 {
        self.step += 1;
        let bc1 = 1.0 - Self::B1.powi(self.step as i32);
        let bc2 = 1.0 - Self::B2.powi(self.step as i32);
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
            let defined: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
            let norm = if defined.is_empty() {
                0.0
            } else {
                let sq: Vec<Tensor> = defined
                    .iter()
                    .map(|g| g.square().sum(Kind::Float))
                    .collect();
                Tensor::stack(&sq, 0)
                    .sum(Kind::Float)
                    .sqrt()
                    .double_value(&[])
            };
            let scale = if clip > 0. && norm > clip {
                clip / (norm + 1e-6)
            } else {
                1.0
            };
            let step_size = -lr / bc1;
            let bc2_sqrt = bc2.sqrt();
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let mut g = grads[i].shallow_clone();
                if !g.defined() {
                    continue;
                }
                if scale < 1.0 {
                    let _ = g.g_mul_scalar_(scale);
                }
                // In-place updates: m ← lerp(m, g, 1-β1), v ← lerp(v, g², 1-β2),
                // p ← p - lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps).
                let _ = self.m[i].lerp_(&g, 1.0 - Self::B1);
                let _ = self.v[i].lerp_(&g.square(), 1.0 - Self::B2);
                let mut denom = self.v[i].sqrt();
                let _ = denom.g_div_scalar_(bc2_sqrt).g_add_scalar_(Self::EPS);
                let _ = p.addcdiv_(&(&self.m[i] * step_size), &denom);
            }
            for (_, p) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            norm
        })
    }
}

/// One optimisation step on inputs `x` and targets `y` (`[batch, time]`, -100 = ignore) from
/// state `h0`: forward, mean cross-entropy, backward, Adam. Returns the loss and the detached
/// final state.
pub fn train_step(
    model: &GruLm,
    adam: &mut Adam,
    x: &Tensor,
    y: &Tensor,
    h0: &Tensor,
    lr: f64,
    clip: f64,
) -> (f64, Tensor) {
    let (logits, h1) = model.forward(x, h0, true);
    let loss = logits
        .view([-1, model.config.vocab_size])
        .cross_entropy_loss::<Tensor>(&y.view([-1]), None, tch::Reduction::Mean, -100, 0.0);
    loss.backward();
    adam.step(lr, clip);
    (loss.double_value(&[]), h1.detach())
}

/// The learning rate at `step`: linear warm-up, then cosine decay to 10%.
pub fn lr_at(step: usize, base: f64, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let p = (step - warmup) as f64 / span as f64;
    cosine(base, p)
}

/// Cosine decay from `base` to 10% of it as `progress` goes from 0 to 1.
fn cosine(base: f64, progress: f64) -> f64 {
    let p = progress.clamp(0.0, 1.0);
    base * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

/// The learning rate of a run after `elapsed` seconds in all: the step schedule, or the time
/// schedule when a time budget makes the run end sooner than its epochs would.
pub fn scheduled_lr(state: &TrainingState, elapsed: f64) -> f64 {
    let by_steps = lr_at(
        state.global_step,
        state.lr,
        state.warmup_steps,
        state.total_steps,
    );
    match state.time_budget_secs {
        Some(budget) if budget > 0.0 && state.global_step >= state.warmup_steps => {
            by_steps.min(cosine(state.lr, elapsed / budget))
        }
        _ => by_steps,
    }
}

/// Loss and bits per character of code and of outputs over notebook streams.
pub fn evaluate(
    model: &GruLm,
    tok: &Tokenizer,
    data: &[Vec<u32>],
    max_tokens: usize,
    device: Device,
) -> ValidMetrics {
    let _guard = tch::no_grad_guard();
    let (mut nll_sum, mut n) = (0f64, 0u64);
    let (mut code_nll, mut code_chars, mut out_nll, mut out_chars) = (0f64, 0usize, 0f64, 0usize);
    for ids in data {
        if n as usize >= max_tokens {
            break;
        }
        if ids.len() < 2 {
            continue;
        }
        let parts = token_parts(tok, ids);
        let mut h = model.zero_state(1, device);
        for start in (0..ids.len() - 1).step_by(512) {
            let end = (start + 512).min(ids.len() - 1);
            let x: Vec<i64> = ids[start..end].iter().map(|&i| i64::from(i)).collect();
            let y: Vec<i64> = ids[start + 1..end + 1]
                .iter()
                .map(|&i| i64::from(i))
                .collect();
            let xt = Tensor::from_slice(&x).view([1, -1]).to_device(device);
            let yt = Tensor::from_slice(&y).to_device(device);
            let (logits, h2) = model.forward(&xt, &h, false);
            h = h2;
            let logp = logits
                .view([-1, model.config.vocab_size])
                .log_softmax(-1, Kind::Float);
            let nll = -logp.gather(1, &yt.view([-1, 1]), false).view([-1]);
            let nll: Vec<f32> = match Vec::<f32>::try_from(nll.to_device(Device::Cpu)) {
                Ok(v) => v,
                Err(_) => continue,
            };
            for (k, &l) in nll.iter().enumerate() {
                let target = ids[start + 1 + k];
                let l = f64::from(l);
                nll_sum += l;
                n += 1;
                match parts[start + 1 + k] {
                    Part::Code => {
                        code_nll += l;
                        code_chars += tok.token_chars(target);
                    }
                    Part::Output => {
                        out_nll += l;
                        out_chars += tok.token_chars(target);
                    }
                    Part::Marker => {
                        // The choice of marker after code is the "has output" decision.
                        if tok
                            .marker(target)
                            .is_some_and(|m| m.is_output() || m == Marker::End)
                        {
                            out_nll += l;
                        }
                    }
                    Part::Other => {}
                }
            }
        }
    }
    let ln2 = std::f64::consts::LN_2;
    ValidMetrics {
        loss: if n > 0 { nll_sum / n as f64 } else { f64::NAN },
        bpc_code: code_nll / ln2 / code_chars.max(1) as f64,
        bpc_output: out_nll / ln2 / out_chars.max(1) as f64,
        tokens: n,
    }
}

/// Splits notebooks into train and validation: every `k`-th notebook by a seeded shuffle, at
/// least one when there are two or more.
fn holdout(mut nbs: Vec<Notebook>, seed: u64) -> (Vec<Notebook>, Vec<Notebook>) {
    if nbs.len() < 2 {
        return (nbs, Vec::new());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    nbs.shuffle(&mut rng);
    let n_valid = (nbs.len() / 20).max(1);
    let valid = nbs.split_off(nbs.len() - n_valid);
    (nbs, valid)
}

fn corpus_text(nbs: &[Notebook], limits: &TextLimits) -> Vec<String> {
    nbs.iter()
        .map(|nb| notebook_segments(nb, limits).to_text())
        .collect()
}

/// Appends a row to `metrics.csv` (writing the header first when the file is new).
fn append_metrics(out: &Path, row: &MetricsRow) -> Result<(), TrainError> {
    let path = out.join("metrics.csv");
    let io = |source| TrainError::Io {
        path: path.clone(),
        source,
    };
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    if new {
        writeln!(f, "kind,epoch,step,tokens,elapsed_s,lr,train_loss,valid_loss,valid_bpc_code,valid_bpc_output,tokens_per_s").map_err(io)?;
    }
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.5}")).unwrap_or_default();
    writeln!(
        f,
        "{},{},{},{},{:.1},{:.6},{},{},{},{},{:.0}",
        row.kind,
        row.epoch,
        row.step,
        row.tokens,
        row.elapsed,
        row.lr,
        opt(row.train_loss),
        opt(row.valid.as_ref().map(|v| v.loss)),
        opt(row.valid.as_ref().map(|v| v.bpc_code)),
        opt(row.valid.as_ref().map(|v| v.bpc_output)),
        row.tokens_per_sec
    )
    .map_err(io)
}

impl MetricsRow {
    /// A training-loss row at the state's current step.
    fn train(state: &TrainingState, lr: f64, loss: f64, tokens_per_sec: f64) -> MetricsRow {
        MetricsRow {
            kind: "train",
            epoch: state.epoch + 1,
            step: state.global_step,
            tokens: state.tokens_seen,
            elapsed: state.elapsed_secs,
            lr,
            train_loss: Some(loss),
            valid: None,
            tokens_per_sec,
        }
    }
}

struct MetricsRow {
    kind: &'static str,
    epoch: usize,
    step: usize,
    tokens: u64,
    elapsed: f64,
    lr: f64,
    train_loss: Option<f64>,
    valid: Option<ValidMetrics>,
    tokens_per_sec: f64,
}

/// Draws `loss.svg` from `metrics.csv`: training loss per logged step, validation loss per epoch.
pub fn plot_losses(out: &Path) -> Result<(), TrainError> {
    use plotters::prelude::*;
    let path = out.join("metrics.csv");
    let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
        path: path.clone(),
        source,
    })?;
    let mut train_pts = Vec::new();
    let mut valid_pts = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 8 {
            continue;
        }
        let step: f64 = f[2].parse().unwrap_or(0.);
        if let Ok(l) = f[6].parse::<f64>() {
            train_pts.push((step, l));
        }
        if let Ok(l) = f[7].parse::<f64>() {
            valid_pts.push((step, l));
        }
    }
    let all: Vec<f64> = train_pts.iter().chain(&valid_pts).map(|p| p.1).collect();
    if all.is_empty() {
        return Ok(());
    }
    let max_x = train_pts
        .iter()
        .chain(&valid_pts)
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let max_y = all.iter().copied().fold(0.0, f64::max) * 1.05;
    let min_y = all.iter().copied().fold(f64::INFINITY, f64::min) * 0.95;
    let svg = out.join("loss.svg");
    let tmp = out.join(".loss.svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (800, 500)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| TrainError::Config(format!("plotting: {e}"));
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Training loss", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max_x, min_y..max_y)
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("cross-entropy (nats/token)")
            .draw()
            .map_err(|e| draw(&e))?;
        chart
            .draw_series(LineSeries::new(train_pts, &BLUE))
            .map_err(|e| draw(&e))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(valid_pts.clone(), &RED))
            .map_err(|e| draw(&e))?
            .label("valid")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .draw_series(valid_pts.iter().map(|&p| Circle::new(p, 3, RED.filled())))
            .map_err(|e| draw(&e))?;
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    std::fs::rename(&tmp, &svg).map_err(|source| TrainError::Io { path: svg, source })
}

/// Runs training as the options say. `stop` is raised by Ctrl-C; training then saves and returns.
pub fn train(opts: &TrainOptions, stop: Arc<AtomicBool>) -> Result<TrainReport, TrainError> {
    let device = opts.device;
    let say = |msg: String| {
        if !opts.quiet {
            eprintln!("{msg}");
        }
    };

    // Where the weights, tokenizer and optimizer come from.
    let resumed = if opts.resume && opts.out.join(checkpoint::CONFIG_FILE).exists() {
        Some(checkpoint::load(&opts.out, device)?)
    } else {
        None
    };
    let base = match (&resumed, &opts.from) {
        (None, Some(from)) => Some(checkpoint::load(from, device)?),
        _ => None,
    };
    let mut state = match &resumed {
        Some(r) => r.config.training.clone(),
        None => TrainingState::default(),
    };
    if state.finished && resumed.is_some() && state.epoch >= opts.epochs {
        say(format!(
            "{}: training already finished ({} epochs); pass a larger --epochs to continue",
            opts.out.display(),
            state.epoch
        ));
    }
    let limits = match (&resumed, &base) {
        (Some(r), _) => r.config.text,
        (None, Some(b)) => b.config.text,
        _ => opts.text,
    };

    let (notebooks, mut skipped) = read_corpus(&opts.inputs)?;
    for s in &skipped {
        say(format!("warning: skipping {}", s.reason));
    }
    let (train_nbs, valid_nbs) = if opts.valid.is_empty() {
        holdout(notebooks, opts.seed)
    } else {
        let (v, bad) = read_corpus(&opts.valid)?;
        for s in &bad {
            say(format!(
                "warning: skipping validation notebook: {}",
                s.reason
            ));
        }
        skipped.extend(bad);
        (notebooks, v)
    };
    if train_nbs.is_empty() {
        return Err(TrainError::NoData {
            skipped: skipped.len(),
        });
    }

    let tokenizer = match (&resumed, &base) {
        (Some(r), _) => Tokenizer::from_proto(r.tokenizer.proto().to_vec())?,
        (None, Some(b)) => Tokenizer::from_proto(b.tokenizer.proto().to_vec())?,
        (None, None) => {
            say(format!(
                "training the tokenizer (up to {} pieces) on {} notebooks",
                opts.tokenizer.vocab_size,
                train_nbs.len()
            ));
            std::fs::create_dir_all(&opts.out).map_err(|source| TrainError::Io {
                path: opts.out.clone(),
                source,
            })?;
            let work = tempfile::tempdir_in(&opts.out).map_err(|source| TrainError::Io {
                path: opts.out.clone(),
                source,
            })?;
            let tok_opts = tokenizer::TrainOptions {
                seed: opts.seed,
                ..opts.tokenizer.clone()
            };
            Tokenizer::train(&corpus_text(&train_nbs, &limits), &tok_opts, work.path())?
        }
    };

    let encode_all = |nbs: &[Notebook]| -> Result<Vec<Vec<u32>>, TrainError> {
        let bar = progress(nbs.len() as u64, "encoding", opts.quiet);
        let mut out = Vec::with_capacity(nbs.len());
        for nb in nbs {
            out.push(encode_notebook(&tokenizer, nb, &limits)?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(out)
    };
    let train_data = encode_all(&train_nbs)?;
    let valid_data = encode_all(&valid_nbs)?;
    let corpus = CorpusSummary {
        notebooks: train_nbs.len(),
        skipped: skipped.len(),
        code_cells: train_nbs
            .iter()
            .map(|nb| nb.cells.iter().filter(|c| c.kind == CellKind::Code).count())
            .sum(),
        tokens: train_data.iter().map(|d| d.len() as u64).sum(),
        chars: train_data
            .iter()
            .flatten()
            .map(|&id| tokenizer.token_chars(id) as u64)
            .sum(),
        valid_notebooks: valid_nbs.len(),
        valid_tokens: valid_data.iter().map(|d| d.len() as u64).sum(),
    };
    say(format!(
        "corpus: {} notebooks ({} code cells, {} tokens, {:.2} chars/token), {} for validation, {} skipped",
        corpus.notebooks,
        corpus.code_cells,
        corpus.tokens,
        corpus.chars as f64 / corpus.tokens.max(1) as f64,
        corpus.valid_notebooks,
        corpus.skipped
    ));

    // The model and its optimizer.
    let (mut vs, model, model_cfg) = match (resumed, base) {
        (Some(r), _) => (r.vs, r.model, r.config.model),
        (None, Some(b)) => {
            state.from = Some(b.path.display().to_string());
            (b.vs, b.model, b.config.model)
        }
        (None, None) => {
            let cfg = ModelConfig {
                vocab_size: tokenizer.vocab_size() as i64,
                ..opts.model
            };
            cfg.check().map_err(TrainError::Config)?;
            // The initial weights follow --seed, so a run can be repeated.
            tch::manual_seed(opts.seed as i64);
            let vs = nn::VarStore::new(device);
            let model = GruLm::new(&vs.root(), cfg);
            (vs, model, cfg)
        }
    };
    vs.set_kind(Kind::Float);
    let mut adam = Adam::new(&vs);
    if opts.resume && state.global_step > 0 {
        let saved = checkpoint::load_optimizer(&opts.out, device)?;
        adam.restore(&saved).map_err(TrainError::Config)?;
        say(format!(
            "resuming {} at epoch {}, step {} ({} tokens seen)",
            opts.out.display(),
            state.epoch + 1,
            state.global_step,
            state.tokens_seen
        ));
    } else {
        state.seed = opts.seed;
        state.batch_size = opts.batch_size;
        state.seq_len = opts.seq_len;
        state.lr = opts
            .lr
            .unwrap_or(if state.from.is_some() { 5e-4 } else { 3e-3 });
        // Short runs (such as fine-tuning on a few notebooks) warm up over a tenth of their steps.
        let planned = Batches::new(
            &train_data.iter().map(Vec::len).collect::<Vec<_>>(),
            opts.batch_size.max(1),
            opts.seq_len.max(2),
            opts.seed,
            0,
        )
        .plan
        .len()
            * opts.epochs;
        state.warmup_steps = opts.warmup_steps.min((planned / 10).max(1));
        state.clip_norm = opts.clip_norm;
    }
    state.epochs = opts.epochs;
    if let Some(budget) = opts.time_budget {
        state.time_budget_secs = Some(budget.as_secs_f64());
    }
    state.finished = false;
    state.inputs = opts
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    state.valid_inputs = opts.valid.iter().map(|p| p.display().to_string()).collect();
    let (batch, seq_len) = (state.batch_size.max(1), state.seq_len.max(2));
    let lens: Vec<usize> = train_data.iter().map(Vec::len).collect();
    let steps_per_epoch = Batches::new(&lens, batch, seq_len, state.seed, 0)
        .plan
        .len();
    state.total_steps = steps_per_epoch * opts.epochs;

    let mut config = CheckpointConfig {
        format: checkpoint::FORMAT.into(),
        format_version: checkpoint::FORMAT_VERSION,
        program_version: env!("CARGO_PKG_VERSION").into(),
        model: model_cfg,
        text: limits,
        tokenizer: checkpoint::TokenizerInfo {
            vocab_size: tokenizer.vocab_size(),
            sha256: String::new(),
        },
        weights_sha256: String::new(),
        training: state.clone(),
        corpus: corpus.clone(),
    };
    let save = |config: &mut CheckpointConfig,
                state: &TrainingState,
                adam: &Adam,
                vs: &nn::VarStore|
     -> Result<(), TrainError> {
        config.training = state.clone();
        checkpoint::save(&opts.out, config, vs, &tokenizer, Some(&adam.state()))?;
        Ok(())
    };

    let mut stopped_early = false;
    let mut budget_spent = false;
    let mut tokens_this_run = 0u64;
    let params = model_cfg.num_params();
    say(format!(
        "model: {} parameters (E={}, H={}, layers={}), batch {}x{}, {} steps/epoch, device {:?}",
        params,
        model_cfg.embed_dim,
        model_cfg.hidden_size,
        model_cfg.num_layers,
        batch,
        seq_len,
        steps_per_epoch,
        device
    ));
    // Validation figures go to the log, the state and metrics.csv.
    let validate = |state: &mut TrainingState, tps: f64| -> Result<(), TrainError> {
        let lr = if state.global_step == 0 {
            0.0
        } else {
            scheduled_lr(state, state.elapsed_secs)
        };
        let v = evaluate(
            &model,
            &tokenizer,
            &valid_data,
            opts.max_valid_tokens,
            device,
        );
        say(format!(
            "epoch {}: valid loss {:.4}, bpc code {:.3}, bpc output {:.3}",
            state.epoch, v.loss, v.bpc_code, v.bpc_output
        ));
        if state.global_step > 0 {
            state.best_valid_loss = Some(state.best_valid_loss.map_or(v.loss, |b| b.min(v.loss)));
            state.last_valid = Some(v.clone());
        }
        append_metrics(
            &opts.out_dir_ready()?,
            &MetricsRow {
                kind: "valid",
                epoch: state.epoch,
                step: state.global_step,
                tokens: state.tokens_seen,
                elapsed: state.elapsed_secs,
                lr,
                train_loss: None,
                valid: Some(v),
                tokens_per_sec: tps,
            },
        )
    };
    if state.global_step == 0 && !valid_data.is_empty() {
        validate(&mut state, 0.0)?;
    }
    // The clock (and so any time budget) starts after the untrained model's validation.
    let started = Instant::now();
    let elapsed_before = state.elapsed_secs;
    let mut last_save = Instant::now();

    'epochs: while state.epoch < opts.epochs {
        let plan = Batches::new(&lens, batch, seq_len, state.seed, state.epoch).plan;
        let bar = progress(
            plan.len() as u64,
            &format!("epoch {}", state.epoch + 1),
            opts.quiet,
        );
        bar.set_position(state.step_in_epoch as u64);
        let mut h = model.zero_state(batch as i64, device);
        let (mut loss_acc, mut loss_n) = (0f64, 0usize);
        let mut window = Instant::now();
        let mut window_tokens = 0u64;
        let mut tps = 0f64;
        while state.step_in_epoch < plan.len() {
            if stop.load(Ordering::SeqCst) {
                stopped_early = true;
                break 'epochs;
            }
            let elapsed = elapsed_before + started.elapsed().as_secs_f64();
            if state.time_budget_secs.is_some_and(|b| elapsed >= b) {
                budget_spent = true;
                say("time budget spent".into());
                if loss_n > 0 {
                    state.elapsed_secs = elapsed;
                    append_metrics(
                        &opts.out_dir_ready()?,
                        &MetricsRow::train(
                            &state,
                            scheduled_lr(&state, elapsed),
                            loss_acc / loss_n as f64,
                            tps,
                        ),
                    )?;
                }
                break 'epochs;
            }
            let slots = &plan[state.step_in_epoch];
            let (x, y, keep, count) = make_step(&train_data, slots, seq_len, device);
            let lr = scheduled_lr(&state, elapsed);
            let h0 = &h * &keep;
            let (l, h1) = train_step(&model, &mut adam, &x, &y, &h0, lr, state.clip_norm);
            h = h1;
            if l.is_finite() {
                loss_acc += l;
                loss_n += 1;
            }
            state.global_step += 1;
            state.step_in_epoch += 1;
            state.tokens_seen += count as u64;
            tokens_this_run += count as u64;
            window_tokens += count as u64;
            bar.inc(1);
            if window.elapsed() >= Duration::from_secs(5) || state.step_in_epoch == plan.len() {
                tps = window_tokens as f64 / window.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.3}  {:.0} tok/s",
                    loss_acc / loss_n.max(1) as f64,
                    tps
                ));
            }
            if state.global_step % 50 == 0 && loss_n > 0 {
                state.elapsed_secs = elapsed_before + started.elapsed().as_secs_f64();
                append_metrics(
                    &opts.out_dir_ready()?,
                    &MetricsRow::train(&state, lr, loss_acc / loss_n as f64, tps),
                )?;
                loss_acc = 0.;
                loss_n = 0;
                window = Instant::now();
                window_tokens = 0;
            }
            if last_save.elapsed() >= opts.save_every {
                state.elapsed_secs = elapsed_before + started.elapsed().as_secs_f64();
                save(&mut config, &state, &adam, &vs)?;
                last_save = Instant::now();
            }
        }
        bar.finish_and_clear();
        if loss_n > 0 {
            state.elapsed_secs = elapsed_before + started.elapsed().as_secs_f64();
            let lr = scheduled_lr(&state, state.elapsed_secs);
            append_metrics(
                &opts.out_dir_ready()?,
                &MetricsRow::train(&state, lr, loss_acc / loss_n as f64, tps),
            )?;
        }
        state.epoch += 1;
        state.step_in_epoch = 0;
        state.elapsed_secs = elapsed_before + started.elapsed().as_secs_f64();
        if !valid_data.is_empty() {
            validate(&mut state, tps)?;
        } else {
            say(format!("epoch {} done", state.epoch));
        }
        state.finished = state.epoch >= opts.epochs;
        save(&mut config, &state, &adam, &vs)?;
        last_save = Instant::now();
        let _ = plot_losses(&opts.out);
    }
    state.elapsed_secs = elapsed_before + started.elapsed().as_secs_f64();
    if budget_spent {
        // A spent budget ends the run: validate the weights where they stand, unless the epoch
        // that just ended already did.
        if state.step_in_epoch > 0 && !valid_data.is_empty() {
            validate(&mut state, 0.0)?;
        }
        state.finished = true;
        save(&mut config, &state, &adam, &vs)?;
    } else if stopped_early {
        save(&mut config, &state, &adam, &vs)?;
        say(format!(
            "stopped at epoch {}, step {}; continue with --resume",
            state.epoch + 1,
            state.global_step
        ));
    } else if !opts.out.join(checkpoint::CONFIG_FILE).exists() {
        save(&mut config, &state, &adam, &vs)?;
    }
    let _ = plot_losses(&opts.out);
    let run_secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok(TrainReport {
        out: opts.out.clone(),
        state,
        corpus,
        skipped,
        stopped_early,
        tokens_per_sec: tokens_this_run as f64 / run_secs,
    })
}

impl TrainOptions {
    fn out_dir_ready(&self) -> Result<PathBuf, TrainError> {
        std::fs::create_dir_all(&self.out).map_err(|source| TrainError::Io {
            path: self.out.clone(),
            source,
        })?;
        Ok(self.out.clone())
    }
}

fn progress(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_cover_every_chunk_once() {
        let lens = [10, 1, 300, 45, 129];
        let b = Batches::new(&lens, 3, 16, 7, 0);
        let mut seen: Vec<(usize, usize)> = b.plan.iter().flatten().flatten().copied().collect();
        seen.sort();
        let want: Vec<(usize, usize)> = lens
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| (0..(n - 1).div_ceil(16)).map(move |c| (i, c)))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((lr_at(0, 1.0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((lr_at(10, 1.0, 10, 100) - 1.0).abs() < 1e-12);
        assert!((lr_at(100, 1.0, 10, 100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn a_time_budget_decays_the_rate_by_time() {
        let mut st = TrainingState {
            global_step: 20,
            total_steps: 10_000,
            lr: 1.0,
            warmup_steps: 10,
            ..TrainingState::default()
        };
        // Without a budget only the steps count.
        assert!((scheduled_lr(&st, 500.0) - lr_at(20, 1.0, 10, 10_000)).abs() < 1e-12);
        st.time_budget_secs = Some(100.0);
        // Half the budget spent: halfway down the cosine, whatever the step.
        assert!((scheduled_lr(&st, 50.0) - 0.55).abs() < 1e-12);
        assert!((scheduled_lr(&st, 100.0) - 0.1).abs() < 1e-12);
        assert!((scheduled_lr(&st, 250.0) - 0.1).abs() < 1e-12);
        // Steps that run out first still win.
        st.global_step = 10_000;
        assert!((scheduled_lr(&st, 1.0) - 0.1).abs() < 1e-12);
        // Warm-up is by steps.
        st.global_step = 4;
        assert!((scheduled_lr(&st, 99.0) - 0.5).abs() < 1e-12);
    }
}
