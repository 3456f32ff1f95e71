//! The kernel: the socket server, the dispatching core, history and the interpreter thread,
//! around the [`Interpreter`] trait that a language back end implements.

pub mod core;
pub mod history;
pub mod interpreter;
pub mod mock;
pub mod server;
pub mod worker;

pub use self::core::{Channel, KernelConfig, KernelCore, Outgoing};
pub use self::interpreter::*;

use std::path::Path;
use std::time::Duration;

use crate::protocol::{ConnectionError, ConnectionInfo};

/// Why the kernel could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("cannot bind the {channel} socket to {endpoint}: {source}")]
    Bind {
        channel: &'static str,
        endpoint: String,
        #[source]
        source: zeromq::ZmqError,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start the interpreter thread: {0}")]
    Worker(#[source] std::io::Error),
}

/// Runs a kernel for `connection_file` until a client asks it to shut down. History goes to
/// the user's data directory (or `$NOTEBOOK_PREDICTOR_HISTORY`).
pub fn run(connection_file: &Path, interpreter: Box<dyn Interpreter>) -> Result<(), KernelError> {
    run_with_config(
        connection_file,
        interpreter,
        KernelConfig::from_environment(),
    )
}

/// [`run`] with explicit settings.
pub fn run_with_config(
    connection_file: &Path,
    interpreter: Box<dyn Interpreter>,
    config: KernelConfig,
) -> Result<(), KernelError> {
    let info = ConnectionInfo::from_file(connection_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kernel-io")
        .enable_all()
        .build()
        .map_err(KernelError::Runtime)?;
    let result = runtime.block_on(server::serve(info, interpreter, config));
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}
