//! The server: binds the five sockets named by the connection file, decodes and verifies
//! incoming frames, hands requests to the [`KernelCore`], and sends what the core emits.

use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use zeromq::{
    PubSocket, RepSocket, RouterRecvHalf, RouterSendHalf, RouterSocket, Socket, SocketRecv,
    SocketSend, ZmqMessage,
};

use super::core::{Channel, KernelConfig, KernelCore, Outgoing};
use super::interpreter::Interpreter;
use super::KernelError;
use crate::protocol::{ConnectionInfo, Message, Signer, Transport, WireError};

/// How long the kernel waits for queued messages to go out before it exits.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(2000);
/// Time given to socket writers to put the last frames on the wire.
const WIRE_DRAIN: Duration = Duration::from_millis(100);

/// Requests handled as soon as they arrive on shell, instead of waiting behind a running
/// execution.
fn is_urgent(msg_type: &str) -> bool {
    matches!(msg_type, "interrupt_request" | "shutdown_request")
}

async fn bind<S: Socket>(
    socket: &mut S,
    info: &ConnectionInfo,
    channel: &'static str,
    port: u16,
) -> Result<Option<PathBuf>, KernelError> {
    let endpoint = info.endpoint(port);
    let ipc_path =
        (info.transport == Transport::Ipc).then(|| PathBuf::from(format!("{}-{}", info.ip, port)));
    if let Some(path) = &ipc_path {
        // Like libzmq, take over a socket file left by an earlier process (a restart
        // reuses the same paths).
        if path.exists() {
            if let Err(err) = std::fs::remove_file(path) {
                tracing::warn!("cannot remove stale ipc socket {}: {err}", path.display());
            }
        }
    }
    socket
        .bind(&endpoint)
        .await
        .map_err(|source| KernelError::Bind {
            channel,
            endpoint: endpoint.clone(),
            source,
        })?;
    tracing::debug!("{channel} bound to {endpoint}");
    Ok(ipc_path)
}

