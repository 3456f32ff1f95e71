"""The standard jupyter_kernel_test suite against the real notebook-predictor kernel, with the
fixture model (see conftest.py, which installs the `notebook-predictor` kernelspec into a
temporary JUPYTER_DATA_DIR before this class starts its kernel).

Every attribute is set that the kernel honestly meets: the fixture model was trained on
notebooks holding these cells (tests/fixtures/make_notebooks.py), and greedy decoding
reproduces their outputs exactly.

Left unset, so the suite skips them (pytest lists the reasons with -rs):
- code_generate_error: the suite's test_error wants execute_reply status "error". This kernel
  reports a *predicted* exception (e.g. `1/0`) as an `error` output with reply status "ok":
  nothing failed to run, the error is the prediction. Only an interrupt or an unloadable model
  gives status "error". test_protocol.py checks the `1/0` behaviour instead.
- code_page_something: the kernel sends no pager payloads.
- code_clear_output: the kernel never predicts clear_output messages.
"""

from __future__ import annotations

import jupyter_kernel_test

import kernel_utils as ku


class NotebookPredictorTests(jupyter_kernel_test.KernelTests):
    kernel_name = ku.KERNEL_NAME
    language_name = "python"
    file_extension = ".py"

    code_hello_world = 'print("hello, world")'
    code_stderr = 'import sys; print("oops", file=sys.stderr)'

    # The suite compares the whole set of matches; these prefixes have one continuation.
    completion_samples = [
        {"text": "gree", "matches": {'greet("Ada")'}},
        {"text": "len(wo", "matches": {"words)"}},
    ]
    complete_code_samples = ["x = 1", 'print("hello, world")', "for i in range(3):\n    print(i)\n"]
    incomplete_code_samples = ["for i in range(3):", "def greet(name):", "print(1,", 's = """abc']
    invalid_code_samples = ["print(1))", "x = (1, 2]"]

    code_execute_result = [
        {"code": "6*7", "result": "42"},
        {"code": "sum(range(10))", "result": "45"},
        {"code": 'greet("Ada")', "result": "'Hello, Ada'"},
    ]
    code_display_data = [
        # Predicted figures carry text/plain only (image bytes are never predicted).
        {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])", "mime": "text/plain"},
    ]
    code_history_pattern = "6?7"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "6*7"
