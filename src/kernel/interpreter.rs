//! The one hook a language implements: the `Interpreter` trait and the values it returns.
//!
//! The kernel core owns sockets, busy/idle, execution counts and history; an interpreter only
//! turns code into outputs. It never sees a socket or a message header.

use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Static facts about the interpreter, used for `kernel_info_reply`.
#[derive(Debug, Clone)]
pub struct InterpreterInfo {
    pub implementation: String,
    pub implementation_version: String,
    pub banner: String,
    pub language_name: String,
    pub language_version: String,
    pub mimetype: String,
    pub file_extension: String,
    pub pygments_lexer: String,
    pub codemirror_mode: String,
    pub nbconvert_exporter: String,
}

/// One output produced while executing a cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Text for the `stream` message; `name` is "stdout" or "stderr". May be called many
    /// times during one execution; the core batches it before publishing.
    Stream { name: String, text: String },
    /// An `execute_result` (the core adds the execution count).
    ExecuteResult {
        data: Map<String, Value>,
        metadata: Map<String, Value>,
    },
    /// A `display_data` message.
    DisplayData {
        data: Map<String, Value>,
        metadata: Map<String, Value>,
    },
    /// An `error` output. It does not change the execute reply, which still says `ok`; only
    /// [`ExecuteStatus::Interrupted`] and [`ExecuteStatus::Failed`] make the reply an error.
    Error {
        ename: String,
        evalue: String,
        traceback: Vec<String>,
    },
}

/// Where an interpreter sends its outputs during `execute`, and how it learns of an interrupt.
pub trait OutputSink {
    fn publish(&mut self, output: Output);
}

/// Shared flag set by the core on `interrupt_request`; interpreters poll it while working.
#[derive(Debug, Clone, Default)]
pub struct InterruptFlag(Arc<AtomicBool>);

impl InterruptFlag {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecuteStatus {
    Ok,
    /// Stopped by an interrupt; the core replies with status "error", ename "KeyboardInterrupt".
    Interrupted,
    /// The interpreter could not run the cell at all (e.g. no model): reply status "error".
    Failed {
        ename: String,
        evalue: String,
        traceback: Vec<String>,
    },
}

/// The answer to a completion request. Offsets are in Unicode code points.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
    /// Extra reply metadata, e.g. `_jupyter_types_experimental`.
    pub metadata: Map<String, Value>,
}

/// The answer to an inspect request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inspection {
    pub found: bool,
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

/// The answer to an is_complete request.
#[derive(Debug, Clone, PartialEq)]
pub enum Completeness {
    Complete,
    Incomplete { indent: String },
    Invalid,
    Unknown,
}

/// A language back end driven by the kernel core. All methods run on one worker thread.
pub trait Interpreter: Send + 'static {
    fn info(&self) -> InterpreterInfo;
    /// Runs (or predicts) one cell. Outputs go to `sink`; poll `interrupt` while working.
    fn execute(
        &mut self,
        code: &str,
        silent: bool,
        sink: &mut dyn OutputSink,
        interrupt: &InterruptFlag,
    ) -> ExecuteStatus;
    fn complete(&mut self, code: &str, cursor_pos: usize) -> Completion;
    fn inspect(&mut self, code: &str, cursor_pos: usize, detail_level: u8) -> Inspection;
    fn is_complete(&mut self, code: &str) -> Completeness;
    /// A message on a comm whose target this interpreter owns (see `comm_targets`).
    /// Returns the data of the reply `comm_msg`, or None for no reply.
    fn comm_msg(&mut self, target: &str, data: &Value) -> Option<Value>;
    /// Comm target names this interpreter accepts in `comm_open`.
    fn comm_targets(&self) -> Vec<String>;
}
