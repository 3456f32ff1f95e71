//! The kernel core driven by decoded requests against the mock interpreter, with no sockets:
//! every message it sends is captured in order.

use bytes::Bytes;
use notebook_predictor::kernel::mock::{MockInterpreter, ECHO_COMM_TARGET};
use notebook_predictor::kernel::{Channel, KernelConfig, KernelCore, Outgoing};
use notebook_predictor::protocol::{kernel_session, Message};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Harness {
    core: Arc<KernelCore>,
    outbox: mpsc::UnboundedReceiver<Outgoing>,
}

fn request(msg_type: &str, content: Value) -> Message {
    let mut msg = Message::new(msg_type, content);
    msg.identities = vec![Bytes::from_static(b"client-identity")];
    msg.header.session = "client-session".into();
    msg.header.username = "tester".into();
    msg
}

fn execute(code: &str) -> Message {
    request("execute_request", json!({"code": code, "silent": false}))
}

impl Harness {
    fn new() -> Self {
        Self::with_config(KernelConfig::default())
    }

    fn with_config(config: KernelConfig) -> Self {
        let (outgoing, outbox) = mpsc::unbounded_channel();
        let core = KernelCore::new(Box::new(MockInterpreter::new()), config, outgoing)
            .expect("core starts");
        Harness {
            core: Arc::new(core),
            outbox,
        }
    }

    fn drain(&mut self) -> Vec<Outgoing> {
        let mut sent = Vec::new();
        while let Ok(out) = self.outbox.try_recv() {
            sent.push(out);
        }
        sent
    }

    async fn send(&mut self, channel: Channel, msg: Message) -> Vec<Outgoing> {
        self.core.handle(channel, msg).await;
        self.drain()
    }

    async fn shell(&mut self, msg: Message) -> Vec<Outgoing> {
        self.send(Channel::Shell, msg).await
    }
}

/// `(channel, msg_type)` of each message, with the execution state for `status`.
fn kinds(sent: &[Outgoing]) -> Vec<String> {
    sent.iter()
        .map(|out| {
            let t = out.message.msg_type();
            match t {
                "status" => format!(
                    "{:?}:status:{}",
                    out.channel,
                    out.message.content["execution_state"]
                        .as_str()
                        .unwrap_or("?")
                ),
                _ => format!("{:?}:{t}", out.channel),
            }
        })
        .collect()
}

fn find<'a>(sent: &'a [Outgoing], msg_type: &str) -> &'a Message {
    &sent
        .iter()
        .find(|out| out.message.msg_type() == msg_type)
        .unwrap_or_else(|| panic!("no {msg_type} in {:?}", kinds(sent)))
        .message
}

fn reply(sent: &[Outgoing]) -> &Message {
    &sent
        .iter()
        .find(|out| out.channel != Channel::IoPub)
        .unwrap_or_else(|| panic!("no reply in {:?}", kinds(sent)))
        .message
}

