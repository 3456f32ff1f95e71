"""Drive the notebook-predictor kernel with real libzmq clients (jupyter_client / pyzmq).

The kernel is installed with its own `install` command into a temporary JUPYTER_DATA_DIR and
started through jupyter_client's KernelManager over tcp and ipc.

Environment:
  NOTEBOOK_PREDICTOR_BIN          the kernel executable (default: target/debug/notebook-predictor)
  NOTEBOOK_PREDICTOR_INSTALL_ARGS extra `install` arguments, e.g. "--model /path/to/model"

The code samples below speak the mock interpreter's commands (see src/kernel/mock.rs); a real
model needs samples it predicts reliably, so they are kept together in SAMPLES.

Run:  pytest -q tests/python/test_protocol_mock.py
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from queue import Empty

import pytest
import zmq
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("NOTEBOOK_PREDICTOR_BIN", ROOT / "target" / "debug" / "notebook-predictor"))
KERNEL_NAME = "notebook-predictor-test"
TIMEOUT = 15

SAMPLES = {
    "hello": ("print('hello, world')", "hello, world\n"),
    "long_stream": "slow 2000",  # streams for ~40 s unless interrupted
    "tokens": "tokens 400",  # 400 one-character stream outputs, 1 ms apart
    "complete": ("x = pri", ["print"]),
    "incomplete": "for i in range(3):",
    "complete_code": "print(1)",
    "invalid": "print(1))",
}

_data_dir = tempfile.TemporaryDirectory(prefix="np-jupyter-data-")
DATA_DIR = Path(_data_dir.name)


def setup_module() -> None:
    assert BIN.exists(), f"build the kernel first: {BIN} is missing"
    os.environ["JUPYTER_DATA_DIR"] = str(DATA_DIR)
    os.environ["NOTEBOOK_PREDICTOR_HISTORY"] = str(DATA_DIR / "history.jsonl")
    extra = shlex.split(os.environ.get("NOTEBOOK_PREDICTOR_INSTALL_ARGS", ""))
    subprocess.run(
        [str(BIN), "install", "--user", "--name", KERNEL_NAME, *extra],
        check=True,
        env=os.environ,
    )
    spec = json.loads((DATA_DIR / "kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"][0] == str(BIN.resolve())
    assert spec["interrupt_mode"] == "message"
    for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
        assert (DATA_DIR / "kernels" / KERNEL_NAME / logo).is_file()
    assert (DATA_DIR / "labextensions" / "notebook-predictor" / "package.json").is_file()


def start_kernel(transport: str, ipc_dir: Path | None = None):
    kwargs = {"kernel_name": KERNEL_NAME, "transport": transport}
    if transport == "ipc":
        assert ipc_dir is not None
        kwargs["ip"] = str(ipc_dir / "kernel-ipc")
    km = KernelManager(**kwargs)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    return km, kc


@pytest.fixture(params=["tcp", "ipc"], scope="module")
def kernel(request, tmp_path_factory):
    ipc_dir = tmp_path_factory.mktemp("ipc")
    km, kc = start_kernel(request.param, ipc_dir)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=False)


def drain_iopub(kc, timeout: float = 0.2) -> list[dict]:
    msgs = []
    while True:
        try:
            msgs.append(kc.get_iopub_msg(timeout=timeout))
        except Empty:
            return msgs


def iopub_for(kc, msg_id: str, timeout: float = TIMEOUT) -> list[dict]:
    """iopub messages whose parent is msg_id, up to and including its idle status."""
    msgs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        except Empty:
            break
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs
    raise AssertionError(f"no idle for {msg_id}; got {[m['msg_type'] for m in msgs]}")


_unclaimed: dict[str, dict] = {}


def shell_reply(kc, msg_id: str, timeout: float = TIMEOUT) -> dict:
    """The shell reply to msg_id; replies to other requests are kept for later calls."""
    if msg_id in _unclaimed:
        return _unclaimed.pop(msg_id)
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
        parent = reply["parent_header"].get("msg_id")
        if parent == msg_id:
            return reply
        _unclaimed[parent] = reply


def test_kernel_info(kernel):
    km, kc = kernel
    drain_iopub(kc)
    msg_id = kc.kernel_info()
    reply = shell_reply(kc, msg_id)
    content = reply["content"]
    assert content["status"] == "ok"
    assert content["protocol_version"] == "5.3"
    assert content["language_info"]["name"] == "python"
    assert content["language_info"]["file_extension"] == ".py"
    assert isinstance(content["help_links"], list)
    assert content["banner"]
    header = reply["header"]
    for field in ("msg_id", "session", "username", "date", "version", "msg_type"):
        assert header[field], field
    assert header["version"] == "5.3"
    states = [m["content"]["execution_state"] for m in iopub_for(kc, msg_id) if m["msg_type"] == "status"]
    assert states == ["busy", "idle"]


def test_kernel_info_on_control(kernel):
    km, kc = kernel
    msg = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(msg)
    reply = kc.get_control_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"]["status"] == "ok"
    states = [m["content"]["execution_state"] for m in iopub_for(kc, msg["header"]["msg_id"])]
    assert states == ["busy", "idle"]


def test_execute(kernel):
    km, kc = kernel
    drain_iopub(kc)
    code, expected = SAMPLES["hello"]
    msg_id = kc.execute(code)
    reply = shell_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    count = reply["content"]["execution_count"]
    assert count >= 1
    msgs = iopub_for(kc, msg_id)
    types = [m["msg_type"] for m in msgs]
    assert types[0] == "status" and msgs[0]["content"]["execution_state"] == "busy"
    assert types[1] == "execute_input"
    assert msgs[1]["content"] == {"code": code, "execution_count": count}
    text = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    assert text == expected
    sessions = {m["header"]["session"] for m in msgs} | {reply["header"]["session"]}
    assert len(sessions) == 1 and kc.session.session not in sessions
    ids = [m["header"]["msg_id"] for m in msgs] + [reply["header"]["msg_id"]]
    assert len(set(ids)) == len(ids)

    msg_id = kc.execute(code)
    assert shell_reply(kc, msg_id)["content"]["execution_count"] == count + 1
    msg_id = kc.execute(code, silent=True)
    assert shell_reply(kc, msg_id)["content"]["execution_count"] == count + 1
    assert [m["msg_type"] for m in iopub_for(kc, msg_id)] == ["status", "status"]


def test_stream_is_batched(kernel):
    km, kc = kernel
    drain_iopub(kc)
    started = time.monotonic()
    msg_id = kc.execute(SAMPLES["tokens"])
    shell_reply(kc, msg_id)
    elapsed = time.monotonic() - started
    streams = [m for m in iopub_for(kc, msg_id) if m["msg_type"] == "stream"]
    assert "".join(m["content"]["text"] for m in streams) == "x" * 400
    assert len(streams) <= elapsed / 0.05 + 2, (len(streams), elapsed)


def test_complete_and_is_complete(kernel):
    km, kc = kernel
    code, matches = SAMPLES["complete"]
    reply = shell_reply(kc, kc.complete(code, len(code)))
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["matches"] == matches
    assert reply["content"]["cursor_end"] == len(code)
    for code, status in (
        (SAMPLES["incomplete"], "incomplete"),
        (SAMPLES["complete_code"], "complete"),
        (SAMPLES["invalid"], "invalid"),
    ):
        reply = shell_reply(kc, kc.is_complete(code))
        assert reply["content"]["status"] == status, code
    assert shell_reply(kc, kc.is_complete(SAMPLES["incomplete"]))["content"]["indent"] == "    "


def test_history(kernel):
    km, kc = kernel
    code, _ = SAMPLES["hello"]
    marker = f"print('{uuid.uuid4().hex}')"
    shell_reply(kc, kc.execute(marker))
    reply = shell_reply(kc, kc.history(hist_access_type="tail", n=1, output=False, raw=True))
    assert reply["content"]["status"] == "ok"
    (session, line, source), = reply["content"]["history"]
    assert source == marker
    reply = shell_reply(
        kc, kc.history(hist_access_type="range", session=session, start=line, stop=line + 1, output=True, raw=True)
    )
    assert reply["content"]["history"] == [[session, line, [marker, None]]]
    reply = shell_reply(kc, kc.history(hist_access_type="search", pattern=marker.replace("(", "?"), unique=True, output=False, raw=True))
    assert [h[2] for h in reply["content"]["history"]] == [marker]


def test_comm_echo(kernel):
    km, kc = kernel
    comm_id = uuid.uuid4().hex
    open_msg = kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "notebook_predictor.echo", "data": {}})
    kc.shell_channel.send(open_msg)
    iopub_for(kc, open_msg["header"]["msg_id"])
    reply = shell_reply(kc, kc.comm_info(target_name="notebook_predictor.echo"))
    assert reply["content"]["comms"][comm_id] == {"target_name": "notebook_predictor.echo"}
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"ping": 1}})
    kc.shell_channel.send(msg)
    echoes = [m for m in iopub_for(kc, msg["header"]["msg_id"]) if m["msg_type"] == "comm_msg"]
    assert [m["content"] for m in echoes] == [{"comm_id": comm_id, "data": {"echo": {"ping": 1}}}]


def test_interrupt_during_long_stream(kernel):
    km, kc = kernel
    drain_iopub(kc)
    msg_id = kc.execute(SAMPLES["long_stream"])
    while True:  # wait until it is streaming
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            break
    started = time.monotonic()
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5, elapsed
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    # Still serving.
    assert shell_reply(kc, kc.execute(SAMPLES["hello"][0]))["content"]["status"] == "ok"


def test_interrupt_on_shell(kernel):
    km, kc = kernel
    msg_id = kc.execute(SAMPLES["long_stream"])
    time.sleep(0.3)
    started = time.monotonic()
    interrupt = kc.session.msg("interrupt_request", {})
    kc.shell_channel.send(interrupt)
    reply = shell_reply(kc, msg_id, timeout=5)
    assert time.monotonic() - started < 0.5
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert shell_reply(kc, interrupt["header"]["msg_id"])["content"]["status"] == "ok"


def _dealer(km, port: int) -> zmq.Socket:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if km.transport == "tcp":
        sock.connect(f"tcp://{km.ip}:{port}")
    else:
        sock.connect(f"ipc://{km.ip}-{port}")
    return sock


def test_bad_signature_is_dropped(kernel):
    km, kc = kernel
    sock = _dealer(km, km.shell_port)
    try:
        forger = Session(key=b"not-the-key")
        msg = forger.msg("kernel_info_request", {})
        forger.send(sock, msg)
        assert sock.poll(1000) == 0, "a badly signed message got a reply"
        # The same request with the right key is answered.
        good = Session(key=km.session.key)
        good.send(sock, good.msg("kernel_info_request", {}))
        assert sock.poll(TIMEOUT * 1000) != 0
        idents, reply = good.feed_identities(sock.recv_multipart())
        assert good.deserialize(reply)["msg_type"] == "kernel_info_reply"
    finally:
        sock.close()
    assert shell_reply(kc, kc.kernel_info())["content"]["status"] == "ok"


def test_malformed_messages_are_survived(kernel):
    km, kc = kernel
    session = Session(key=km.session.key)
    good = session.serialize(session.msg("kernel_info_request", {}))
    garbage = [
        [b"hello"],
        [b""],
        [b"<IDS|MSG>"],
        [b"<IDS|MSG>", b"sig"],
        [b"<IDS|MSG>", b"", b"{}", b"{}", b"{}"],
        [b"<IDS|MSG>", b"00", b"{", b"}", b"[", b"]"],
        good[:3],
        [good[0], b"deadbeef", *good[2:]],
        [good[0], good[1], b"\xff\xfe", *good[3:]],
        [b"x" * 70000],
        [os.urandom(64) for _ in range(12)],
    ]
    socks = [_dealer(km, km.shell_port), _dealer(km, km.control_port), _dealer(km, km.stdin_port)]
    try:
        for i in range(1000):
            socks[i % len(socks)].send_multipart(garbage[i % len(garbage)])
        time.sleep(0.5)
        for sock in socks:
            assert sock.poll(0) == 0, "garbage got a reply"
    finally:
        for sock in socks:
            sock.close()
    assert shell_reply(kc, kc.kernel_info())["content"]["status"] == "ok"
    assert kc.hb_channel.is_beating()
    assert shell_reply(kc, kc.execute(SAMPLES["hello"][0]))["content"]["status"] == "ok"


def test_vanished_client_does_not_break_replies(kernel):
    km, kc = kernel
    session = Session(key=km.session.key)
    for _ in range(5):
        sock = _dealer(km, km.shell_port)
        session.send(sock, session.msg("execute_request", {"code": "slow 5", "silent": False}))
        sock.close()
    assert shell_reply(kc, kc.kernel_info())["content"]["status"] == "ok"


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_restart_and_shutdown(transport, tmp_path):
    km, kc = start_kernel(transport, tmp_path)
    try:
        first = km.provisioner.process
        started = time.monotonic()
        km.restart_kernel(now=False)
        assert first.poll() == 0, "the old kernel did not exit cleanly"
        assert time.monotonic() - started < 4
        second = km.provisioner.process
        assert second.pid != first.pid
        kc.wait_for_ready(timeout=30)
        assert shell_reply(kc, kc.kernel_info())["content"]["status"] == "ok"

        reply_msg = kc.session.msg("shutdown_request", {"restart": False})
        kc.control_channel.send(reply_msg)
        reply = kc.get_control_msg(timeout=TIMEOUT)
        assert reply["content"] == {"status": "ok", "restart": False}
        started = time.monotonic()
        assert second.wait(timeout=3) == 0
        assert time.monotonic() - started < 1.5
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_shutdown_while_executing(tmp_path):
    km, kc = start_kernel("tcp", tmp_path)
    try:
        process = km.provisioner.process
        kc.execute(SAMPLES["long_stream"])
        time.sleep(0.3)
        started = time.monotonic()
        km.shutdown_kernel(now=False)
        assert process.poll() == 0
        assert time.monotonic() - started < 3
    finally:
        kc.stop_channels()
