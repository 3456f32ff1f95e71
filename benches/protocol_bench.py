#!/usr/bin/env python3
"""Protocol benchmark: ipykernel (the venv's python3 kernel) and notebook-predictor driven by the
same jupyter_client script in one run, with a table of ratios against the goals.

    .venv/bin/python benches/protocol_bench.py [--model DIR] [--trials N] [--bin PATH] [--json OUT]

Measured for each kernel (the same code path for both):
  start-to-ready   KernelManager.start_kernel() until wait_for_ready() returns (N starts)
  kernel_info      round trip on shell, request sent to reply received (10*N requests)
  RSS              resident memory of the kernel process (and children) after warm-up
  execute          execute_request to execute_reply (outputs come before the reply), N times:
                   ipykernel prints 64 numbers; notebook-predictor predicts exactly 64 output
                   tokens: it runs on a copy of the model whose output head cannot end an
                   output (same size and per-token cost; tests/python/kernel_utils.py
                   make_babbler), with --max-output-tokens 64, so the output is always cut at
                   64 tokens whatever the model would have predicted
  complete         complete_request to complete_reply, N times

The model (--model) defaults to $NOTEBOOK_PREDICTOR_MODEL, else the installed default model
(<user data dir>/notebook-predictor/models/default), else models/default in the source tree,
as the kernel itself resolves it. Everything runs in a temporary JUPYTER_DATA_DIR; history goes
to a temporary file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[1]
NP_KERNEL = "notebook-predictor-bench"
NP_EXEC_KERNEL = "notebook-predictor-bench-64"
PY_KERNEL = "python3-bench"
OUTPUT_TOKENS = 64

# (setup cells, execute cell, complete code) per kernel. The setup makes `np` known to both.
WORKLOADS = {
    PY_KERNEL: (["import numpy as np"], "for i in range(64):\n    print(i)", "x = np.ara"),
    NP_KERNEL: (["import numpy as np"], "for i in range(64):\n    print(i)", "x = np.ara"),
}


def default_model() -> Path:
    env = os.environ.get("NOTEBOOK_PREDICTOR_MODEL")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    data = Path.home() / "Library" / "Application Support" if sys.platform == "darwin" else Path(xdg)
    installed = data / "notebook-predictor" / "models" / "default"
    if (installed / "config.json").is_file():
        return installed
    return ROOT / "models" / "default"


def pctl(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return proc.memory_info().rss + sum(
        c.memory_info().rss for c in proc.children(recursive=True))


def start(kernel: str) -> tuple[KernelManager, object, float]:
    t0 = time.perf_counter()
    km = KernelManager(kernel_name=kernel)
    # Kernel logs (ipykernel's TCP warning, tracing) would interleave with the table.
    km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc, time.perf_counter() - t0


def stop(km, kc) -> None:
    kc.stop_channels()
    km.shutdown_kernel(now=False)


def shell_reply(kc, msg_id: str, timeout: float = 120) -> dict:
    while True:
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def wait_idle(kc, msg_id: str, timeout: float = 120) -> list[dict]:
    msgs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs


def measure(kernel: str, trials: int, execute_kernel: str | None = None) -> dict:
    """The one measuring script, run unchanged for every kernel. The execute samples run on
    execute_kernel when given (a second kernel started the same way)."""
    setup, cell, complete_code = WORKLOADS[kernel]
    starts = []
    for _ in range(trials):
        km, kc, took = start(kernel)
        starts.append(took)
        stop(km, kc)

    km, kc, _ = start(kernel)
    try:
        for code in setup:
            msg_id = kc.execute(code)
            assert shell_reply(kc, msg_id)["content"]["status"] == "ok", code
            wait_idle(kc, msg_id)
        out_chars = 0
        for _ in range(3):  # warm-up
            msg_id = kc.execute(cell)
            shell_reply(kc, msg_id)
            msgs = wait_idle(kc, msg_id)
            out_chars = sum(len(m["content"].get("text", "")) for m in msgs if m["msg_type"] == "stream")
            shell_reply(kc, kc.complete(complete_code))
            shell_reply(kc, kc.kernel_info())
        memory = rss(km.provisioner.pid)

        info = []
        for _ in range(10 * trials):
            t0 = time.perf_counter()
            shell_reply(kc, kc.kernel_info())
            info.append(time.perf_counter() - t0)

        ekm, ekc = (km, kc)
        if execute_kernel:
            ekm, ekc, _ = start(execute_kernel)
        try:
            for _ in range(3):  # warm-up
                msg_id = ekc.execute(cell)
                shell_reply(ekc, msg_id)
                msgs = wait_idle(ekc, msg_id)
                out_chars = sum(len(m["content"].get("text", ""))
                                for m in msgs if m["msg_type"] == "stream")
            execute = []
            for _ in range(trials):
                t0 = time.perf_counter()
                msg_id = ekc.execute(cell)
                rep = shell_reply(ekc, msg_id)
                execute.append(time.perf_counter() - t0)
                assert rep["content"]["status"] == "ok", rep["content"]
                wait_idle(ekc, msg_id)
        finally:
            if execute_kernel:
                stop(ekm, ekc)

        complete = []
        match = ""
        for _ in range(trials):
            t0 = time.perf_counter()
            rep = shell_reply(kc, kc.complete(complete_code))
            complete.append(time.perf_counter() - t0)
            match = (rep["content"]["matches"] or [""])[0]
        banner = shell_reply(kc, kc.kernel_info())["content"].get("banner", "")
    finally:
        stop(km, kc)
    return {
        "start_median_s": statistics.median(starts),
        "kernel_info_median_s": statistics.median(info),
        "rss_bytes": memory,
        "execute_p50_s": pctl(execute, 0.5),
        "execute_p95_s": pctl(execute, 0.95),
        "complete_p50_s": pctl(complete, 0.5),
        "complete_p95_s": pctl(complete, 0.95),
        "execute_output_chars": out_chars,
        "first_completion": match,
        "banner": banner.splitlines()[-1] if banner else "",
    }


def install(binary: Path, model: Path, data_dir: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "python"))
    from kernel_utils import make_babbler

    babbler = make_babbler(model, data_dir.parent / "babbler-model")
    for name, folder in ((NP_KERNEL, model), (NP_EXEC_KERNEL, babbler)):
        subprocess.run([str(binary), "install", "--user", "--name", name, "--model", str(folder),
                        "--no-labextension"], check=True, capture_output=True)
        spec_path = data_dir / "kernels" / name / "kernel.json"
        spec = json.loads(spec_path.read_text())
        spec["argv"] += ["--max-output-tokens", str(OUTPUT_TOKENS)]
        spec_path.write_text(json.dumps(spec, indent=1))
    py = data_dir / "kernels" / PY_KERNEL
    py.mkdir(parents=True)
    (py / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel, bench)", "language": "python",
    }))


def ms(x: float) -> str:
    return f"{1000 * x:.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="model folder for notebook-predictor")
    ap.add_argument("--trials", type=int, default=20,
                    help="kernel starts, execute and complete samples (kernel_info: 10x)")
    ap.add_argument("--bin", type=Path, default=Path(os.environ.get(
        "NOTEBOOK_PREDICTOR_BIN", ROOT / "target" / "release" / "notebook-predictor")))
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args()
    model = (args.model or default_model()).resolve()
    if not (model / "config.json").is_file():
        sys.exit(f"no model at {model}: pass --model DIR (e.g. a fixture model from "
                 "tests/fixtures/train-fixture-model.sh DIR)")
    if not args.bin.is_file():
        sys.exit(f"no binary at {args.bin}: run cargo build --release")

    with tempfile.TemporaryDirectory(prefix="np-bench-") as tmp:
        tmp = Path(tmp)
        os.environ.update(JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_RUNTIME_DIR=str(tmp / "rt"),
                          JUPYTER_CONFIG_DIR=str(tmp / "cfg"), JUPYTER_PLATFORM_DIRS="1",
                          NOTEBOOK_PREDICTOR_HISTORY=str(tmp / "history.jsonl"))
        os.environ.pop("JUPYTER_PATH", None)
        install(args.bin, model, tmp / "data")
        results = {}
        for kernel in (PY_KERNEL, NP_KERNEL):
            print(f"measuring {kernel} ({args.trials} trials)...", file=sys.stderr, flush=True)
            results[kernel] = measure(kernel, args.trials,
                                      NP_EXEC_KERNEL if kernel == NP_KERNEL else None)

    py, np_ = results[PY_KERNEL], results[NP_KERNEL]
    rows = [
        ("kernel_info round trip (median)", "kernel_info_median_s", ms, 0.5, "<= 0.5x ipykernel"),
        ("start-to-ready (median)", "start_median_s", ms, 1.0, "<= ipykernel"),
        ("resident memory after warm-up", "rss_bytes", lambda b: f"{b / 2**20:.1f} MiB", None, ""),
        ("execute, 64-token output p50", "execute_p50_s", ms, None, ""),
        ("execute, 64-token output p95", "execute_p95_s", ms, None, ""),
        ("complete p50", "complete_p50_s", ms, None, ""),
        ("complete p95", "complete_p95_s", ms, None, "<= 300 ms"),
    ]
    head = f"| {'metric':<34} | {'ipykernel':>12} | {'notebook-predictor':>18} | {'ratio':>7} | {'goal':<18} | met |"
    print(f"\nmodel: {model}\nnotebook-predictor: {np_['banner']}")
    print(f"trials: {args.trials}; cores: {os.cpu_count()}; load average: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for label, key, fmt, limit, goal in rows:
        ratio = np_[key] / py[key] if py[key] else float("inf")
        if key == "complete_p95_s":
            met = "yes" if np_[key] <= 0.3 else "NO"
        elif limit is not None:
            met = "yes" if ratio <= limit else "NO"
        else:
            met = ""
        print(f"| {label:<34} | {fmt(py[key]):>12} | {fmt(np_[key]):>18} | {ratio:>6.2f}x | {goal:<18} | {met:<3} |")
    print(f"\nexecute cells: ipykernel printed {py['execute_output_chars']} chars; notebook-predictor "
          f"streamed {np_['execute_output_chars']} chars (output cut at {OUTPUT_TOKENS} tokens)")
    print(f"first completion of {WORKLOADS[NP_KERNEL][2]!r}: ipykernel {py['first_completion']!r}, "
          f"notebook-predictor {np_['first_completion']!r}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "trials": args.trials,
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
