//! `notebook-predictor install`: writes the kernelspec (kernel.json and logos) and the
//! JupyterLab extension into a Jupyter data directory, as `python -m ipykernel install` does.

use include_dir::{include_dir, Dir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The kernelspec name used when none is given.
pub const DEFAULT_KERNEL_NAME: &str = "notebook-predictor";
/// The name shown in the launcher and the kernel picker.
pub const DISPLAY_NAME: &str = "Notebook Predictor";
/// The directory name of the JupyterLab extension under `labextensions/`.
pub const LABEXTENSION_NAME: &str = "notebook-predictor";

const LOGOS: &[(&str, &[u8])] = &[
    (
        "logo-32x32.png",
        include_bytes!("../kernelspec/logo-32x32.png"),
    ),
    (
        "logo-64x64.png",
        include_bytes!("../kernelspec/logo-64x64.png"),
    ),
    ("logo-svg.svg", include_bytes!("../kernelspec/logo-svg.svg")),
];

static LABEXTENSION: Dir<'static> =
    include_dir!("$CARGO_MANIFEST_DIR/labextension/notebook_predictor_labextension");

/// Why installing failed. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot find the home directory for the user data directory")]
    NoHome,
    #[error("cannot find the Python prefix: {reason}")]
    NoPythonPrefix { reason: String },
    #[error("invalid kernel name {name:?}: use only ASCII letters, digits, '.', '_' and '-'")]
    InvalidName { name: String },
    #[error("model directory {path} does not exist or is not a directory")]
    ModelNotFound { path: PathBuf },
    #[error("cannot find the path of this executable: {source}")]
    CurrentExe {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io {
        action,
        path,
        source,
    }
}

/// Which Jupyter data directory to install into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The user's data directory (`$JUPYTER_DATA_DIR`, else the platform default).
    User,
    /// `sys.prefix/share/jupyter` of the active Python environment.
    SysPrefix,
    /// `PREFIX/share/jupyter`.
    Prefix(PathBuf),
}

/// What to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    pub location: Location,
    pub name: String,
    /// A model directory passed to the kernel as `--model DIR`.
    pub model: Option<PathBuf>,
    pub labextension: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            location: Location::User,
            name: DEFAULT_KERNEL_NAME.to_string(),
            model: None,
            labextension: true,
        }
    }
}

/// The command-line arguments of `install`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// Install for the current user (the default).
    #[arg(long, conflicts_with_all = ["sys_prefix", "prefix"])]
    pub user: bool,
    /// Install into the active Python environment (sys.prefix/share/jupyter).
    #[arg(long, conflicts_with = "prefix")]
    pub sys_prefix: bool,
    /// Install into PREFIX/share/jupyter.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<PathBuf>,
    /// The kernelspec name.
    #[arg(long, default_value = DEFAULT_KERNEL_NAME)]
    pub name: String,
    /// A model directory the kernel loads.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Do not install the JupyterLab extension.
    #[arg(long)]
    pub no_labextension: bool,
}

impl InstallArgs {
    pub fn options(&self) -> InstallOptions {
        let location = match (&self.prefix, self.sys_prefix) {
            (Some(prefix), _) => Location::Prefix(prefix.clone()),
            (None, true) => Location::SysPrefix,
            (None, false) => Location::User,
        };
        InstallOptions {
            location,
            name: self.name.clone(),
            model: self.model.clone(),
            labextension: !self.no_labextension,
        }
    }
}

/// Where things were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub kernelspec_dir: PathBuf,
    pub labextension_dir: Option<PathBuf>,
}

/// The user's Jupyter data directory, following jupyter_core: `$JUPYTER_DATA_DIR`, else
/// `$XDG_DATA_HOME/jupyter` or `~/.local/share/jupyter` on Linux, `~/Library/Jupyter` on
/// macOS, `%APPDATA%\jupyter` on Windows.
pub fn user_data_dir() -> Result<PathBuf, InstallError> {
    if let Some(dir) = std::env::var_os("JUPYTER_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if cfg!(windows) {
        if let Some(appdata) = std::env::var_os("APPDATA").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(appdata).join("jupyter"));
        }
    }
    let home = dirs::home_dir().ok_or(InstallError::NoHome)?;
    if cfg!(target_os = "macos") {
        return Ok(home.join("Library").join("Jupyter"));
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(xdg).join("jupyter"));
    }
    Ok(home.join(".local").join("share").join("jupyter"))
}

