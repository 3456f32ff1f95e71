"""The notebook-predictor kernel (real binary, fixture model) through jupyter_client, over tcp
and ipc: kernel_info, execute with exact predicted outputs, execution counts, complete,
is_complete, inspect and the `notebook_predictor` comm.

The fixture model (tests/fixtures/make_notebooks.py) learned each of these cells' outputs
exactly; decoding is greedy, so the predictions are deterministic. Predictions depend on the
cells run before in the same kernel, so the tests of this module run in file order on one
kernel per transport.
"""

from __future__ import annotations

import uuid

import pytest

import kernel_utils as ku

HELLO = 'print("hello, world")'
LOOP = "for i in range(3):\n    print(i)"


@pytest.fixture(params=["tcp", "ipc"], scope="module")
def kernel(request, tmp_path_factory):
    km, kc = ku.start(transport=request.param, ipc_dir=tmp_path_factory.mktemp("ipc"))
    yield km, kc
    ku.stop(km, kc)


@pytest.fixture
def kc(kernel):
    km, kc = kernel
    ku.drain_iopub(kc)
    return kc


@pytest.fixture
def fresh(kernel, tmp_path):
    """A new kernel on the same transport, for predictions of the next cell: those depend on
    the whole session, so they are checked right after the notebook's usual first cell."""
    km, kc = ku.start(transport=kernel[0].transport, ipc_dir=tmp_path)
    assert ku.execute(kc, "import numpy as np").outputs == []
    yield kc
    ku.stop(km, kc)


def test_transport_is_the_one_asked_for(kernel):
    km, _ = kernel
    info = km.get_connection_info()
    assert info["transport"] == km.transport
    if km.transport == "ipc":
        assert not info["ip"].startswith("127.")


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_kernel_info(kc, jupyter_env, channel):
    rep, iopub = ku.request(kc, "kernel_info_request", {}, channel=channel)
    c = rep["content"]
    assert rep["msg_type"] == "kernel_info_reply"
    assert c["status"] == "ok"
    assert tuple(int(x) for x in c["protocol_version"].split(".")[:2]) >= (5, 3)
    assert c["implementation"] == "notebook-predictor"
    assert c["implementation_version"]
    li = c["language_info"]
    assert li["name"] == "python"
    assert li["file_extension"] == ".py"
    for field in ("version", "mimetype", "pygments_lexer", "codemirror_mode", "nbconvert_exporter"):
        assert li[field], field
    assert isinstance(c["help_links"], list)
    # The banner names the model the kernel loaded.
    assert str(jupyter_env.model) in c["banner"], c["banner"]
    for field in ("msg_id", "session", "username", "date", "version", "msg_type"):
        assert rep["header"][field], field
    assert [m["content"]["execution_state"] for m in iopub] == ["busy", "idle"]


def test_execute_hello_world(kc):
    r = ku.execute(kc, HELLO)
    assert r.content["status"] == "ok"
    assert r.stream("stdout") == "hello, world\n"
    assert r.stream("stderr") == ""
    # Streamed text is flushed every 50 ms, so it may come in more than one message.
    assert {m["msg_type"] for m in r.outputs} == {"stream"}
    types = r.types()
    assert types[0] == "status" and types[1] == "execute_input" and types[-1] == "status"
    assert r.iopub[1]["content"]["code"] == HELLO
    assert r.iopub[1]["content"]["execution_count"] == r.content["execution_count"]


def test_execute_result_carries_prediction_metadata(kc):
    r = ku.execute(kc, "6*7")
    assert r.content["status"] == "ok"
    [out] = r.outputs
    assert out["msg_type"] == "execute_result"
    assert out["content"]["data"]["text/plain"] == "42"
    assert out["content"]["execution_count"] == r.content["execution_count"]
    meta = out["content"]["metadata"]["notebook_predictor"]
    assert meta["predicted"] is True
    assert 0 < meta["confidence"] <= 1


def test_predicted_error_is_an_output_and_the_reply_is_ok(kc):
    r = ku.execute(kc, "1/0")
    assert r.content["status"] == "ok"
    [out] = r.outputs
    assert out["msg_type"] == "error"
    assert out["content"]["ename"] == "ZeroDivisionError"
    assert out["content"]["evalue"] == "division by zero"
    assert any("ZeroDivisionError" in line for line in out["content"]["traceback"])


def test_import_has_no_output(kc):
    r = ku.execute(kc, "import os")
    assert r.content["status"] == "ok"
    assert r.outputs == []
    assert [m["msg_type"] for m in r.iopub] == ["status", "execute_input", "status"]


def test_stderr(kc):
    r = ku.execute(kc, 'import sys; print("oops", file=sys.stderr)')
    assert r.content["status"] == "ok"
    assert r.stream("stderr") == "oops\n"
    assert r.stream("stdout") == ""


def test_multiline_stdout(kc):
    r = ku.execute(kc, LOOP)
    assert r.content["status"] == "ok"
    assert r.stream("stdout") == "0\n1\n2\n"


def test_execution_count_and_silent(kc):
    first = ku.execute(kc, "6*7").content["execution_count"]
    assert ku.execute(kc, "import os").content["execution_count"] == first + 1
    silent = ku.execute(kc, HELLO, silent=True)
    assert silent.content["status"] == "ok"
    # silent: no execute_input, no outputs, only busy/idle; and the count does not move.
    assert [m["msg_type"] for m in silent.iopub] == ["status", "status"]
    assert silent.content["execution_count"] == first + 1
    unstored = ku.execute(kc, "import os", store_history=False)
    assert unstored.content["execution_count"] == first + 1
    assert ku.execute(kc, "import os").content["execution_count"] == first + 2


