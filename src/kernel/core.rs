//! The kernel core: dispatches decoded requests, wraps each in busy/idle, counts executions,
//! keeps history and comms, batches streamed output, and turns interpreter answers into
//! replies. It never touches a socket: everything it sends goes out as [`Outgoing`] values.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

use super::history::History;
use super::interpreter::{
    Completeness, Completion, ExecuteStatus, Inspection, InterruptFlag, Output,
};
use super::worker::{ExecEvent, Job, Worker};
use super::KernelError;
use crate::protocol::content::{self, HelpLink, KernelInfoReply, LanguageInfo, Request};
use crate::protocol::{kernel_session, Message};

/// How often batched stream text is flushed while a cell runs.
pub const STREAM_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// The socket a message goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Shell,
    Control,
    IoPub,
}

/// A message the core wants sent, in the order it must be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub channel: Channel,
    pub message: Message,
}

/// Kernel settings that are not part of the interpreter.
#[derive(Debug, Clone, Default)]
pub struct KernelConfig {
    /// Where history persists; `None` keeps it in memory.
    pub history_path: Option<PathBuf>,
    /// `help_links` for `kernel_info_reply`; `None` derives them from the language.
    pub help_links: Option<Vec<HelpLink>>,
}

impl KernelConfig {
    /// Settings for a real kernel process: history under the user's data directory (or
    /// `$NOTEBOOK_PREDICTOR_HISTORY`).
    pub fn from_environment() -> Self {
        KernelConfig {
            history_path: History::default_path(),
            help_links: None,
        }
    }
}

struct State {
    /// The count of the last stored execution; the next one gets this plus one.
    execution_count: u32,
    history: History,
    /// Open comms: comm_id to target name.
    comms: BTreeMap<String, String>,
}

/// The dispatcher. Share it in an `Arc`: shell and control requests may be handled
/// concurrently, and the interpreter itself runs on its own thread.
pub struct KernelCore {
    worker: Worker,
    interrupt: InterruptFlag,
    help_links: Vec<HelpLink>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    state: Mutex<State>,
    shutdown: watch::Sender<Option<bool>>,
}

fn default_help_links(language: &str) -> Vec<HelpLink> {
    if language.eq_ignore_ascii_case("python") {
        vec![HelpLink {
            text: "Python Reference".into(),
            url: "https://docs.python.org/3/".into(),
        }]
    } else {
        Vec::new()
    }
}