/// `sys.prefix` of the active Python: `$VIRTUAL_ENV`, `$CONDA_PREFIX`, else asked from
/// `python3` (or `python`) on PATH.
pub fn python_prefix() -> Result<PathBuf, InstallError> {
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
    }
    let mut reasons = Vec::new();
    for python in ["python3", "python"] {
        match std::process::Command::new(python)
            .args(["-c", "import sys; print(sys.prefix)"])
            .output()
        {
            Ok(output) if output.status.success() => {
                let prefix = String::from_utf8_lossy(&output.stdout).trim().to_string();
                if !prefix.is_empty() {
                    return Ok(PathBuf::from(prefix));
                }
                reasons.push(format!("{python} printed no prefix"));
            }
            Ok(output) => reasons.push(format!("{python} exited with {}", output.status)),
            Err(err) => reasons.push(format!("cannot run {python}: {err}")),
        }
    }
    Err(InstallError::NoPythonPrefix {
        reason: reasons.join("; "),
    })
}

/// The Jupyter data directory for `location`.
pub fn data_dir(location: &Location) -> Result<PathBuf, InstallError> {
    match location {
        Location::User => user_data_dir(),
        Location::SysPrefix => Ok(python_prefix()?.join("share").join("jupyter")),
        Location::Prefix(prefix) => Ok(prefix.join("share").join("jupyter")),
    }
}

/// Whether `name` is a valid kernelspec name (jupyter_client accepts `[a-zA-Z0-9._-]+`).
pub fn is_valid_kernel_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The kernel.json for a kernel started as `exe kernel -f {connection_file} [--model DIR]`.
pub fn kernel_json(exe: &Path, model: Option<&Path>) -> Value {
    let mut argv = vec![
        exe.to_string_lossy().into_owned(),
        "kernel".to_string(),
        "-f".to_string(),
        "{connection_file}".to_string(),
    ];
    if let Some(model) = model {
        argv.push("--model".to_string());
        argv.push(model.to_string_lossy().into_owned());
    }
    json!({
        "argv": argv,
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "message",
        "metadata": { "debugger": false },
    })
}

/// Writes `bytes` to `path` atomically, creating its directory first.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    crate::render::write_atomic(path, bytes).map_err(|e| match e {
        crate::render::WriteError::Io { source, .. } => io_error("write", path)(source),
    })
}

