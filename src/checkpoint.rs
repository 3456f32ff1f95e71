//! A checkpoint folder: `config.json`, `model.safetensors`, `tokenizer.model` and, while
//! training, `optimizer.safetensors`. Saving is atomic; loading checks the pieces belong together.

use crate::model::{GruLm, ModelConfig};
use crate::sequence::TextLimits;
use crate::tokenizer::{Tokenizer, TokenizerError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};
use thiserror::Error;

pub const FORMAT: &str = "notebook-predictor-checkpoint";
pub const FORMAT_VERSION: u32 = 1;
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.model";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no checkpoint here (missing {file})")]
    Missing { path: PathBuf, file: &'static str },
    #[error("{path}: config.json is not valid: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("{path}: written by an incompatible version: {reason}")]
    Version { path: PathBuf, reason: String },
    #[error("{path}: the pieces do not belong together: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("{path}: cannot load weights: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// Where training stands; enough to resume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub global_step: usize,
    pub total_steps: usize,
    pub tokens_seen: u64,
    pub elapsed_secs: f64,
    pub seed: u64,
    pub batch_size: usize,
    pub seq_len: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub clip_norm: f64,
    pub epochs: usize,
    pub finished: bool,
    pub best_valid_loss: Option<f64>,
    pub last_valid: Option<ValidMetrics>,
    /// Where the weights started from, when fine-tuned with `--from`.
    pub from: Option<String>,
    /// The notebook paths trained on, so `--resume` needs no paths.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The validation paths given with `--valid`.
    #[serde(default)]
    pub valid_inputs: Vec<String>,
    /// The whole run's time budget in seconds (`--time-budget`): the learning rate decays over it
    /// and the run ends, validated and finished, when it is spent.
    #[serde(default)]
    pub time_budget_secs: Option<f64>,
}

/// Validation figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ValidMetrics {
    pub loss: f64,
    pub bpc_code: f64,
    pub bpc_output: f64,
    pub tokens: u64,
}

/// What the model was trained on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorpusSummary {
    pub notebooks: usize,
    pub skipped: usize,
    pub code_cells: usize,
    pub tokens: u64,
    pub chars: u64,
    pub valid_notebooks: usize,
    pub valid_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    pub vocab_size: usize,
    pub sha256: String,
}

/// The contents of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConfig {
    pub format: String,
    pub format_version: u32,
    pub program_version: String,
    pub model: ModelConfig,
    pub text: TextLimits,
    pub tokenizer: TokenizerInfo,
    pub weights_sha256: String,
    pub training: TrainingState,
    pub corpus: CorpusSummary,
}

/// A loaded model: its config, weights and tokenizer.
pub struct LoadedModel {
    pub path: PathBuf,
    pub config: CheckpointConfig,
    pub vs: nn::VarStore,
    pub model: GruLm,
    pub tokenizer: Tokenizer,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and validates `config.json` (format and version), without loading weights.
pub fn read_config(dir: &Path) -> Result<CheckpointConfig, CheckpointError> {
    let cfg_path = dir.join(CONFIG_FILE);
    if !cfg_path.exists() {
        return Err(CheckpointError::Missing {
            path: dir.to_path_buf(),
            file: CONFIG_FILE,
        });
    }
    let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CheckpointError::BadConfig {
            path: cfg_path.clone(),
            reason: e.to_string(),
        })?;
    let format = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(CheckpointError::Version {
            path: dir.to_path_buf(),
            reason: format!("format is {format:?}, expected {FORMAT:?}"),
        });
    }
    let version = v
        .get("format_version")
        .and_then(|f| f.as_u64())
        .unwrap_or(0);
    if version != u64::from(FORMAT_VERSION) {
        return Err(CheckpointError::Version {
            path: dir.to_path_buf(),
            reason: format!("format_version {version}, this program reads {FORMAT_VERSION}"),
        });
    }
    // Parsed again from the text so that errors carry a line and column.
    drop(v);
    serde_json::from_str(&text).map_err(|e| CheckpointError::BadConfig {
        path: cfg_path,
        reason: e.to_string(),
    })
}

/// Loads a checkpoint onto `device`, checking that config, tokenizer and weights agree.
pub fn load(dir: &Path, device: Device) -> Result<LoadedModel, CheckpointError> {
    let config = read_config(dir)?;
    for file in [WEIGHTS_FILE, TOKENIZER_FILE] {
        if !dir.join(file).exists() {
            return Err(CheckpointError::Missing {
                path: dir.to_path_buf(),
                file,
            });
        }
    }
    let mismatch = |reason: String| CheckpointError::Mismatch {
        path: dir.to_path_buf(),
        reason,
    };
    let tok_path = dir.join(TOKENIZER_FILE);
    let tok_bytes = std::fs::read(&tok_path).map_err(io_err(&tok_path))?;
    if sha256_hex(&tok_bytes) != config.tokenizer.sha256 {
        return Err(mismatch(
            "tokenizer.model is not the one config.json was written with".into(),
        ));
    }
    let tokenizer = Tokenizer::load(&tok_path)?;
    if tokenizer.vocab_size() as i64 != config.model.vocab_size {
        return Err(mismatch(format!(
            "tokenizer has {} pieces, model expects {}",
            tokenizer.vocab_size(),
            config.model.vocab_size
        )));
    }
    config
        .model
        .check()
        .map_err(|reason| CheckpointError::BadConfig {
            path: dir.join(CONFIG_FILE),
            reason,
        })?;
    let w_path = dir.join(WEIGHTS_FILE);
    let w_bytes = std::fs::read(&w_path).map_err(io_err(&w_path))?;
    if sha256_hex(&w_bytes) != config.weights_sha256 {
        return Err(mismatch(
            "model.safetensors is not the one config.json was written with".into(),
        ));
    }
    let mut vs = nn::VarStore::new(device);
    let model = GruLm::new(&vs.root(), config.model);
    vs.load(&w_path).map_err(|e| CheckpointError::Weights {
        path: w_path.clone(),
        // Torch errors go on with a C++ backtrace; the first line says what is wrong.
        reason: e.to_string().lines().next().unwrap_or_default().to_string(),
    })?;
    Ok(LoadedModel {
        path: dir.to_path_buf(),
        config,
        vs,
        model,
        tokenizer,
    })
}

