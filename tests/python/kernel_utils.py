"""Helpers shared by the Python tests: installing kernelspecs with the binary, starting kernels
through jupyter_client, and waiting on replies and iopub messages with timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("NOTEBOOK_PREDICTOR_BIN", ROOT / "target" / "release" / "notebook-predictor"))
KERNEL_NAME = "notebook-predictor"
TIMEOUT = 30.0
ENV_VARS = [
    "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_PLATFORM_DIRS",
    "JUPYTER_PATH", "NOTEBOOK_PREDICTOR_HISTORY", "NOTEBOOK_PREDICTOR_MODEL",
]


@dataclass
class Env:
    base: Path
    data_dir: Path
    model: Path
    binary: Path
    history: Path


def is_model_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.model"))


def install(env: Env, name: str, model: Path, extra_argv: list[str] = ()) -> Path:
    """`notebook-predictor install --user --name NAME --model MODEL`, then appends extra_argv to
    the kernelspec's argv. Returns the kernelspec folder."""
    proc = subprocess.run(
        [str(env.binary), "install", "--user", "--name", name, "--model", str(model)],
        capture_output=True, text=True, env=os.environ.copy(),
    )
    assert proc.returncode == 0, f"install failed: {proc.stdout}\n{proc.stderr}"
    spec_dir = env.data_dir / "kernels" / name
    if extra_argv:
        spec = json.loads((spec_dir / "kernel.json").read_text())
        spec["argv"] += list(extra_argv)
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


def write_kernelspec(env: Env, name: str, argv: list[str]) -> Path:
    """A kernelspec written by hand (e.g. for a model path that does not exist)."""
    spec_dir = env.data_dir / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": argv, "display_name": name, "language": "python", "interrupt_mode": "message"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


# --- models derived from the fixture model ------------------------------------------------

def make_babbler(src: Path, dst: Path) -> Path:
    """A copy of `src` whose output head can never end an output: every cell streams stdout until
    --max-output-tokens (made by tests/fixtures/make_babbler_model.py)."""
    script = Path(__file__).resolve().parents[1] / "fixtures" / "make_babbler_model.py"
    subprocess.run([sys.executable, str(script), str(src), str(dst)], check=True)
    return dst


# --- kernels -------------------------------------------------------------------------------

def start(kernel_name: str = KERNEL_NAME, transport: str = "tcp", ipc_dir: Path | None = None,
          ready_timeout: float = 60):
    kwargs: dict[str, Any] = {"kernel_name": kernel_name, "transport": transport}
    if transport == "ipc":
        assert ipc_dir is not None
        kwargs["ip"] = str(ipc_dir / "k")
    km = KernelManager(**kwargs)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=ready_timeout)
    except Exception:
        stop(km, kc)
        raise
    return km, kc


def stop(km, kc) -> None:
    kc.stop_channels()
    if km.has_kernel:
        km.shutdown_kernel(now=False)


def pid(km) -> int:
    return km.provisioner.pid


def send(kc, channel: str, msg_type: str, content: dict) -> str:
    """Sends a request on 'shell' or 'control'; returns its msg_id."""
    msg = kc.session.msg(msg_type, content)
    getattr(kc, f"{channel}_channel").send(msg)
    return msg["header"]["msg_id"]


def reply(kc, msg_id: str, channel: str = "shell", timeout: float = TIMEOUT) -> dict:
    """The reply to msg_id on channel. Replies to other requests that arrive first are kept
    for later calls (e.g. an interrupt_reply that overtakes an execute_reply on shell)."""
    get = kc.get_shell_msg if channel == "shell" else kc.get_control_msg
    unclaimed = kc.__dict__.setdefault("_unclaimed_replies", {})
    if msg_id in unclaimed:
        return unclaimed.pop(msg_id)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {channel} reply to {msg_id} within {timeout} s")
        try:
            msg = get(timeout=left)
        except Empty:
            continue
        parent = msg["parent_header"].get("msg_id")
        if parent == msg_id:
            return msg
        unclaimed[parent] = msg


def iopub_until_idle(kc, msg_id: str, timeout: float = TIMEOUT) -> list[dict]:
    """iopub messages whose parent is msg_id, up to and including its idle status."""
    msgs: list[dict] = []
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


def drain_iopub(kc) -> None:
    while True:
        try:
            kc.get_iopub_msg(timeout=0.05)
        except Empty:
            return


@dataclass
class Executed:
    reply: dict
    iopub: list[dict]

    @property
    def content(self) -> dict:
        return self.reply["content"]

    @property
    def outputs(self) -> list[dict]:
        return [m for m in self.iopub
                if m["msg_type"] in ("stream", "execute_result", "display_data", "error")]

    def stream(self, name: str = "stdout") -> str:
        return "".join(m["content"]["text"] for m in self.outputs
                       if m["msg_type"] == "stream" and m["content"]["name"] == name)

    def types(self) -> list[str]:
        return [m["msg_type"] for m in self.iopub]


def execute(kc, code: str, timeout: float = TIMEOUT, **kwargs) -> Executed:
    msg_id = kc.execute(code, **kwargs)
    rep = reply(kc, msg_id, timeout=timeout)
    return Executed(rep, iopub_until_idle(kc, msg_id, timeout=timeout))


def request(kc, msg_type: str, content: dict, channel: str = "shell",
            timeout: float = TIMEOUT) -> tuple[dict, list[dict]]:
    """Sends any request; returns (reply, its iopub messages up to idle)."""
    msg_id = send(kc, channel, msg_type, content)
    rep = reply(kc, msg_id, channel=channel, timeout=timeout)
    return rep, iopub_until_idle(kc, msg_id, timeout=timeout)


def complete(kc, code: str, cursor_pos: int | None = None) -> dict:
    msg_id = kc.complete(code, cursor_pos)
    return reply(kc, msg_id)["content"]


def wait_exit(pid_: int, timeout: float) -> float | None:
    """Seconds until process pid_ exits, or None if it is still running after timeout."""
    import psutil
    start = time.monotonic()
    try:
        proc = psutil.Process(pid_)
        proc.wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return None
    return time.monotonic() - start
