"""Real Jupyter tools run notebooks on the notebook-predictor kernel (fixture model):
`jupyter nbconvert --to notebook --execute` and papermill; and the binary's own `predict` and
`generate` commands write notebooks that nbformat validates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import kernel_utils as ku

BIN_DIR = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN_DIR / name
    assert path.is_file(), f"{name} is missing from the test venv ({path}); pip install -r tests/requirements.txt"
    return str(path)


def fixture_notebook(path: Path, with_error: bool) -> tuple[Path, list]:
    cells = [
        ("import numpy as np", None),
        ("x = np.arange(5)", None),
        ("print(x)", ("stream", "[0 1 2 3 4]\n")),
        ('print("hello, world")', ("stream", "hello, world\n")),
        ("6*7", ("execute_result", "42")),
        ('import sys; print("oops", file=sys.stderr)', ("stream", "oops\n")),
        ("for i in range(3):\n    print(i)", ("stream", "0\n1\n2\n")),
    ]
    if with_error:
        cells.append(("1/0", ("error", "ZeroDivisionError")))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": ku.KERNEL_NAME, "display_name": "Notebook Predictor",
                                 "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# Fixture notebook"))
    nb.cells += [nbformat.v4.new_code_cell(code) for code, _ in cells]
    nbformat.write(nb, path)
    return path, [expected for _, expected in cells]


def check_outputs(nb, expected) -> None:
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == len(expected)
    for cell, want in zip(code, expected):
        if want is None:
            assert cell.outputs == [], (cell.source, cell.outputs)
            continue
        kind, text = want
        if kind == "stream":
            # Text streamed while it is generated may come in several stream messages (the
            # kernel flushes every 50 ms), which nbclient keeps as separate outputs.
            assert {o.output_type for o in cell.outputs} == {"stream"}, (cell.source, cell.outputs)
            assert len({o.name for o in cell.outputs}) == 1
            assert "".join(o.text for o in cell.outputs) == text
            continue
        [out] = cell.outputs
        assert out.output_type == kind, (cell.source, out)
        if kind == "execute_result":
            assert out.data["text/plain"] == text
            assert out.metadata["notebook_predictor"]["predicted"] is True
            assert out.execution_count == cell.execution_count
        else:
            assert out.ename == text


def run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_nbconvert_execute(tmp_path):
    src, expected = fixture_notebook(tmp_path / "in.ipynb", with_error=True)
    run([tool("jupyter"), "nbconvert", "--to", "notebook", "--execute", str(src),
         "--output", "out.ipynb", "--output-dir", str(tmp_path),
         "--ExecutePreprocessor.timeout=60"])
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    nbformat.validate(nb)
    check_outputs(nb, expected)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
    assert nb.metadata["language_info"]["name"] == "python"


def test_papermill(tmp_path):
    # papermill stops at an error output, so this notebook has none.
    src, expected = fixture_notebook(tmp_path / "in.ipynb", with_error=False)
    out = tmp_path / "out.ipynb"
    run([tool("papermill"), str(src), str(out), "-k", ku.KERNEL_NAME, "--execution-timeout", "60",
         "--no-progress-bar"])
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    check_outputs(nb, expected)
    assert nb.metadata["papermill"]["exception"] is None


@pytest.mark.parametrize("source", ["fixture", "train"])
def test_predict_writes_a_valid_notebook(tmp_path, jupyter_env, source):
    if source == "fixture":
        src, expected = fixture_notebook(tmp_path / "in.ipynb", with_error=True)
    else:
        src = ku.ROOT / "tests" / "fixtures" / "notebooks" / "valid" / "nb1000.ipynb"
        expected = None
    out = tmp_path / "predicted.ipynb"
    run([str(jupyter_env.binary), "predict", str(src), "-o", str(out), "-m", str(jupyter_env.model),
         "--cpu"])
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    if expected is not None:
        check_outputs(nb, expected)
    else:
        original = nbformat.read(src, as_version=4)
        assert [c.source for c in nb.cells] == [c.source for c in original.cells]


def test_generate_writes_a_valid_notebook(tmp_path, jupyter_env):
    out = tmp_path / "generated.ipynb"
    run([str(jupyter_env.binary), "generate", "-o", str(out), "-m", str(jupyter_env.model),
         "--cpu", "--cells", "6", "--seed", "3"])
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    assert sum(c.cell_type == "code" for c in nb.cells) >= 1


def test_installed_kernelspec(jupyter_env):
    """`notebook-predictor install --user --model DIR` (run by conftest.py) wrote a kernelspec
    jupyter_client finds, with message-mode interrupts, logos and the JupyterLab extension."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(ku.KERNEL_NAME)
    assert spec.language == "python"
    assert spec.interrupt_mode == "message"
    assert spec.argv[:4] == [str(jupyter_env.binary.resolve()), "kernel", "-f", "{connection_file}"]
    assert spec.argv[4:] == ["--model", str(jupyter_env.model)]
    spec_dir = Path(spec.resource_dir)
    for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
        assert (spec_dir / logo).is_file(), logo
    assert (jupyter_env.data_dir / "labextensions" / "notebook-predictor" / "package.json").is_file()