fn stdout_text(sent: &[Outgoing]) -> String {
    sent.iter()
        .filter(|out| out.message.msg_type() == "stream")
        .map(|out| {
            out.message.content["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn kernel_info_is_wrapped_in_busy_idle_on_shell_and_control() {
    let mut h = Harness::new();
    for channel in [Channel::Shell, Channel::Control] {
        let req = request("kernel_info_request", json!({}));
        let sent = h.send(channel, req.clone()).await;
        assert_eq!(
            kinds(&sent),
            [
                "IoPub:status:busy".to_string(),
                format!("{channel:?}:kernel_info_reply"),
                "IoPub:status:idle".to_string(),
            ]
        );
        let mut ids = HashSet::new();
        for out in &sent {
            assert_eq!(out.message.parent_header.as_ref(), Some(&req.header));
            assert_eq!(out.message.header.session, kernel_session());
            assert_ne!(out.message.header.session, "client-session");
            assert_eq!(out.message.header.version, "5.3");
            assert!(!out.message.header.username.is_empty());
            assert!(!out.message.header.date.is_empty());
            assert!(ids.insert(out.message.header.msg_id.clone()));
        }
        let reply = reply(&sent);
        assert_eq!(reply.identities, req.identities);
        let content = &reply.content;
        assert_eq!(content["status"], "ok");
        assert_eq!(content["protocol_version"], "5.3");
        assert_eq!(content["implementation"], "notebook-predictor-mock");
        assert_eq!(content["banner"], "Notebook Predictor (mock interpreter)");
        assert_eq!(content["language_info"]["name"], "python");
        assert_eq!(content["language_info"]["mimetype"], "text/x-python");
        assert_eq!(content["language_info"]["file_extension"], ".py");
        assert_eq!(content["language_info"]["pygments_lexer"], "ipython3");
        assert_eq!(content["language_info"]["codemirror_mode"], "python");
        assert_eq!(content["language_info"]["nbconvert_exporter"], "python");
        assert_eq!(
            content["help_links"][0]["url"],
            "https://docs.python.org/3/"
        );
        // iopub messages carry a topic frame.
        assert!(sent[0].message.identities[0].starts_with(b"kernel."));
    }
}

#[tokio::test]
async fn starting_is_published_once_without_a_parent() {
    let mut h = Harness::new();
    h.core.publish_starting();
    let sent = h.drain();
    assert_eq!(kinds(&sent), ["IoPub:status:starting"]);
    assert_eq!(sent[0].message.parent_header, None);
}

#[tokio::test]
async fn execute_publishes_input_and_outputs_before_the_reply() {
    let mut h = Harness::new();
    let req = execute("print('hello, world')\n6 * 7");
    let sent = h.shell(req.clone()).await;
    assert_eq!(
        kinds(&sent),
        [
            "IoPub:status:busy",
            "IoPub:execute_input",
            "IoPub:stream",
            "IoPub:execute_result",
            "Shell:execute_reply",
            "IoPub:status:idle",
        ]
    );
    let input = find(&sent, "execute_input");
    assert_eq!(
        input.content,
        json!({"code": "print('hello, world')\n6 * 7", "execution_count": 1})
    );
    assert_eq!(
        find(&sent, "stream").content,
        json!({"name": "stdout", "text": "hello, world\n"})
    );
    let result = find(&sent, "execute_result");
    assert_eq!(result.content["execution_count"], 1);
    assert_eq!(result.content["data"], json!({"text/plain": "42"}));
    assert_eq!(result.content["metadata"], json!({}));
    let execute_reply = reply(&sent);
    assert_eq!(
        execute_reply.content,
        json!({"status": "ok", "execution_count": 1, "user_expressions": {}, "payload": []})
    );
    assert_eq!(execute_reply.metadata, serde_json::Map::new());
    for out in &sent {
        assert_eq!(
            out.message.parent_msg_id(),
            Some(req.header.msg_id.as_str())
        );
    }

    let sent = h.shell(execute("a = 1")).await;
    assert_eq!(find(&sent, "execute_input").content["execution_count"], 2);
    assert_eq!(reply(&sent).content["execution_count"], 2);
    assert_eq!(stdout_text(&sent), "a = 1\n");
    assert_eq!(h.core.execution_count(), 2);
}

#[tokio::test]
async fn silent_and_unstored_executions_do_not_count() {
    let mut h = Harness::new();
    let sent = h
        .shell(request(
            "execute_request",
            json!({"code": "print('x')", "silent": true}),
        ))
        .await;
    assert_eq!(
        kinds(&sent),
        [
            "IoPub:status:busy",
            "Shell:execute_reply",
            "IoPub:status:idle"
        ]
    );
    assert_eq!(reply(&sent).content["execution_count"], 0);

    let sent = h.shell(execute("print('one')")).await;
    assert_eq!(reply(&sent).content["execution_count"], 1);

    let sent = h
        .shell(request(
            "execute_request",
            json!({"code": "print('two')", "store_history": false}),
        ))
        .await;
    assert_eq!(find(&sent, "execute_input").content["execution_count"], 1);
    assert_eq!(stdout_text(&sent), "two\n");
    assert_eq!(reply(&sent).content["execution_count"], 1);

    let sent = h.shell(execute("print('three')")).await;
    assert_eq!(reply(&sent).content["execution_count"], 2);

    // Only stored executions are in history.
    let sent = h
        .shell(request(
            "history_request",
            json!({"hist_access_type": "tail", "n": 10, "output": false, "raw": true}),
        ))
        .await;
    let session = h.core.history_session();
    assert_eq!(
        reply(&sent).content["history"],
        json!([[session, 1, "print('one')"], [session, 2, "print('three')"]])
    );
}

#[tokio::test]
async fn an_error_output_keeps_the_reply_ok() {
    let mut h = Harness::new();
    let sent = h.shell(execute("raise ValueError: bad value")).await;
    assert_eq!(
        find(&sent, "error").content,
        json!({"ename": "ValueError", "evalue": "bad value", "traceback": ["ValueError: bad value"]})
    );
    assert_eq!(reply(&sent).content["status"], "ok");
    assert_eq!(reply(&sent).content["execution_count"], 1);
}

#[tokio::test]
async fn a_failed_execution_replies_error() {
    let mut h = Harness::new();
    let sent = h.shell(execute("fail")).await;
    let failed = reply(&sent);
    assert_eq!(failed.content["status"], "error");
    assert_eq!(failed.content["ename"], "MockFailure");
    assert_eq!(failed.content["execution_count"], 1);
    assert_eq!(find(&sent, "error").content["ename"], "MockFailure");
    let order = kinds(&sent);
    let error_at = order.iter().position(|k| k == "IoPub:error");
    let reply_at = order.iter().position(|k| k == "Shell:execute_reply");
    assert!(error_at < reply_at, "{order:?}");
}

#[tokio::test]
async fn a_panicking_interpreter_fails_the_cell_and_keeps_serving() {
    let mut h = Harness::new();
    let sent = h.shell(execute("panic")).await;
    assert_eq!(reply(&sent).content["status"], "error");
    assert_eq!(reply(&sent).content["ename"], "InterpreterPanic");
    let sent = h.shell(execute("print('alive')")).await;
    assert_eq!(stdout_text(&sent), "alive\n");
    assert_eq!(reply(&sent).content["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_a_running_execution_quickly() {
    let mut h = Harness::new();
    let core = h.core.clone();
    let running =
        tokio::spawn(async move { core.handle(Channel::Shell, execute("slow 1000")).await });
    tokio::time::sleep(Duration::from_millis(150)).await;

    let interrupted_at = Instant::now();
    h.core
        .handle(Channel::Control, request("interrupt_request", json!({})))
        .await;
    tokio::time::timeout(Duration::from_millis(200), running)
        .await
        .expect("execute stops within 200 ms")
        .expect("task");
    assert!(interrupted_at.elapsed() < Duration::from_millis(200));

    let sent = h.drain();
    let interrupt_reply = sent
        .iter()
        .find(|out| out.message.msg_type() == "interrupt_reply")
        .expect("interrupt_reply");
    assert_eq!(interrupt_reply.channel, Channel::Control);
    assert_eq!(interrupt_reply.message.content, json!({"status": "ok"}));
    let execute_reply = find(&sent, "execute_reply");
    assert_eq!(execute_reply.content["status"], "error");
    assert_eq!(execute_reply.content["ename"], "KeyboardInterrupt");
    assert_eq!(execute_reply.content["execution_count"], 1);
    assert_eq!(find(&sent, "error").content["ename"], "KeyboardInterrupt");
    assert!(stdout_text(&sent).starts_with("tick 0\ntick 1\n"));

    // The next execution is not affected by the old interrupt.
    let sent = h.shell(execute("print('after')")).await;
    assert_eq!(reply(&sent).content["status"], "ok");
    assert_eq!(stdout_text(&sent), "after\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_streams_are_batched() {
    let mut h = Harness::new();
    let started = Instant::now();
    let sent = h.shell(execute("tokens 300")).await;
    let elapsed = started.elapsed();
    let streams = sent
        .iter()
        .filter(|o| o.message.msg_type() == "stream")
        .count();
    assert_eq!(stdout_text(&sent), "x".repeat(300));
    let bound = (elapsed.as_millis() / 50) as usize + 2;
    assert!(
        streams <= bound,
        "{streams} stream messages in {elapsed:?} (at most {bound})"
    );
    assert!(streams < 30, "{streams} stream messages for 300 tokens");
    let order = kinds(&sent);
    let last_stream = order.iter().rposition(|k| k == "IoPub:stream");
    let reply_at = order.iter().position(|k| k == "Shell:execute_reply");
    assert!(last_stream < reply_at);
}

#[tokio::test]
async fn complete_inspect_and_is_complete() {
    let mut h = Harness::new();
    let sent = h
        .shell(request(
            "complete_request",
            json!({"code": "λ = pri", "cursor_pos": 7}),
        ))
        .await;
    let content = &reply(&sent).content;
    assert_eq!(content["status"], "ok");
    assert_eq!(content["matches"], json!(["print"]));
    assert_eq!(content["cursor_start"], 4);
    assert_eq!(content["cursor_end"], 7);
    assert_eq!(
        content["metadata"]["_jupyter_types_experimental"],
        json!([{"start": 4, "end": 7, "text": "print", "type": "function", "signature": ""}])
    );
    assert_eq!(
        kinds(&sent),
        [
            "IoPub:status:busy",
            "Shell:complete_reply",
            "IoPub:status:idle"
        ]
    );

    // A cursor past the end is clamped; a missing cursor means the end.
    let sent = h
        .shell(request(
            "complete_request",
            json!({"code": "pr", "cursor_pos": 99}),
        ))
        .await;
    assert_eq!(reply(&sent).content["cursor_end"], 2);
    let sent = h
        .shell(request("complete_request", json!({"code": "le"})))
        .await;
    assert_eq!(reply(&sent).content["matches"], json!(["len"]));

    let sent = h
        .shell(request(
            "inspect_request",
            json!({"code": "print", "cursor_pos": 3, "detail_level": 0}),
        ))
        .await;
    let content = &reply(&sent).content;
    assert_eq!(content["found"], true);
    assert!(content["data"]["text/plain"]
        .as_str()
        .unwrap_or("")
        .starts_with("print("));

    for (code, expected) in [
        (
            "for i in range(3):",
            json!({"status": "incomplete", "indent": "    "}),
        ),
        ("print(1)", json!({"status": "complete"})),
        ("print(1))", json!({"status": "invalid"})),
    ] {
        let sent = h
            .shell(request("is_complete_request", json!({"code": code})))
            .await;
        assert_eq!(reply(&sent).content, expected, "{code}");
    }
}

#[tokio::test]
async fn history_tail_range_and_search() {
    let mut h = Harness::new();
    for code in ["a = 1", "print('a')", "6 * 7", "print('a')", "print('b')"] {
        h.shell(execute(code)).await;
    }
    let s = h.core.history_session();
    let history = |content: Value| request("history_request", content);
    let sent = h
        .shell(history(
            json!({"hist_access_type": "tail", "n": 2, "output": false, "raw": true}),
        ))
        .await;
    assert_eq!(
        reply(&sent).content,
        json!({"status": "ok", "history": [[s, 4, "print('a')"], [s, 5, "print('b')"]]})
    );
    let sent = h
        .shell(history(json!({"hist_access_type": "range", "session": 0, "start": 2, "stop": 4, "output": true, "raw": true})))
        .await;
    assert_eq!(
        reply(&sent).content["history"],
        json!([[s, 2, ["print('a')", null]], [s, 3, ["6 * 7", "42"]]])
    );
    let sent = h
        .shell(history(json!({"hist_access_type": "search", "pattern": "print*", "unique": true, "output": false, "raw": true})))
        .await;
    assert_eq!(
        reply(&sent).content["history"],
        json!([[s, 4, "print('a')"], [s, 5, "print('b')"]])
    );
    let sent = h
        .shell(history(json!({"hist_access_type": "search", "pattern": "print*", "n": 2, "output": false, "raw": true})))
        .await;
    assert_eq!(
        reply(&sent).content["history"],
        json!([[s, 4, "print('a')"], [s, 5, "print('b')"]])
    );
    let sent = h
        .shell(history(
            json!({"hist_access_type": "search", "pattern": "*(*", "output": false, "raw": true}),
        ))
        .await;
    assert_eq!(
        reply(&sent).content["history"].as_array().map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn history_persists_between_kernel_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.jsonl");
    let config = KernelConfig {
        history_path: Some(path.clone()),
        help_links: None,
    };
    let mut first = Harness::with_config(config.clone());
    first.shell(execute("print('first')")).await;
    let first_session = first.core.history_session();
    drop(first);

    let mut second = Harness::with_config(config);
    assert_eq!(second.core.history_session(), first_session + 1);
    let sent = second
        .shell(request("history_request", json!({"hist_access_type": "range", "session": -1, "start": 1, "stop": null, "output": false, "raw": true})))
        .await;
    assert_eq!(
        reply(&sent).content["history"],
        json!([[first_session, 1, "print('first')"]])
    );
}

#[tokio::test]
async fn comms_open_echo_list_and_close() {
    let mut h = Harness::new();
    let open = request(
        "comm_open",
        json!({"comm_id": "c1", "target_name": ECHO_COMM_TARGET, "data": {}}),
    );
    let sent = h.shell(open).await;
    assert_eq!(kinds(&sent), ["IoPub:status:busy", "IoPub:status:idle"]);

    let sent = h.shell(request("comm_info_request", json!({}))).await;
    assert_eq!(
        reply(&sent).content,
        json!({"status": "ok", "comms": {"c1": {"target_name": ECHO_COMM_TARGET}}})
    );
    let sent = h
        .shell(request(
            "comm_info_request",
            json!({"target_name": "other"}),
        ))
        .await;
    assert_eq!(reply(&sent).content["comms"], json!({}));

    let msg = request("comm_msg", json!({"comm_id": "c1", "data": {"x": 1}}));
    let sent = h.shell(msg.clone()).await;
    let echo = find(&sent, "comm_msg");
    assert_eq!(
        echo.content,
        json!({"comm_id": "c1", "data": {"echo": {"x": 1}}})
    );
    assert_eq!(echo.parent_header.as_ref(), Some(&msg.header));
    assert_eq!(
        kinds(&sent),
        ["IoPub:status:busy", "IoPub:comm_msg", "IoPub:status:idle"]
    );

    h.shell(request("comm_close", json!({"comm_id": "c1", "data": {}})))
        .await;
    let sent = h.shell(request("comm_info_request", json!({}))).await;
    assert_eq!(reply(&sent).content["comms"], json!({}));

    let sent = h
        .shell(request(
            "comm_open",
            json!({"comm_id": "c2", "target_name": "jupyter.widget", "data": {}}),
        ))
        .await;
    assert_eq!(find(&sent, "comm_close").content["comm_id"], "c2");
}

#[tokio::test]
async fn shutdown_replies_then_signals() {
    let mut h = Harness::new();
    let signal = h.core.shutdown_requested();
    assert_eq!(*signal.borrow(), None);
    let sent = h
        .send(
            Channel::Control,
            request("shutdown_request", json!({"restart": true})),
        )
        .await;
    assert_eq!(
        kinds(&sent),
        [
            "IoPub:status:busy",
            "Control:shutdown_reply",
            "IoPub:shutdown_reply",
            "IoPub:status:idle"
        ]
    );
    assert_eq!(
        reply(&sent).content,
        json!({"status": "ok", "restart": true})
    );
    assert_eq!(*signal.borrow(), Some(true));
}

#[tokio::test]
async fn unknown_and_malformed_requests_never_crash() {
    let mut h = Harness::new();
    let sent = h
        .shell(request("debug_request", json!({"command": "x"})))
        .await;
    assert_eq!(kinds(&sent), ["IoPub:status:busy", "IoPub:status:idle"]);

    let sent = h
        .shell(request("execute_request", json!({"silent": false})))
        .await;
    let reply_msg = reply(&sent);
    assert_eq!(reply_msg.msg_type(), "execute_reply");
    assert_eq!(reply_msg.content["status"], "error");
    assert_eq!(reply_msg.content["ename"], "ValueError");
    assert_eq!(h.core.execution_count(), 0);

    let sent = h
        .shell(request("comm_msg", json!({"comm_id": "nope", "data": {}})))
        .await;
    assert_eq!(kinds(&sent), ["IoPub:status:busy", "IoPub:status:idle"]);

    let sent = h.shell(execute("print('ok')")).await;
    assert_eq!(reply(&sent).content["status"], "ok");
}
