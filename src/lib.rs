//! Notebook Predictor: a Jupyter kernel that predicts what running a cell would print.

pub mod checkpoint;
pub mod eval;
pub mod install;
pub mod interpreter;
pub mod kernel;
pub mod model;
pub mod notebook;
pub mod protocol;
pub mod render;
pub mod sequence;
pub mod tokenizer;
pub mod train;

/// The device to compute on: CUDA when present, else CPU.
pub fn default_device() -> tch::Device {
    tch::Device::cuda_if_available()
}
pub mod predictor;

/// Where the model comes from when no `--model` is given: `$NOTEBOOK_PREDICTOR_MODEL`, else the
/// installed copy under the user's data folder, else `models/default` of the source tree.
pub fn resolve_model(explicit: Option<&std::path::Path>) -> std::path::PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("NOTEBOOK_PREDICTOR_MODEL").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if let Some(d) = dirs::data_dir() {
        let installed = d.join("notebook-predictor").join("models").join("default");
        if installed.join(checkpoint::CONFIG_FILE).exists() {
            return installed;
        }
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("default")
}