def test_complete_word(kc):
    c = ku.complete(kc, "gree")
    assert c["status"] == "ok"
    assert c["matches"][0] == 'greet("Ada")'
    assert (c["cursor_start"], c["cursor_end"]) == (0, 4)
    types = c["metadata"]["_jupyter_types_experimental"]
    assert types[0]["text"] == 'greet("Ada")'
    assert (types[0]["start"], types[0]["end"]) == (0, 4)


def test_complete_rest_of_cell(kc):
    code = "def greet(na"
    c = ku.complete(kc, code)
    assert c["matches"][0] == 'name):\n    return "Hello, " + name'
    # The first line alone is offered next, for taking just the line being typed.
    assert c["matches"][1] == "name):"
    assert (c["cursor_start"], c["cursor_end"]) == (len("def greet("), len(code))


def test_complete_uses_only_text_before_cursor(kc):
    c = ku.complete(kc, "gree  # trailing", 4)
    assert c["matches"][0] == 'greet("Ada")'
    assert (c["cursor_start"], c["cursor_end"]) == (0, 4)


def test_complete_empty_cell_is_the_next_cell(fresh):
    c = ku.complete(fresh, "", 0)
    assert c["matches"][0] == "x = np.arange(5)"
    assert (c["cursor_start"], c["cursor_end"]) == (0, 0)


@pytest.mark.parametrize("before", ["é = 1\n", "s = '🙂'\n"])
def test_complete_offsets_count_code_points(kc, before):
    code = before + "gree"
    c = ku.complete(kc, code)
    # After a first line the fixture model completes the `def greet` cell instead.
    assert c["matches"][0].startswith("greet(")
    # Code points, not UTF-8 bytes nor UTF-16 units.
    assert (c["cursor_start"], c["cursor_end"]) == (len(before), len(code))
    assert len(code.encode()) != len(code)


@pytest.mark.parametrize("code,status,indent", [
    ("x = 1", "complete", None),
    (HELLO, "complete", None),
    ("for i in range(3):\n    print(i)\n", "complete", None),
    ("for i in range(3):", "incomplete", "    "),
    ("def greet(name):", "incomplete", "    "),
    ("print(1,", "incomplete", ""),
    ('s = """abc', "incomplete", ""),
    ("x = 1 + \\", "incomplete", ""),
    ("print(1))", "invalid", None),
    ("x = (1, 2]", "invalid", None),
])
def test_is_complete(kc, code, status, indent):
    rep, _ = ku.request(kc, "is_complete_request", {"code": code})
    assert rep["content"]["status"] == status
    if indent is not None:
        assert rep["content"]["indent"] == indent


def test_inspect_predicts_without_changing_the_session(kc):
    count = ku.execute(kc, "import os").content["execution_count"]
    rep, _ = ku.request(kc, "inspect_request", {"code": "6*7", "cursor_pos": 2, "detail_level": 0})
    c = rep["content"]
    assert c["status"] == "ok" and c["found"] is True
    assert "42" in c["data"]["text/plain"]
    assert ku.execute(kc, "import os").content["execution_count"] == count + 1
    # The session still predicts as before.
    assert ku.execute(kc, "6*7").outputs[0]["content"]["data"]["text/plain"] == "42"


def test_comm_round_trip(fresh):
    kc = fresh
    comm_id = uuid.uuid4().hex
    ku.send(kc, "shell", "comm_open",
            {"comm_id": comm_id, "target_name": "notebook_predictor", "data": {}})
    rep, _ = ku.request(kc, "comm_info_request", {"target_name": "notebook_predictor"})
    assert rep["content"]["comms"][comm_id] == {"target_name": "notebook_predictor"}

    answers = {}
    for key, data in {
        "next": {"code": "", "cursor": 0},
        "rest": {"code": "x = np.ar", "cursor": 9},
    }.items():
        request_id = uuid.uuid4().hex
        msg_id = ku.send(kc, "shell", "comm_msg",
                         {"comm_id": comm_id, "data": {"request_id": request_id, **data}})
        msgs = ku.iopub_until_idle(kc, msg_id)
        [answer] = [m for m in msgs if m["msg_type"] == "comm_msg"]
        assert answer["content"]["comm_id"] == comm_id
        answers[key] = answer["content"]["data"]
        assert answers[key]["request_id"] == request_id
        assert 0 < answers[key]["confidence"] <= 1
    assert answers["next"]["kind"] == "next_cell"
    assert answers["next"]["text"] == "x = np.arange(5)"
    assert answers["rest"]["kind"] == "rest"
    assert "np.ar" + answers["rest"]["text"] == "np.arange(5)"
    # The same as the completer offers at the same point.
    assert ku.complete(kc, "x = np.ar")["matches"][0] == "np.arange(5)"

    ku.send(kc, "shell", "comm_close", {"comm_id": comm_id, "data": {}})
    rep, _ = ku.request(kc, "comm_info_request", {})
    assert comm_id not in rep["content"]["comms"]


def test_comm_to_unknown_target_is_closed(kc):
    comm_id = uuid.uuid4().hex
    msg_id = ku.send(kc, "shell", "comm_open",
                     {"comm_id": comm_id, "target_name": "no_such_target", "data": {}})
    msgs = ku.iopub_until_idle(kc, msg_id)
    assert [m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_close"] == [comm_id]
