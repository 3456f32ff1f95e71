//! Command-line interface: the subcommands and their arguments, and what each one runs.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use notebook_predictor::model::ModelConfig;
use notebook_predictor::notebook::Notebook;
use notebook_predictor::predictor::sampling::Sampling;
use notebook_predictor::predictor::{Predictor, Quiet};
use notebook_predictor::sequence::TextLimits;
use notebook_predictor::{eval, render, tokenizer, train};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "notebook-predictor",
    version,
    about = "A Jupyter kernel that predicts what running a cell would print"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// CPU threads for the model (default: libtorch's choice, usually one per core)
    #[arg(long, global = true)]
    pub threads: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (tokenizer and GRU) on notebooks with saved outputs
    Train(TrainArgs),
    /// Write a copy of a notebook whose code-cell outputs are the model's predictions
    Predict(PredictArgs),
    /// Write a brand-new notebook sampled from the model
    Generate(GenerateArgs),
    /// Measure predictions against notebooks' saved outputs, beside the "no output" baseline
    Eval(EvalArgs),
    /// Run the Jupyter kernel (started by Jupyter from the kernelspec)
    Kernel(KernelArgs),
    /// Install the kernelspec and the JupyterLab extension, like `python -m ipykernel install`
    Install(notebook_predictor::install::InstallArgs),
}

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// The connection file written by the Jupyter client
    #[arg(short = 'f', long = "connection-file", value_name = "CONNECTION_FILE")]
    pub connection_file: PathBuf,
    #[command(flatten)]
    pub model: ModelArg,
    /// Most tokens generated for one cell's outputs
    #[arg(long, default_value_t = 256)]
    pub max_output_tokens: usize,
}

#[derive(Debug, Args)]
pub struct ModelArg {
    /// Model folder (default: $NOTEBOOK_PREDICTOR_MODEL, else the installed default model)
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Run on the CPU even when CUDA is present
    #[arg(long)]
    pub cpu: bool,
}

impl ModelArg {
    fn device(&self) -> tch::Device {
        if self.cpu {
            tch::Device::Cpu
        } else {
            notebook_predictor::default_device()
        }
    }

