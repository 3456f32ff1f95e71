"""Kernel lifecycle and robustness, through jupyter_client and raw pyzmq against the real
binary: history across processes, interrupt during a long generation, shutdown and restart,
messages with bad signatures or malformed frames, the heartbeat, and a kernel whose model
cannot be loaded."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time

import pytest
import zmq
from jupyter_client.session import Session

import kernel_utils as ku

HELLO = 'print("hello, world")'


@pytest.fixture
def kernel():
    km, kc = ku.start()
    yield km, kc
    ku.stop(km, kc)


def history(kc, **content) -> list:
    base = {"output": False, "raw": True}
    rep, _ = ku.request(kc, "history_request", {**base, **content})
    assert rep["content"]["status"] == "ok", rep["content"]
    return rep["content"]["history"]


def test_history_across_a_restart(tmp_path, monkeypatch):
    # A history file of its own, so other tests' executions do not show up.
    monkeypatch.setenv("NOTEBOOK_PREDICTOR_HISTORY", str(tmp_path / "history.jsonl"))
    cells = ["6*7", HELLO, "import os"]
    km, kc = ku.start()
    try:
        for code in cells:
            ku.execute(kc, code)
        tail = history(kc, hist_access_type="tail", n=3)
        assert [h[2] for h in tail] == cells
        session = tail[0][0]
        assert session == 1  # the first session in a new history file
        assert [h[1] for h in tail] == [1, 2, 3]
        with_output = history(kc, hist_access_type="tail", n=3, output=True)
        assert with_output[0][2] == ["6*7", "42"]
    finally:
        ku.stop(km, kc)

    km, kc = ku.start()  # a new process, same history file
    try:
        assert ku.execute(kc, "sum(range(10))").content["execution_count"] == 1
        tail = history(kc, hist_access_type="tail", n=4)
        assert [h[2] for h in tail] == cells + ["sum(range(10))"]
        assert tail[-1][:2] == [session + 1, 1]
        assert [h[0] for h in tail[:3]] == [session] * 3

        earlier = history(kc, hist_access_type="range", session=session, start=2, stop=4)
        assert earlier == [[session, 2, HELLO], [session, 3, "import os"]]
        previous = history(kc, hist_access_type="range", session=-1, start=1, stop=0)
        assert [h[2] for h in previous] == cells
        current = history(kc, hist_access_type="range", session=0, start=1, stop=0)
        assert current == [[session + 1, 1, "sum(range(10))"]]

        found = history(kc, hist_access_type="search", pattern="print(*", unique=False)
        assert [h[2] for h in found] == [HELLO]
        assert found[0][:2] == [session, 2]
        ku.execute(kc, "6*7")
        both = history(kc, hist_access_type="search", pattern="6?7")
        assert [(h[0], h[2]) for h in both] == [(session, "6*7"), (session + 1, "6*7")]
        assert len(history(kc, hist_access_type="search", pattern="6?7", unique=True)) == 1
        assert len(history(kc, hist_access_type="search", pattern="*", n=2)) == 2
    finally:
        ku.stop(km, kc)


@pytest.fixture(scope="module")
def babbler_kernelspec(jupyter_env):
    """A kernel whose model never ends an output, allowed 100000 tokens per cell."""
    model = ku.make_babbler(jupyter_env.model, jupyter_env.base / "babbler-model")
    ku.install(jupyter_env, "notebook-predictor-babbler", model,
               extra_argv=["--max-output-tokens", "100000"])
    return "notebook-predictor-babbler"


@pytest.mark.parametrize("channel", ["control", "shell"])
def test_interrupt_during_a_long_generation(babbler_kernelspec, channel):
    km, kc = ku.start(babbler_kernelspec)
    try:
        for attempt in range(2):  # the kernel keeps working after an interrupt
            msg_id = kc.execute(HELLO)
            deadline = time.monotonic() + ku.TIMEOUT
            while True:
                assert time.monotonic() < deadline, "no stream output from the babbler"
                msg = kc.get_iopub_msg(timeout=ku.TIMEOUT)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                    break
            sent = time.monotonic()
            interrupt_id = ku.send(kc, channel, "interrupt_request", {})
            rep = ku.reply(kc, msg_id, timeout=10)
            elapsed = time.monotonic() - sent
            assert rep["content"]["status"] == "error"
            assert rep["content"]["ename"] == "KeyboardInterrupt"
            assert elapsed < 0.5, f"execute_reply came {elapsed:.3f} s after the interrupt"
            assert ku.reply(kc, interrupt_id, channel=channel)["content"]["status"] == "ok"
            msgs = ku.iopub_until_idle(kc, msg_id)
            errors = [m for m in msgs if m["msg_type"] == "error"]
            assert [e["content"]["ename"] for e in errors] == ["KeyboardInterrupt"]
        assert ku.request(kc, "kernel_info_request", {})[0]["content"]["status"] == "ok"
    finally:
        ku.stop(km, kc)


def test_sigint_interrupts_instead_of_killing(babbler_kernelspec):
    import signal
    km, kc = ku.start(babbler_kernelspec)
    try:
        msg_id = kc.execute(HELLO)
        while True:
            msg = kc.get_iopub_msg(timeout=ku.TIMEOUT)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                break
        os.kill(ku.pid(km), signal.SIGINT)
        rep = ku.reply(kc, msg_id, timeout=5)
        assert rep["content"]["ename"] == "KeyboardInterrupt"
        assert km.is_alive()
    finally:
        ku.stop(km, kc)


def test_shutdown_exits_promptly(kernel):
    km, kc = kernel
    process = km.provisioner.process
    rep, _ = ku.request(kc, "shutdown_request", {"restart": False}, channel="control")
    assert rep["content"] == {"status": "ok", "restart": False}
    started = time.monotonic()
    assert process.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.5


def test_shutdown_during_a_long_generation(babbler_kernelspec):
    km, kc = ku.start(babbler_kernelspec)
    try:
        kc.execute(HELLO)
        while kc.get_iopub_msg(timeout=ku.TIMEOUT)["msg_type"] != "stream":
            pass
        process = km.provisioner.process
        started = time.monotonic()
        ku.request(kc, "shutdown_request", {"restart": False}, channel="control")
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 2.5
    finally:
        ku.stop(km, kc)


def test_restart(kernel):
    km, kc = kernel
    ku.execute(kc, "6*7")
    assert ku.execute(kc, "6*7").content["execution_count"] == 2
    old = ku.pid(km)
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    assert ku.pid(km) != old
    assert ku.wait_exit(old, 5) is not None
    r = ku.execute(kc, "6*7")
    assert r.content["execution_count"] == 1
    assert r.outputs[0]["content"]["data"]["text/plain"] == "42"


def _dealer(km, channel: str = "shell") -> zmq.Socket:
    info = km.get_connection_info()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    port = info[f"{channel}_port"]
    if info["transport"] == "tcp":
        sock.connect(f"tcp://{info['ip']}:{port}")
    else:
        sock.connect(f"ipc://{info['ip']}-{port}")
    return sock


def test_bad_signature_gets_no_reply(kernel):
    km, kc = kernel
    key = km.session.key
    sock = _dealer(km)
    try:
        wrong = Session(key=b"not-the-key", signature_scheme="hmac-sha256")
        unsigned = Session(key=b"")
        for session in (wrong, unsigned):
            session.send(sock, "kernel_info_request", {})
        assert sock.poll(1000) == 0, "the kernel answered a badly signed message"
        right = Session(key=key, signature_scheme="hmac-sha256")
        msg = right.send(sock, "kernel_info_request", {})
        assert sock.poll(10_000), "no reply to a correctly signed message"
        _, frames = right.feed_identities(sock.recv_multipart())
        answer = right.deserialize(frames)
        assert answer["parent_header"]["msg_id"] == msg["header"]["msg_id"]
        assert answer["msg_type"] == "kernel_info_reply"
    finally:
        sock.close()
    assert ku.request(kc, "kernel_info_request", {})[0]["content"]["status"] == "ok"


def _garbage(rng: random.Random, session: Session) -> list[bytes]:
    good = session.serialize(session.msg("kernel_info_request", {}))
    kinds = [
        lambda: [],
        lambda: [b""],
        lambda: [rng.randbytes(rng.randint(0, 64))],
        lambda: [b"<IDS|MSG>"],
        lambda: [b"<IDS|MSG>", b"", b"{", b"}", b"[", b"]"],
        lambda: [b"<IDS|MSG>", good[1], b"not json", good[3], good[4], good[5]],
        lambda: [b"<IDS|MSG>"] + [rng.randbytes(rng.randint(0, 200)) for _ in range(5)],
        lambda: good[:rng.randint(1, 5)],
        lambda: [b"<IDS|MSG>", b"00" * 32, good[2], good[3], good[4], good[5]],
        lambda: [b"<IDS|MSG>", good[1], b"\xff\xfe\x00", good[3], good[4], good[5]],
        lambda: [b"<IDS|MSG>", b"", b"{}", b"{}", b"{}", b"{}"],
        lambda: [b"<IDS|MSG>", b"", b'{"msg_type": 5}', b"[]", b"null", b"3"],
        lambda: [b"x" * 100_000, b"<IDS|MSG>"],
    ]
    frames = rng.choice(kinds)()
    return [f for f in frames] or [b""]


def test_malformed_messages_do_not_break_the_kernel(kernel):
    km, kc = kernel
    rng = random.Random(1234)
    for channel in ("shell", "control"):
        sock = _dealer(km, channel)
        try:
            session = Session(key=km.session.key, signature_scheme="hmac-sha256")
            for _ in range(1000 if channel == "shell" else 200):
                sock.send_multipart(_garbage(rng, session))
        finally:
            sock.close()
    assert ku.request(kc, "kernel_info_request", {}, timeout=15)[0]["content"]["status"] == "ok"
    assert ku.request(kc, "kernel_info_request", {}, channel="control")[0]["content"]["status"] == "ok"
    assert ku.execute(kc, HELLO).stream() == "hello, world\n"
    assert km.is_alive()


def test_heartbeat_echoes(kernel):
    km, _ = kernel
    info = km.get_connection_info()
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    sock.connect(f"tcp://{info['ip']}:{info['hb_port']}")
    try:
        for payload in (b"ping", b"", b"\x00" * 1000):
            sock.send(payload)
            assert sock.poll(5000), "no heartbeat echo"
            assert sock.recv() == payload
    finally:
        sock.close()


@pytest.mark.parametrize("broken,reason", [
    ("missing", "missing config.json"),
    ("corrupt-weights", "model.safetensors is not the one config.json was written with"),
    ("truncated-weights", "cannot load weights"),
    ("corrupt-config", "config.json is not valid"),
])
def test_unloadable_model_answers_with_the_reason(jupyter_env, broken, reason):
    model = jupyter_env.base / f"broken-{broken}"
    shutil.rmtree(model, ignore_errors=True)
    if broken != "missing":
        shutil.copytree(jupyter_env.model, model)
    if broken == "corrupt-weights":
        (model / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    elif broken == "truncated-weights":
        # Half the weights, with a config that vouches for them: only loading finds out.
        weights = (model / "model.safetensors").read_bytes()
        weights = weights[: len(weights) // 2]
        (model / "model.safetensors").write_bytes(weights)
        config = json.loads((model / "config.json").read_text())
        config["weights_sha256"] = hashlib.sha256(weights).hexdigest()
        (model / "config.json").write_text(json.dumps(config))
    elif broken == "corrupt-config":
        (model / "config.json").write_text("{not json")
    name = f"notebook-predictor-{broken}"
    ku.write_kernelspec(jupyter_env, name, [
        str(jupyter_env.binary), "kernel", "-f", "{connection_file}", "--model", str(model)])
    km, kc = ku.start(name)
    first_pid = ku.pid(km)
    try:
        rep, _ = ku.request(kc, "kernel_info_request", {})
        assert rep["content"]["status"] == "ok"
        assert str(model) in rep["content"]["banner"]
        for _ in range(3):
            r = ku.execute(kc, HELLO)
            [err] = r.outputs
            assert err["msg_type"] == "error"
            assert str(model) in err["content"]["evalue"], err["content"]
            assert reason in err["content"]["evalue"], err["content"]
            assert r.content["status"] == "error"
        c = ku.complete(kc, "gree")
        assert c["status"] == "ok" and c["matches"] == []
        # No crash loop: the process that answered kernel_info is still the one running.
        assert km.provisioner.process.poll() is None
        assert ku.pid(km) == first_pid
    finally:
        ku.stop(km, kc)