/// Binds the sockets, serves until a shutdown request has been answered, then returns.
pub async fn serve(
    info: ConnectionInfo,
    interpreter: Box<dyn Interpreter>,
    config: KernelConfig,
) -> Result<(), KernelError> {
    let signer = Signer::new(info.key.as_bytes());
    if !signer.is_enabled() {
        tracing::warn!("the connection file has an empty key: messages are not signed");
    }
    let mut shell = RouterSocket::new();
    let mut control = RouterSocket::new();
    let mut stdin = RouterSocket::new();
    let mut iopub = PubSocket::new();
    let mut heartbeat = RepSocket::new();
    let ipc_files: Vec<PathBuf> = [
        bind(&mut shell, &info, "shell", info.shell_port).await?,
        bind(&mut control, &info, "control", info.control_port).await?,
        bind(&mut stdin, &info, "stdin", info.stdin_port).await?,
        bind(&mut iopub, &info, "iopub", info.iopub_port).await?,
        bind(&mut heartbeat, &info, "heartbeat", info.hb_port).await?,
    ]
    .into_iter()
    .flatten()
    .collect();

    let (outgoing, outbox) = mpsc::unbounded_channel();
    let core = Arc::new(KernelCore::new(interpreter, config, outgoing)?);
    let mut shutdown = core.shutdown_requested();
    let flag = core.interrupt_flag().clone();
    // SIGINT interrupts the running cell, as it does in ipykernel, instead of killing the
    // process. Only one handler can exist per process.
    if let Err(err) = ctrlc::set_handler(move || flag.raise()) {
        tracing::debug!("SIGINT stays unhandled: {err}");
    }

    let (shell_send, shell_recv) = shell.split();
    let (control_send, control_recv) = control.split();

    let sender = tokio::spawn(send_loop(
        outbox,
        shell_send,
        control_send,
        iopub,
        signer.clone(),
        core.shutdown_requested(),
    ));
    core.publish_starting();

    let mut tasks: Vec<JoinHandle<()>> = vec![
        tokio::spawn(heartbeat_loop(heartbeat)),
        tokio::spawn(stdin_loop(stdin, signer.clone())),
        tokio::spawn(control_loop(control_recv, core.clone(), signer.clone())),
    ];
    let (shell_queue, shell_jobs) = mpsc::unbounded_channel();
    tasks.push(tokio::spawn(shell_loop(shell_jobs, core.clone())));
    tasks.push(tokio::spawn(shell_receive_loop(
        shell_recv,
        core.clone(),
        signer,
        shell_queue,
    )));
    tracing::info!("kernel ready ({})", info.endpoint(info.shell_port));

    let restart = loop {
        if let Some(restart) = *shutdown.borrow_and_update() {
            break restart;
        }
        if shutdown.changed().await.is_err() {
            break false;
        }
    };
    tracing::info!("shutting down (restart: {restart})");
    // The sockets come back from the sender and stay open through the drain below: dropping
    // the PUB socket discards what its fan-out queue has not yet written (the last `idle`).
    let sockets = match tokio::time::timeout(SHUTDOWN_GRACE, sender).await {
        Ok(Ok(sockets)) => Some(sockets),
        Ok(Err(err)) => {
            tracing::warn!("the sender stopped: {err}");
            None
        }
        Err(_) => {
            tracing::warn!("timed out sending the last messages");
            None
        }
    };
    for task in &tasks {
        task.abort();
    }
    tokio::time::sleep(WIRE_DRAIN).await;
    drop(sockets);
    for path in ipc_files {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn to_zmq(frames: Vec<Bytes>) -> Option<ZmqMessage> {
    ZmqMessage::try_from(frames).ok()
}

/// Sends everything the core emits, in order. Ends once a shutdown was requested and
/// everything queued before it went out; returns the sockets so the caller decides when they
/// close.
async fn send_loop(
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    mut shell: RouterSendHalf,
    mut control: RouterSendHalf,
    mut iopub: PubSocket,
    signer: Signer,
    shutdown: watch::Receiver<Option<bool>>,
) -> (PubSocket, RouterSendHalf, RouterSendHalf) {
    while let Some(Outgoing { channel, message }) = outbox.recv().await {
        let msg_type = message.msg_type().to_string();
        let frames = match message.encode(&signer) {
            Ok(frames) => frames,
            Err(err) => {
                tracing::error!("cannot encode {msg_type}: {err}");
                continue;
            }
        };
        let Some(frames) = to_zmq(frames) else {
            continue;
        };
        let result = match channel {
            Channel::IoPub => iopub.send(frames).await,
            Channel::Shell | Channel::Control if message.identities.is_empty() => {
                tracing::warn!("cannot route {msg_type}: the request had no identity");
                Ok(())
            }
            Channel::Shell => shell.send(frames).await,
            Channel::Control => control.send(frames).await,
        };
        if let Err(err) = result {
            // Typically the client went away; the kernel keeps serving the others.
            tracing::warn!("cannot send {msg_type} on {channel:?}: {err}");
        }
        if shutdown.borrow().is_some() && outbox.is_empty() {
            break;
        }
    }
    (iopub, shell, control)
}

/// Receives and verifies messages, calling `on_message` for each valid one.
async fn receive_loop(
    socket: &mut RouterRecvHalf,
    channel: &'static str,
    signer: &Signer,
    mut on_message: impl FnMut(Message),
) {
    loop {
        match socket.recv().await {
            Ok(frames) => match Message::decode(frames.into_vec(), signer) {
                Ok(message) => on_message(message),
                Err(WireError::BadSignature) => {
                    tracing::warn!("{channel}: dropping a message with an invalid signature")
                }
                Err(err) => tracing::warn!("{channel}: dropping a malformed message: {err}"),
            },
            Err(err) => {
                tracing::warn!("{channel}: receive failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn shell_receive_loop(
    mut socket: RouterRecvHalf,
    core: Arc<KernelCore>,
    signer: Signer,
    queue: mpsc::UnboundedSender<Message>,
) {
    receive_loop(&mut socket, "shell", &signer, |message| {
        if is_urgent(message.msg_type()) {
            let core = core.clone();
            tokio::spawn(async move { core.handle(Channel::Shell, message).await });
        } else if queue.send(message).is_err() {
            tracing::warn!("shell: the dispatcher has stopped");
        }
    })
    .await
}

/// Handles shell requests one at a time, in arrival order.
async fn shell_loop(mut jobs: mpsc::UnboundedReceiver<Message>, core: Arc<KernelCore>) {
    while let Some(message) = jobs.recv().await {
        core.handle(Channel::Shell, message).await;
    }
}

/// Handles control requests one at a time, independently of shell.
async fn control_loop(mut socket: RouterRecvHalf, core: Arc<KernelCore>, signer: Signer) {
    let (queue, mut jobs) = mpsc::unbounded_channel::<Message>();
    let worker = core.clone();
    let handler = tokio::spawn(async move {
        while let Some(message) = jobs.recv().await {
            worker.handle(Channel::Control, message).await;
        }
    });
    receive_loop(&mut socket, "control", &signer, |message| {
        if message.msg_type() == "interrupt_request" {
            // Raise the flag at once, even if an earlier control request is still pending.
            core.interrupt();
        }
        if queue.send(message).is_err() {
            tracing::warn!("control: the dispatcher has stopped");
        }
    })
    .await;
    handler.abort();
}

/// The kernel never asks for input, so anything arriving on stdin is logged and dropped.
async fn stdin_loop(socket: RouterSocket, signer: Signer) {
    let (_send, mut recv) = socket.split();
    receive_loop(&mut recv, "stdin", &signer, |message| {
        tracing::debug!("stdin: ignoring {}", message.msg_type());
    })
    .await
}

/// Echoes every heartbeat.
async fn heartbeat_loop(mut socket: RepSocket) {
    loop {
        match socket.recv().await {
            Ok(ping) => {
                if let Err(err) = socket.send(ping).await {
                    tracing::debug!("heartbeat: cannot echo: {err}");
                }
            }
            Err(err) => {
                tracing::debug!("heartbeat: receive failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
