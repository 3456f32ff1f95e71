"""The standard jupyter_kernel_test suite against the notebook-predictor kernel.

The kernelspec is installed by test_protocol_mock.setup_module's logic (shared below). The
samples match the mock interpreter (src/kernel/mock.rs); adapt them for a real model.
"""

from __future__ import annotations

import unittest

import jupyter_kernel_test

import test_protocol_mock as setup


def setUpModule() -> None:
    setup.setup_module()


class NotebookPredictorTests(jupyter_kernel_test.KernelTests):
    kernel_name = setup.KERNEL_NAME
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "stderr oops"
    completion_samples = [{"text": "pri", "matches": {"print"}}]
    complete_code_samples = ["print(1)", "x = 1"]
    incomplete_code_samples = ["for i in range(3):", "print(1,"]
    invalid_code_samples = ["print(1))"]
    code_generate_error = "fail"
    code_execute_result = [{"code": "6*7", "result": "42"}, {"code": "2+3", "result": "5"}]
    code_display_data = [{"code": "display hi", "mime": "text/html"}]
    code_history_pattern = "6?7"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "print"


if __name__ == "__main__":
    unittest.main()
