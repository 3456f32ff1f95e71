//! The one thread the interpreter runs on, fed by a job channel, so that sockets, control
//! requests and heartbeats stay responsive while a slow interpreter works.

use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use tokio::sync::{mpsc as async_mpsc, oneshot};

use super::interpreter::{
    Completeness, Completion, ExecuteStatus, Inspection, Interpreter, InterpreterInfo,
    InterruptFlag, Output, OutputSink,
};

/// What the worker reports while a cell executes.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecEvent {
    Output(Output),
    Done(ExecuteStatus),
}

/// Work for the interpreter thread. Each job answers on its own channel.
pub enum Job {
    Execute {
        code: String,
        silent: bool,
        events: async_mpsc::UnboundedSender<ExecEvent>,
    },
    Complete {
        code: String,
        cursor_pos: usize,
        reply: oneshot::Sender<Completion>,
    },
    Inspect {
        code: String,
        cursor_pos: usize,
        detail_level: u8,
        reply: oneshot::Sender<Inspection>,
    },
    IsComplete {
        code: String,
        reply: oneshot::Sender<Completeness>,
    },
    CommMsg {
        target: String,
        data: Value,
        reply: oneshot::Sender<Option<Value>>,
    },
}

/// The interpreter thread has stopped and takes no more jobs.
#[derive(Debug, thiserror::Error)]
#[error("the interpreter thread has stopped")]
pub struct WorkerGone;

/// Handle to the interpreter thread.
pub struct Worker {
    jobs: mpsc::Sender<Job>,
    info: InterpreterInfo,
    comm_targets: Vec<String>,
}

struct ChannelSink<'a>(&'a async_mpsc::UnboundedSender<ExecEvent>);

impl OutputSink for ChannelSink<'_> {
    fn publish(&mut self, output: Output) {
        // The receiver only goes away when the kernel is shutting down.
        let _ = self.0.send(ExecEvent::Output(output));
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_string()
    }
}

impl Worker {
    /// Starts the interpreter thread. `interrupt` is the flag passed to every `execute`.
    pub fn spawn(
        interpreter: Box<dyn Interpreter>,
        interrupt: InterruptFlag,
    ) -> std::io::Result<Self> {
        let info = interpreter.info();
        let comm_targets = interpreter.comm_targets();
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("interpreter".into())
            .spawn(move || run_jobs(interpreter, queue, interrupt))?;
        Ok(Worker {
            jobs,
            info,
            comm_targets,
        })
    }

    pub fn info(&self) -> &InterpreterInfo {
        &self.info
    }

    pub fn comm_targets(&self) -> &[String] {
        &self.comm_targets
    }

    pub fn submit(&self, job: Job) -> Result<(), WorkerGone> {
        self.jobs.send(job).map_err(|_| WorkerGone)
    }
}

fn run_jobs(
    mut interpreter: Box<dyn Interpreter>,
    queue: mpsc::Receiver<Job>,
    interrupt: InterruptFlag,
) {
    while let Ok(job) = queue.recv() {
        // A panicking interpreter fails the job, not the kernel.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_job(interpreter.as_mut(), job, &interrupt)
        }));
        if let Err(payload) = outcome {
            tracing::error!("interpreter panicked: {}", panic_message(payload.as_ref()));
        }
    }
}

fn run_job(interpreter: &mut dyn Interpreter, job: Job, interrupt: &InterruptFlag) {
    match job {
        Job::Execute {
            code,
            silent,
            events,
        } => {
            let mut sink = ChannelSink(&events);
            let status = catch_unwind(AssertUnwindSafe(|| {
                interpreter.execute(&code, silent, &mut sink, interrupt)
            }))
            .unwrap_or_else(|payload| ExecuteStatus::Failed {
                ename: "InterpreterPanic".into(),
                evalue: panic_message(payload.as_ref()),
                traceback: Vec::new(),
            });
            let _ = events.send(ExecEvent::Done(status));
        }
        Job::Complete {
            code,
            cursor_pos,
            reply,
        } => {
            let _ = reply.send(interpreter.complete(&code, cursor_pos));
        }
        Job::Inspect {
            code,
            cursor_pos,
            detail_level,
            reply,
        } => {
            let _ = reply.send(interpreter.inspect(&code, cursor_pos, detail_level));
        }
        Job::IsComplete { code, reply } => {
            let _ = reply.send(interpreter.is_complete(&code));
        }
        Job::CommMsg {
            target,
            data,
            reply,
        } => {
            let _ = reply.send(interpreter.comm_msg(&target, &data));
        }
    }
}