/// Fills a fresh directory next to `target` with `fill`, then swaps it into place, so a
/// failure leaves the previous installation intact.
fn replace_dir(
    target: &Path,
    fill: impl FnOnce(&Path) -> Result<(), InstallError>,
) -> Result<(), InstallError> {
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".notebook-predictor-")
        .tempdir_in(parent)
        .map_err(io_error("create a directory in", parent))?;
    fill(staging.path())?;
    let staged = staging.keep();
    if target.exists() {
        let old = parent.join(format!(
            ".{}-old-{}",
            target
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::rename(target, &old).map_err(io_error("move aside", target))?;
        if let Err(source) = std::fs::rename(&staged, target) {
            // Put the previous installation back before reporting.
            let _ = std::fs::rename(&old, target);
            let _ = std::fs::remove_dir_all(&staged);
            return Err(InstallError::Io {
                action: "replace",
                path: target.to_path_buf(),
                source,
            });
        }
        std::fs::remove_dir_all(&old).map_err(io_error("remove", &old))?;
    } else {
        std::fs::rename(&staged, target).map_err(|source| {
            let _ = std::fs::remove_dir_all(&staged);
            InstallError::Io {
                action: "create",
                path: target.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

fn write_embedded(dir: &Dir<'_>, root: &Path) -> Result<(), InstallError> {
    for file in dir.files() {
        write_atomic(&root.join(file.path()), file.contents())?;
    }
    for sub in dir.dirs() {
        write_embedded(sub, root)?;
    }
    Ok(())
}

/// Writes a kernelspec that starts `exe` into `data_dir/kernels/<name>`, and unless disabled
/// the JupyterLab extension into `data_dir/labextensions/notebook-predictor`.
pub fn install_into(
    data_dir: &Path,
    exe: &Path,
    options: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    if !is_valid_kernel_name(&options.name) {
        return Err(InstallError::InvalidName {
            name: options.name.clone(),
        });
    }
    let model = match &options.model {
        None => None,
        Some(model) => {
            if !model.is_dir() {
                return Err(InstallError::ModelNotFound {
                    path: model.clone(),
                });
            }
            Some(std::fs::canonicalize(model).map_err(io_error("resolve", model))?)
        }
    };
    let spec = kernel_json(exe, model.as_deref());
    let mut spec_text = serde_json::to_string_pretty(&spec).unwrap_or_else(|_| spec.to_string());
    spec_text.push('\n');

    let kernelspec_dir = data_dir.join("kernels").join(options.name.to_lowercase());
    replace_dir(&kernelspec_dir, |staging| {
        write_atomic(&staging.join("kernel.json"), spec_text.as_bytes())?;
        for (name, bytes) in LOGOS {
            write_atomic(&staging.join(name), bytes)?;
        }
        Ok(())
    })?;

    let labextension_dir = if options.labextension {
        let dir = data_dir.join("labextensions").join(LABEXTENSION_NAME);
        replace_dir(&dir, |staging| write_embedded(&LABEXTENSION, staging))?;
        Some(dir)
    } else {
        None
    };
    Ok(InstallReport {
        kernelspec_dir,
        labextension_dir,
    })
}

/// Installs for this executable into the data directory chosen by `options.location`.
pub fn install(options: &InstallOptions) -> Result<InstallReport, InstallError> {
    let exe = std::env::current_exe().map_err(|source| InstallError::CurrentExe { source })?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    install_into(&data_dir(&options.location)?, &exe, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_json_has_the_spec_fields() {
        let spec = kernel_json(
            Path::new("/opt/np/bin/notebook-predictor"),
            Some(Path::new("/m")),
        );
        assert_eq!(
            spec["argv"],
            json!([
                "/opt/np/bin/notebook-predictor",
                "kernel",
                "-f",
                "{connection_file}",
                "--model",
                "/m"
            ])
        );
        assert_eq!(spec["display_name"], "Notebook Predictor");
        assert_eq!(spec["language"], "python");
        assert_eq!(spec["interrupt_mode"], "message");
        let plain = kernel_json(Path::new("/x"), None);
        assert_eq!(plain["argv"].as_array().map(Vec::len), Some(4));
    }

    #[test]
    fn the_template_matches_the_generated_spec() {
        let template: Value =
            serde_json::from_str(include_str!("../kernelspec/kernel.json")).expect("template");
        let generated = kernel_json(Path::new("notebook-predictor"), None);
        assert_eq!(template, generated);
    }

    #[test]
    fn installs_kernelspec_logos_and_labextension() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("model");
        std::fs::create_dir(&model).expect("model dir");
        let options = InstallOptions {
            location: Location::Prefix(dir.path().into()),
            name: "np-test".into(),
            model: Some(model.clone()),
            labextension: true,
        };
        let data = data_dir(&options.location).expect("data dir");
        assert_eq!(data, dir.path().join("share").join("jupyter"));
        let report = install_into(&data, Path::new("/bin/np"), &options).expect("install");
        assert_eq!(report.kernelspec_dir, data.join("kernels").join("np-test"));
        let spec: Value = serde_json::from_slice(
            &std::fs::read(report.kernelspec_dir.join("kernel.json")).expect("kernel.json"),
        )
        .expect("json");
        let model = std::fs::canonicalize(&model).expect("canonical");
        assert_eq!(spec["argv"][5], json!(model.to_string_lossy()));
        for (name, bytes) in LOGOS {
            assert_eq!(
                std::fs::read(report.kernelspec_dir.join(name)).expect("logo"),
                *bytes
            );
        }
        // The kernelspec is readable like any file the user creates (not a private temp file),
        // so a --sys-prefix or --prefix install serves every user.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            let plain = dir.path().join("plain.txt");
            std::fs::write(&plain, "x").expect("plain file");
            assert_eq!(
                mode(&report.kernelspec_dir.join("kernel.json")),
                mode(&plain)
            );
        }
        let lab = report.labextension_dir.expect("labextension");
        assert_eq!(lab, data.join("labextensions").join("notebook-predictor"));
        assert!(lab.join("package.json").is_file());

        // Installing again replaces the previous files and leaves no staging directories.
        std::fs::write(report.kernelspec_dir.join("stale.txt"), "old").expect("stale");
        let again = InstallOptions {
            model: None,
            labextension: false,
            ..options
        };
        install_into(&data, Path::new("/bin/np"), &again).expect("reinstall");
        assert!(!report.kernelspec_dir.join("stale.txt").exists());
        let leftovers: Vec<_> = std::fs::read_dir(data.join("kernels"))
            .expect("kernels")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("np-test")]);
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad_name = InstallOptions {
            name: "bad name/..".into(),
            ..InstallOptions::default()
        };
        assert!(matches!(
            install_into(dir.path(), Path::new("/x"), &bad_name),
            Err(InstallError::InvalidName { .. })
        ));
        let missing = dir.path().join("no-such-model");
        let no_model = InstallOptions {
            model: Some(missing.clone()),
            ..InstallOptions::default()
        };
        let err = install_into(dir.path(), Path::new("/x"), &no_model).unwrap_err();
        assert!(
            err.to_string()
                .contains(&missing.to_string_lossy().to_string()),
            "{err}"
        );

        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").expect("file");
        let err = install_into(&file, Path::new("/x"), &InstallOptions::default()).unwrap_err();
        assert!(matches!(err, InstallError::Io { .. }), "{err}");
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
