"""Session set-up for the Python tests: a trained fixture model, the `notebook-predictor`
kernelspec installed with the binary's own `install` command into a temporary
JUPYTER_DATA_DIR, and a temporary history file.

Environment:
  NOTEBOOK_PREDICTOR_FIXTURE_MODEL  a trained fixture model folder (tests/run.sh sets it);
                                    otherwise one is trained with
                                    tests/fixtures/train-fixture-model.sh (cached under
                                    target/pytest-fixture-model/, keyed on the training inputs;
                                    NOTEBOOK_PREDICTOR_FIXTURE_CACHE=0 trains into a temp dir)
  NOTEBOOK_PREDICTOR_BIN            the kernel binary (default: target/release/notebook-predictor)

Nothing here skips: a missing binary, model or tool fails the tests with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import kernel_utils as ku

ROOT = ku.ROOT
TRAIN_SCRIPT = ROOT / "tests" / "fixtures" / "train-fixture-model.sh"
# Inputs whose change invalidates a cached fixture model.
CACHE_KEY_INPUTS = [
    TRAIN_SCRIPT,
    ROOT / "tests" / "fixtures" / "notebooks",
    ROOT / "src" / "checkpoint.rs",
    ROOT / "src" / "model.rs",
    ROOT / "src" / "sequence.rs",
    ROOT / "src" / "tokenizer",
]


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def _key() -> str:
    h = hashlib.sha256()
    for item in CACHE_KEY_INPUTS:
        files = sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item]
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _train(out: Path, binary: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [str(TRAIN_SCRIPT), str(out), str(binary)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not ku.is_model_dir(out):
        _fail(
            f"training the fixture model with {TRAIN_SCRIPT} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    print(f"\ntrained the fixture model in {time.monotonic() - started:.0f} s: {out}")


@pytest.fixture(scope="session")
def binary() -> Path:
    path = ku.BIN
    if not path.is_file() or not os.access(path, os.X_OK):
        _fail(
            f"the kernel binary {path} is missing: run `cargo build --release` "
            "or set NOTEBOOK_PREDICTOR_BIN"
        )
    return path


@pytest.fixture(scope="session")
def fixture_model(binary: Path, tmp_path_factory) -> Path:
    given = os.environ.get("NOTEBOOK_PREDICTOR_FIXTURE_MODEL")
    if given:
        path = Path(given).resolve()
        if not ku.is_model_dir(path):
            _fail(
                f"NOTEBOOK_PREDICTOR_FIXTURE_MODEL={given} is not a trained model folder "
                "(config.json, model.safetensors, tokenizer.model); train one with "
                f"{TRAIN_SCRIPT} DIR"
            )
        return path
    if not TRAIN_SCRIPT.is_file():
        _fail(f"{TRAIN_SCRIPT} is missing; set NOTEBOOK_PREDICTOR_FIXTURE_MODEL instead")
    if os.environ.get("NOTEBOOK_PREDICTOR_FIXTURE_CACHE", "1") == "0":
        out = tmp_path_factory.mktemp("fixture-model") / "model"
        _train(out, binary)
        return out
    cached = ROOT / "target" / "pytest-fixture-model" / _key()
    if ku.is_model_dir(cached):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="training-", dir=cached.parent))
    _train(tmp / "model", binary)
    shutil.rmtree(cached, ignore_errors=True)
    (tmp / "model").rename(cached)
    shutil.rmtree(tmp, ignore_errors=True)
    return cached


@pytest.fixture(scope="session", autouse=True)
def jupyter_env(binary: Path, fixture_model: Path, tmp_path_factory) -> ku.Env:
    """Isolates Jupyter paths and history, and installs the `notebook-predictor` kernelspec
    (fixture model) into the temporary data directory."""
    base = tmp_path_factory.mktemp("jupyter")
    data_dir, runtime_dir = base / "data", base / "runtime"
    runtime_dir.mkdir(parents=True)
    saved = {k: os.environ.get(k) for k in ku.ENV_VARS}
    os.environ.update(
        JUPYTER_DATA_DIR=str(data_dir),
        JUPYTER_RUNTIME_DIR=str(runtime_dir),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_PLATFORM_DIRS="1",
        NOTEBOOK_PREDICTOR_HISTORY=str(base / "history.jsonl"),
    )
    os.environ.pop("NOTEBOOK_PREDICTOR_MODEL", None)
    os.environ.pop("JUPYTER_PATH", None)
    env = ku.Env(base=base, data_dir=data_dir, model=fixture_model, binary=binary,
                 history=base / "history.jsonl")
    ku.install(env, ku.KERNEL_NAME, fixture_model)
    spec = json.loads((data_dir / "kernels" / ku.KERNEL_NAME / "kernel.json").read_text())
    if spec["argv"][0] != str(binary.resolve()):
        _fail(f"installed kernel.json runs {spec['argv'][0]}, not {binary}")
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