    fn load(&self) -> Result<Predictor> {
        let dir = notebook_predictor::resolve_model(self.model.as_deref());
        Predictor::load(&dir, self.device())
            .with_context(|| format!("loading the model from {}", dir.display()))
    }
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The notebook to predict
    pub notebook: PathBuf,
    /// Where to write the predicted notebook (default: NAME.predicted.ipynb beside it)
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArg,
    /// Most tokens generated for one cell's outputs
    #[arg(long, default_value_t = 256)]
    pub max_output_tokens: usize,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Where to write the new notebook
    #[arg(long, short, default_value = "generated.ipynb")]
    pub output: PathBuf,
    /// Number of code cells
    #[arg(long, default_value_t = 8)]
    pub cells: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampling temperature (0 = greedy)
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample only among the k most likely tokens (0 = all)
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Sample only among the tokens that make up this much probability
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    #[command(flatten)]
    pub model: ModelArg,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Notebooks or folders with saved outputs
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Write the full report as JSON here
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArg,
    /// Most tokens generated for one cell's outputs
    #[arg(long, default_value_t = 256)]
    pub max_output_tokens: usize,
    /// Most tokens generated for a predicted next cell
    #[arg(long, default_value_t = 160)]
    pub max_cell_tokens: usize,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Notebooks or folders (searched recursively for *.ipynb)
    #[arg(required_unless_present = "resume")]
    pub paths: Vec<PathBuf>,
    /// Checkpoint folder to write
    #[arg(long, short, default_value = "model")]
    pub out: PathBuf,
    /// Fine-tune this model (keeps its tokenizer and sizes)
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Continue the run saved in --out
    #[arg(long)]
    pub resume: bool,
    /// Number of passes over the data (default 10, or the resumed run's own; with only
    /// --time-budget, as many as the budget allows)
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train for at most this long in all, e.g. 30m, 2h, 90s: the learning rate decays over it,
    /// and the run ends validated and saved when it is spent (Ctrl-C and --resume keep it)
    #[arg(long, value_parser = parse_duration)]
    pub time_budget: Option<Duration>,
    /// Validation notebooks or folders (default: hold out 5% of PATHs)
    #[arg(long)]
    pub valid: Vec<PathBuf>,
    /// Sequences per batch
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per sequence chunk (truncated backprop length)
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Peak learning rate (default 3e-3, or 5e-4 with --from)
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 200)]
    pub warmup_steps: usize,
    /// Clip the gradient norm to this value
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Tokenizer vocabulary size
    #[arg(long, default_value_t = 8000)]
    pub vocab_size: usize,
    #[arg(long, default_value_t = 256)]
    pub embed_dim: i64,
    #[arg(long, default_value_t = 512)]
    pub hidden_size: i64,
    #[arg(long, default_value_t = 1)]
    pub layers: i64,
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Share the embedding with the output layer (needs --embed-dim == --hidden-size)
    #[arg(long)]
    pub tie_weights: bool,
    /// Cut outputs longer than this many characters
    #[arg(long, default_value_t = TextLimits::default().max_output_chars)]
    pub max_output_chars: usize,
    /// Keep markdown and raw cells up to this many characters (0 leaves them out: the kernel
    /// sees only code cells, so by default the model learns code and outputs alone)
    #[arg(long, default_value_t = TextLimits::default().max_markdown_chars)]
    pub max_markdown_chars: usize,
    /// Save a checkpoint at least this often
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub save_every: Duration,
    /// Validation tokens evaluated per epoch at most
    #[arg(long, default_value_t = 400_000)]
    pub max_valid_tokens: usize,
    /// Train on the CPU even when CUDA is present
    #[arg(long)]
    pub cpu: bool,
    /// Print only the summary
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parses `90s`, `30m`, `2h`, `1h30m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = 0f64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        num.clear();
        total += n * match c {
            's' => 1.,
            'm' => 60.,
            'h' => 3600.,
            'd' => 86400.,
            _ => return Err(format!("bad unit {c:?} in duration {s:?} (use s, m, h)")),
        };
    }
    if !num.is_empty() {
        total += num
            .parse::<f64>()
            .map_err(|_| format!("bad duration {s:?}"))?;
    }
    Ok(Duration::from_secs_f64(total))
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(n) = cli.threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        tch::set_num_threads(n);
    }
    match cli.command {
        Command::Train(a) => run_train(a),
        Command::Predict(a) => run_predict(a),
        Command::Generate(a) => run_generate(a),
        Command::Eval(a) => run_eval(a),
        Command::Kernel(a) => run_kernel(a),
        Command::Install(a) => {
            let report =
                notebook_predictor::install::install(&a.options()).context("install failed")?;
            println!(
                "Installed kernelspec in {}",
                report.kernelspec_dir.display()
            );
            if let Some(dir) = report.labextension_dir {
                println!("Installed JupyterLab extension in {}", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Exits when the process that started the kernel goes away (its parent changes), as
/// ipykernel's parent poller does, so a crashed client leaves no orphan kernel behind.
fn exit_with_parent() {
    // SAFETY: getppid has no preconditions and cannot fail.
    let parent = unsafe { libc::getppid() };
    if parent <= 1 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("parent-poller".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            // SAFETY: as above.
            if unsafe { libc::getppid() } != parent {
                tracing::warn!("the kernel's parent process {parent} exited; shutting down");
                std::process::exit(0);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the parent process: {e}");
    }
}

fn run_kernel(a: KernelArgs) -> Result<ExitCode> {
    let dir = notebook_predictor::resolve_model(a.model.model.as_deref());
    let device = a.model.device();
    let max_output_tokens = a.max_output_tokens;
    exit_with_parent();
    // The model loads on its own thread while the sockets come up. A model that cannot be
    // loaded still gives a working kernel that explains why in every execution.
    let load_dir = dir.clone();
    let interp = notebook_predictor::interpreter::PredictorInterpreter::loading(dir, move || {
        match Predictor::load(&load_dir, device) {
            Ok(mut p) => {
                p.limits.max_output_tokens = max_output_tokens;
                Ok(p)
            }
            Err(e) => {
                tracing::error!("cannot load the model at {}: {e}", load_dir.display());
                Err((load_dir, e.to_string()))
            }
        }
    });
    notebook_predictor::kernel::run(&a.connection_file, Box::new(interp))
        .with_context(|| format!("kernel for {}", a.connection_file.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn run_predict(a: PredictArgs) -> Result<ExitCode> {
    let mut p = a.model.load()?;
    p.limits.max_output_tokens = a.max_output_tokens;
    let bytes =
        std::fs::read(&a.notebook).with_context(|| format!("reading {}", a.notebook.display()))?;
    // Parse once for validation (clear errors), keep the JSON to preserve everything else.
    Notebook::parse(&a.notebook, &bytes)?;
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not valid JSON", a.notebook.display()))?;
    let out = a.output.clone().unwrap_or_else(|| {
        let stem = a
            .notebook
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "notebook".into());
        a.notebook.with_file_name(format!("{stem}.predicted.ipynb"))
    });
    let mut count = 0u64;
    let (mut outputs, mut silent) = (0usize, 0usize);
    if let Some(cells) = doc.get_mut("cells").and_then(|c| c.as_array_mut()) {
        let n = cells.len() as u64;
        let bar = indicatif::ProgressBar::new(n);
        for cell in cells.iter_mut() {
            bar.inc(1);
            if cell.get("cell_type").and_then(|t| t.as_str()) != Some("code") {
                continue;
            }
            let source = match cell.get("source") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_str()).collect(),
                _ => String::new(),
            };
            count += 1;
            let pred = p.predict_cell(&source, &mut Quiet);
            if pred.outputs.is_empty() {
                silent += 1;
            }
            outputs += pred.outputs.len();
            render::set_cell_prediction(cell, &pred, count);
        }
        bar.finish_and_clear();
    }
    for note in render::prepare_copy_metadata(&mut doc) {
        eprintln!("note: {}: {note}", a.notebook.display());
    }
    render::write_json_atomic(&out, &doc)?;
    println!(
        "{}: {} code cells predicted ({} outputs, {} cells with none)",
        out.display(),
        count,
        outputs,
        silent
    );
    Ok(ExitCode::SUCCESS)
}

fn run_generate(a: GenerateArgs) -> Result<ExitCode> {
    let mut p = a.model.load()?;
    p.set_sampling(Sampling {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    });
    let cells = p.generate_notebook(a.cells);
    let doc = render::new_notebook(&cells, &p.checkpoint().path.display().to_string());
    render::write_json_atomic(&a.output, &doc)?;
    println!("{}: {} cells generated", a.output.display(), cells.len());
    Ok(ExitCode::SUCCESS)
}

fn run_eval(a: EvalArgs) -> Result<ExitCode> {
    let mut p = a.model.load()?;
    p.limits.max_output_tokens = a.max_output_tokens;
    p.limits.max_cell_tokens = a.max_cell_tokens;
    let files = notebook_predictor::notebook::find_notebooks(&a.paths)?;
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix("eval");
    let report = eval::evaluate(&mut p, &a.paths, |_| bar.inc(1))?;
    bar.finish_and_clear();
    print!("{}", eval::table(&report));
    for s in &report.skipped {
        println!("skipped {s}");
    }
    if let Some(path) = &a.json {
        let v = serde_json::to_value(&report).context("serializing the report")?;
        render::write_json_atomic(path, &v)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Epochs of a run bounded only by its time budget.
const UNBOUNDED_EPOCHS: usize = 1000;

fn run_train(a: TrainArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting without saving");
                // Exit at once, without running exit handlers under libtorch's running threads.
                // SAFETY: _exit has no preconditions.
                unsafe { libc::_exit(130) };
            }
            eprintln!("\ninterrupted: saving a checkpoint (press Ctrl-C again to quit at once)");
        })
        .context("installing the Ctrl-C handler")?;
    }
    let device = if a.cpu {
        tch::Device::Cpu
    } else {
        notebook_predictor::default_device()
    };
    let resumed = if a.resume {
        Some(
            notebook_predictor::checkpoint::read_config(&a.out)
                .with_context(|| format!("--resume: no run to continue in {}", a.out.display()))?,
        )
    } else {
        None
    };
    let epochs = a
        .epochs
        .or(resumed
            .as_ref()
            .map(|c| c.training.epochs)
            .filter(|&e| e > 0))
        .unwrap_or(if a.time_budget.is_some() {
            UNBOUNDED_EPOCHS
        } else {
            10
        });
    // `--resume` alone reuses the paths the run was started with.
    let (paths, valid) = if a.paths.is_empty() && a.resume {
        let cfg = notebook_predictor::checkpoint::read_config(&a.out).with_context(|| {
            format!(
                "--resume without PATHs needs a checkpoint in {}",
                a.out.display()
            )
        })?;
        if cfg.training.inputs.is_empty() {
            anyhow::bail!(
                "{}: the checkpoint does not record its notebook paths; pass them again",
                a.out.display()
            );
        }
        let to_paths = |v: &[String]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        let valid = if a.valid.is_empty() {
            to_paths(&cfg.training.valid_inputs)
        } else {
            a.valid.clone()
        };
        (to_paths(&cfg.training.inputs), valid)
    } else {
        (a.paths.clone(), a.valid.clone())
    };
    let opts = train::TrainOptions {
        inputs: paths,
        out: a.out.clone(),
        from: a.from.clone(),
        resume: a.resume,
        valid,
        epochs,
        time_budget: a.time_budget,
        batch_size: a.batch_size,
        seq_len: a.seq_len,
        lr: a.lr,
        warmup_steps: a.warmup_steps,
        clip_norm: a.clip_norm,
        seed: a.seed,
        model: ModelConfig {
            vocab_size: a.vocab_size as i64,
            embed_dim: a.embed_dim,
            hidden_size: a.hidden_size,
            num_layers: a.layers,
            dropout: a.dropout,
            tie_weights: a.tie_weights,
        },
        text: TextLimits {
            max_output_chars: a.max_output_chars,
            max_markdown_chars: a.max_markdown_chars,
            ..TextLimits::default()
        },
        tokenizer: tokenizer::TrainOptions {
            vocab_size: a.vocab_size,
            ..tokenizer::TrainOptions::default()
        },
        save_every: a.save_every,
        max_valid_tokens: a.max_valid_tokens,
        device,
        quiet: a.quiet,
    };
    let report = train::train(&opts, stop).context("training failed")?;
    let st = &report.state;
    println!(
        "checkpoint: {}\n  epochs {} / {}, steps {}, tokens seen {}, {:.0} tokens/s this run, {:.0} s in all",
        report.out.display(),
        st.epoch,
        epochs,
        st.global_step,
        st.tokens_seen,
        report.tokens_per_sec,
        st.elapsed_secs
    );
    if let Some(v) = &st.last_valid {
        println!(
            "  valid loss {:.4}, bits/char code {:.3}, output {:.3}",
            v.loss, v.bpc_code, v.bpc_output
        );
    }
    println!(
        "  notebooks: {} trained on, {} for validation, {} skipped",
        report.corpus.notebooks,
        report.corpus.valid_notebooks,
        report.skipped.len()
    );
    for s in &report.skipped {
        println!("    skipped {}", s.reason);
    }
    Ok(ExitCode::SUCCESS)
}