/// The `text/plain` of a mime bundle, joined if it is a list of lines.
fn plain_text(data: &Map<String, Value>) -> Option<String> {
    match data.get("text/plain")? {
        Value::String(text) => Some(text.clone()),
        Value::Array(lines) => Some(lines.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// Stream text waiting to be published; consecutive text of one stream is merged.
#[derive(Default)]
struct StreamBuffer {
    pending: Vec<(String, String)>,
}

impl StreamBuffer {
    fn push(&mut self, name: String, text: String) {
        match self.pending.last_mut() {
            Some((last, buffered)) if *last == name => buffered.push_str(&text),
            _ => self.pending.push((name, text)),
        }
    }

    fn take(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.pending)
    }
}

impl KernelCore {
    /// Starts the interpreter thread and opens history. `outgoing` receives every message
    /// the core sends, in order.
    pub fn new(
        interpreter: Box<dyn super::Interpreter>,
        config: KernelConfig,
        outgoing: mpsc::UnboundedSender<Outgoing>,
    ) -> Result<Self, KernelError> {
        let interrupt = InterruptFlag::default();
        let worker = Worker::spawn(interpreter, interrupt.clone()).map_err(KernelError::Worker)?;
        let history = match &config.history_path {
            None => History::in_memory(),
            Some(path) => History::open(path).unwrap_or_else(|err| {
                tracing::warn!("{err}; keeping history in memory");
                History::in_memory()
            }),
        };
        let help_links = config
            .help_links
            .unwrap_or_else(|| default_help_links(&worker.info().language_name));
        Ok(KernelCore {
            worker,
            interrupt,
            help_links,
            outgoing,
            state: Mutex::new(State {
                execution_count: 0,
                history,
                comms: BTreeMap::new(),
            }),
            shutdown: watch::Sender::new(None),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The flag raised by `interrupt_request`.
    pub fn interrupt_flag(&self) -> &InterruptFlag {
        &self.interrupt
    }

    /// The count of the last stored execution.
    pub fn execution_count(&self) -> u32 {
        self.state().execution_count
    }

    /// The history session number of this process.
    pub fn history_session(&self) -> u32 {
        self.state().history.session()
    }

    /// Becomes `Some(restart)` once a shutdown was requested and its reply queued.
    pub fn shutdown_requested(&self) -> watch::Receiver<Option<bool>> {
        self.shutdown.subscribe()
    }

    fn send(&self, channel: Channel, message: Message) {
        if self.outgoing.send(Outgoing { channel, message }).is_err() {
            tracing::debug!("dropping a message: the kernel is shutting down");
        }
    }

    fn publish(&self, mut message: Message) {
        let topic = format!("kernel.{}.{}", kernel_session(), message.msg_type());
        message.identities = vec![Bytes::from(topic)];
        self.send(Channel::IoPub, message);
    }

    fn publish_child(&self, parent: &Message, msg_type: &str, content: Value) {
        self.publish(Message::child_of(parent, msg_type, content));
    }

    fn reply(&self, channel: Channel, request: &Message, msg_type: &str, content: Value) {
        self.send(channel, Message::reply_to(request, msg_type, content));
    }

    /// Publishes `starting`; call once when the sockets are bound.
    pub fn publish_starting(&self) {
        self.publish(Message::new("status", content::status("starting")));
    }

    /// Raises the interrupt flag, as `interrupt_request` does.
    pub fn interrupt(&self) {
        self.interrupt.raise();
    }

    /// Handles one request that arrived on `channel` (shell or control): `busy`, the work
    /// and its outputs, the reply, then `idle`.
    pub async fn handle(&self, channel: Channel, request: Message) {
        self.publish_child(&request, "status", content::status("busy"));
        let shutdown = self.dispatch(channel, &request).await;
        self.publish_child(&request, "status", content::status("idle"));
        // Signal a shutdown only once its `idle` is queued: the server stops sending after
        // the signal, so anything queued later would be lost.
        if let Some(restart) = shutdown {
            self.shutdown.send_replace(Some(restart));
        }
    }

    /// Handles one request; returns `Some(restart)` for a shutdown request.
    async fn dispatch(&self, channel: Channel, msg: &Message) -> Option<bool> {
        let msg_type = msg.msg_type().to_string();
        let request = match Request::parse(&msg_type, &msg.content) {
            Ok(request) => request,
            Err(err) => {
                tracing::warn!("{err}");
                if let Some(reply_type) = Request::reply_type(&msg_type) {
                    let reply = content::error_reply(None, "ValueError", &err.to_string(), &[]);
                    self.reply(channel, msg, &reply_type, reply);
                }
                return None;
            }
        };
        match request {
            Request::KernelInfo => self.kernel_info(channel, msg),
            Request::Execute(req) => self.execute(channel, msg, req).await,
            Request::Complete(req) => self.complete(channel, msg, req).await,
            Request::Inspect(req) => self.inspect(channel, msg, req).await,
            Request::IsComplete(req) => self.is_complete(channel, msg, req).await,
            Request::History(req) => self.history(channel, msg, req),
            Request::CommInfo(req) => self.comm_info(channel, msg, req),
            Request::CommOpen(req) => self.comm_open(msg, req),
            Request::CommMsg(req) => self.comm_msg(msg, req).await,
            Request::CommClose(req) => {
                if self.state().comms.remove(&req.comm_id).is_none() {
                    tracing::debug!("comm_close for unknown comm {}", req.comm_id);
                }
            }
            Request::Interrupt => {
                self.interrupt();
                self.reply(channel, msg, "interrupt_reply", content::interrupt_reply());
            }
            Request::Shutdown(req) => {
                // Stop a running cell so the process can exit promptly.
                self.interrupt();
                let reply = content::shutdown_reply(req.restart);
                self.reply(channel, msg, "shutdown_reply", reply.clone());
                self.publish_child(msg, "shutdown_reply", reply);
                return Some(req.restart);
            }
            Request::Unknown(msg_type) => {
                tracing::warn!("ignoring unknown message type {msg_type:?}");
            }
        }
        None
    }

    fn kernel_info(&self, channel: Channel, msg: &Message) {
        let info = self.worker.info();
        let reply = KernelInfoReply::new(
            info.implementation.clone(),
            info.implementation_version.clone(),
            LanguageInfo {
                name: info.language_name.clone(),
                version: info.language_version.clone(),
                mimetype: info.mimetype.clone(),
                file_extension: info.file_extension.clone(),
                pygments_lexer: info.pygments_lexer.clone(),
                codemirror_mode: info.codemirror_mode.clone(),
                nbconvert_exporter: info.nbconvert_exporter.clone(),
            },
            info.banner.clone(),
            self.help_links.clone(),
        );
        match serde_json::to_value(reply) {
            Ok(reply) => self.reply(channel, msg, "kernel_info_reply", reply),
            Err(err) => tracing::error!("cannot serialize kernel_info_reply: {err}"),
        }
    }

    async fn execute(&self, channel: Channel, msg: &Message, req: content::ExecuteRequest) {
        let stores = !req.silent && req.store_history;
        let count = {
            let mut state = self.state();
            if stores {
                state.execution_count += 1;
            }
            state.execution_count
        };
        if !req.silent {
            self.publish_child(
                msg,
                "execute_input",
                content::execute_input(&req.code, count),
            );
        }

        self.interrupt.clear();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let job = Job::Execute {
            code: req.code.clone(),
            silent: req.silent,
            events,
        };
        let mut result_text = None;
        let status = if self.worker.submit(job).is_err() {
            worker_gone()
        } else {
            self.collect_outputs(msg, &mut receiver, req.silent, count, &mut result_text)
                .await
        };

        if stores {
            let mut state = self.state();
            if let Err(err) = state.history.record(count, &req.code, result_text) {
                tracing::warn!("{err}");
            }
        }

        let reply = match status {
            ExecuteStatus::Ok => content::execute_reply_ok(count),
            ExecuteStatus::Interrupted => {
                let traceback = vec!["KeyboardInterrupt".to_string()];
                if !req.silent {
                    let error = content::error_output("KeyboardInterrupt", "", &traceback);
                    self.publish_child(msg, "error", error);
                }
                content::error_reply(Some(count), "KeyboardInterrupt", "", &traceback)
            }
            ExecuteStatus::Failed {
                ename,
                evalue,
                traceback,
            } => {
                if !req.silent {
                    let error = content::error_output(&ename, &evalue, &traceback);
                    self.publish_child(msg, "error", error);
                }
                content::error_reply(Some(count), &ename, &evalue, &traceback)
            }
        };
        self.reply(channel, msg, "execute_reply", reply);
    }

    /// Publishes the outputs of a running cell until it finishes, batching stream text so
    /// at most one message per stream goes out per flush interval.
    async fn collect_outputs(
        &self,
        msg: &Message,
        receiver: &mut mpsc::UnboundedReceiver<ExecEvent>,
        silent: bool,
        count: u32,
        result_text: &mut Option<String>,
    ) -> ExecuteStatus {
        let mut buffer = StreamBuffer::default();
        let start = tokio::time::Instant::now() + STREAM_FLUSH_INTERVAL;
        let mut ticker = tokio::time::interval_at(start, STREAM_FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let status = loop {
            tokio::select! {
                event = receiver.recv() => match event {
                    Some(ExecEvent::Output(Output::Stream { name, text })) => {
                        buffer.push(name, text);
                    }
                    Some(ExecEvent::Output(output)) => {
                        self.flush_streams(msg, &mut buffer, silent);
                        if let Output::ExecuteResult { data, .. } = &output {
                            *result_text = plain_text(data);
                        }
                        if !silent {
                            self.publish_output(msg, output, count);
                        }
                    }
                    Some(ExecEvent::Done(status)) => break status,
                    None => break worker_gone(),
                },
                _ = ticker.tick() => self.flush_streams(msg, &mut buffer, silent),
            }
        };
        self.flush_streams(msg, &mut buffer, silent);
        status
    }

    fn flush_streams(&self, msg: &Message, buffer: &mut StreamBuffer, silent: bool) {
        for (name, text) in buffer.take() {
            if !silent && !text.is_empty() {
                self.publish_child(msg, "stream", content::stream(&name, &text));
            }
        }
    }

    fn publish_output(&self, msg: &Message, output: Output, count: u32) {
        match output {
            Output::Stream { name, text } => {
                self.publish_child(msg, "stream", content::stream(&name, &text))
            }
            Output::ExecuteResult { data, metadata } => self.publish_child(
                msg,
                "execute_result",
                content::execute_result(count, &data, &metadata),
            ),
            Output::DisplayData { data, metadata } => {
                self.publish_child(msg, "display_data", content::display_data(&data, &metadata))
            }
            Output::Error {
                ename,
                evalue,
                traceback,
            } => self.publish_child(
                msg,
                "error",
                content::error_output(&ename, &evalue, &traceback),
            ),
        }
    }

    async fn ask<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        if self.worker.submit(job(reply)).is_err() {
            tracing::error!("the interpreter thread has stopped");
            return None;
        }
        match answer.await {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::error!("the interpreter failed to answer");
                None
            }
        }
    }

    async fn complete(&self, channel: Channel, msg: &Message, req: content::CompleteRequest) {
        let length = req.code.chars().count();
        let cursor_pos = req.cursor_pos.unwrap_or(length).min(length);
        let code = req.code;
        let completion = self
            .ask(|reply| Job::Complete {
                code,
                cursor_pos,
                reply,
            })
            .await
            .unwrap_or_else(|| Completion {
                cursor_start: cursor_pos,
                cursor_end: cursor_pos,
                ..Completion::default()
            });
        let reply = content::complete_reply(
            &completion.matches,
            completion.cursor_start,
            completion.cursor_end,
            &completion.metadata,
        );
        self.reply(channel, msg, "complete_reply", reply);
    }

    async fn inspect(&self, channel: Channel, msg: &Message, req: content::InspectRequest) {
        let length = req.code.chars().count();
        let cursor_pos = req.cursor_pos.unwrap_or(length).min(length);
        let (code, detail_level) = (req.code, req.detail_level);
        let inspection = self
            .ask(|reply| Job::Inspect {
                code,
                cursor_pos,
                detail_level,
                reply,
            })
            .await
            .unwrap_or_else(Inspection::default);
        let reply =
            content::inspect_reply(inspection.found, &inspection.data, &inspection.metadata);
        self.reply(channel, msg, "inspect_reply", reply);
    }

    async fn is_complete(&self, channel: Channel, msg: &Message, req: content::IsCompleteRequest) {
        let code = req.code;
        let answer = self
            .ask(|reply| Job::IsComplete { code, reply })
            .await
            .unwrap_or(Completeness::Unknown);
        let reply = match &answer {
            Completeness::Complete => content::is_complete_reply("complete", None),
            Completeness::Incomplete { indent } => {
                content::is_complete_reply("incomplete", Some(indent))
            }
            Completeness::Invalid => content::is_complete_reply("invalid", None),
            Completeness::Unknown => content::is_complete_reply("unknown", None),
        };
        self.reply(channel, msg, "is_complete_reply", reply);
    }

    fn history(&self, channel: Channel, msg: &Message, req: content::HistoryRequest) {
        use content::HistAccessType;
        let state = self.state();
        let history = &state.history;
        let entries = match req.hist_access_type {
            HistAccessType::Tail => Ok(history.tail(req.n.unwrap_or(10))),
            HistAccessType::Range => {
                Ok(history.range(req.session.unwrap_or(0), req.start.unwrap_or(1), req.stop))
            }
            HistAccessType::Search => {
                history.search(req.pattern.as_deref().unwrap_or("*"), req.n, req.unique)
            }
        };
        let reply = match entries {
            Ok(entries) => {
                let items: Vec<Value> = entries
                    .iter()
                    .map(|entry| entry.to_reply_item(req.output))
                    .collect();
                json!({ "status": "ok", "history": items })
            }
            Err(err) => {
                tracing::warn!("{err}");
                content::error_reply(None, "ValueError", &err.to_string(), &[])
            }
        };
        drop(state);
        self.reply(channel, msg, "history_reply", reply);
    }

    fn comm_info(&self, channel: Channel, msg: &Message, req: content::CommInfoRequest) {
        let comms: Map<String, Value> = self
            .state()
            .comms
            .iter()
            .filter(|(_, target)| {
                req.target_name
                    .as_ref()
                    .is_none_or(|wanted| wanted == *target)
            })
            .map(|(id, target)| (id.clone(), json!({ "target_name": target })))
            .collect();
        let reply = json!({ "status": "ok", "comms": comms });
        self.reply(channel, msg, "comm_info_reply", reply);
    }

    fn comm_open(&self, msg: &Message, req: content::CommOpen) {
        if self.worker.comm_targets().contains(&req.target_name) {
            self.state().comms.insert(req.comm_id, req.target_name);
        } else {
            tracing::warn!(
                "no comm target {:?}; closing comm {}",
                req.target_name,
                req.comm_id
            );
            self.publish_child(msg, "comm_close", content::comm_close(&req.comm_id));
        }
    }

    async fn comm_msg(&self, msg: &Message, req: content::CommMsg) {
        let target = self.state().comms.get(&req.comm_id).cloned();
        let Some(target) = target else {
            tracing::warn!("comm_msg for unknown comm {}", req.comm_id);
            return;
        };
        let data = req.data;
        let answer = self
            .ask(|reply| Job::CommMsg {
                target,
                data,
                reply,
            })
            .await;
        if let Some(Some(data)) = answer {
            self.publish_child(msg, "comm_msg", content::comm_msg(&req.comm_id, &data));
        }
    }
}

fn worker_gone() -> ExecuteStatus {
    ExecuteStatus::Failed {
        ename: "KernelError".into(),
        evalue: "the interpreter thread has stopped".into(),
        traceback: Vec::new(),
    }
}