/// Loads the optimizer state saved beside the weights, if any.
pub fn load_optimizer(
    dir: &Path,
    device: Device,
) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let path = dir.join(OPTIMIZER_FILE);
    if !path.exists() {
        return Err(CheckpointError::Missing {
            path: dir.to_path_buf(),
            file: OPTIMIZER_FILE,
        });
    }
    let tensors = Tensor::read_safetensors(&path).map_err(|e| CheckpointError::Weights {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(tensors
        .into_iter()
        .map(|(n, t)| (n, t.to_device(device)))
        .collect())
}

/// Writes a checkpoint folder atomically: everything goes to a temporary sibling folder, which
/// then replaces `dir` in one step. A crash leaves either the old or the new checkpoint.
pub fn save(
    dir: &Path,
    config: &mut CheckpointConfig,
    vs: &nn::VarStore,
    tokenizer: &Tokenizer,
    optimizer: Option<&[(String, Tensor)]>,
) -> Result<(), CheckpointError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;

    let w_path = tmp.join(WEIGHTS_FILE);
    let named: Vec<(String, Tensor)> = {
        let mut v: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.to_device(Device::Cpu)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    Tensor::write_safetensors(&named, &w_path).map_err(|e| CheckpointError::Weights {
        path: w_path.clone(),
        reason: e.to_string(),
    })?;
    let w_bytes = std::fs::read(&w_path).map_err(io_err(&w_path))?;
    config.weights_sha256 = sha256_hex(&w_bytes);
    config.tokenizer = TokenizerInfo {
        vocab_size: tokenizer.vocab_size(),
        sha256: sha256_hex(tokenizer.proto()),
    };
    let t_path = tmp.join(TOKENIZER_FILE);
    std::fs::write(&t_path, tokenizer.proto()).map_err(io_err(&t_path))?;
    if let Some(opt) = optimizer {
        let o_path = tmp.join(OPTIMIZER_FILE);
        let cpu: Vec<(String, Tensor)> = opt
            .iter()
            .map(|(n, t)| (n.clone(), t.to_device(Device::Cpu)))
            .collect();
        Tensor::write_safetensors(&cpu, &o_path).map_err(|e| CheckpointError::Weights {
            path: o_path.clone(),
            reason: e.to_string(),
        })?;
    }
    let c_path = tmp.join(CONFIG_FILE);
    let json = serde_json::to_string_pretty(config).map_err(|e| CheckpointError::BadConfig {
        path: c_path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&c_path, json + "\n").map_err(io_err(&c_path))?;
    for f in std::fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
        if let Ok(file) = std::fs::File::open(f.path()) {
            let _ = file.sync_all();
        }
    }
    keep_other_files(dir, &tmp)?;
    replace_dir(&tmp, dir)
}

/// Copies files that are not part of the checkpoint (metrics, plots) from the old folder into the
/// new one, so replacing the folder keeps them.
fn keep_other_files(old: &Path, new: &Path) -> Result<(), CheckpointError> {
    let Ok(entries) = std::fs::read_dir(old) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let keep = e.file_type().is_ok_and(|t| t.is_file())
            && ![CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, OPTIMIZER_FILE]
                .iter()
                .any(|f| name == *f);
        if keep {
            let to = new.join(&name);
            std::fs::copy(e.path(), &to).map_err(io_err(&to))?;
        }
    }
    Ok(())
}

/// Moves `new` into place at `dir`, atomically when `dir` already exists (Linux RENAME_EXCHANGE).
fn replace_dir(new: &Path, dir: &Path) -> Result<(), CheckpointError> {
    if !dir.exists() {
        return std::fs::rename(new, dir).map_err(io_err(dir));
    }
    if exchange(new, dir) {
        return std::fs::remove_dir_all(new).map_err(io_err(new));
    }
    let old = dir.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    std::fs::rename(dir, &old).map_err(io_err(dir))?;
    std::fs::rename(new, dir).map_err(io_err(dir))?;
    std::fs::remove_dir_all(&old).map_err(io_err(&old))
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(ca), Ok(cb)) = (
        std::ffi::CString::new(a.as_os_str().as_bytes()),
        std::ffi::CString::new(b.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: both paths are valid NUL-terminated strings.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> bool {
    false
}
