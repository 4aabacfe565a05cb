"""The HTTP server (movingline/inference/server.py), as a real process on a free loopback port,
asked by a real HTTP client (http.client): every route, every bad input followed by a good
request, the limits, start-up failures and the shutdown. The quick tests serve a hand-built
ONNX graph of the export's shape; the full set serves the exported tiny model under load."""

import csv
import http.client
import io
import json
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from movingline.data.dataset import DatasetReader
from movingline.data.labels import LABEL_NAMES
from tests.badfiles import flip_byte_in_chunk, truncate, write_foreign_hdf5
from tests.conftest import ROOT, run_stage, stage_env, tiny_dataset, wait_until

SIZE = 8
INFER = "/v2/models/movingline/infer"
# The quick server's limits: small enough to reach in a test, large enough for the good requests.
LIMITS = ["--max-request-bytes", "20000", "--max-request-sequences", "4", "--max-upload-bytes", "200000",
          "--max-upload-sequences", "50", "--batch-size", "3"]


def first_column_model(path: Path, size: int) -> Path:
    """An ONNX graph of the export's shape, (batch, time, size, size, 1) uint8 in and (batch, 1)
    float out, that needs no training: 0.75 ("right") when the first frame marks column 0, else
    0.25 -- a line moving right starts there, one moving left in the last column."""
    from onnx import TensorProto, helper

    def constant(name: str, values: list, kind=TensorProto.INT64):
        return helper.make_tensor(name, kind, [len(values)], values)

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["frames"], ["floats"], to=TensorProto.FLOAT),
            helper.make_node("Slice", ["floats", "starts", "ends", "axes"], ["first_column"]),
            helper.make_node("ReduceSum", ["first_column", "all_axes"], ["marked"], keepdims=1),
            helper.make_node("Reshape", ["marked", "batch_by_one"], ["column_zero"]),
            helper.make_node("Mul", ["column_zero", "half"], ["scaled"]),
            helper.make_node("Add", ["scaled", "quarter"], ["right"]),
        ],
        "first_column",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", "time", size, size, 1])],
        [helper.make_tensor_value_info("right", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            constant("starts", [0, 0]), constant("ends", [1, 1]), constant("axes", [1, 3]),
            constant("all_axes", [1, 2, 3, 4]), constant("batch_by_one", [-1, 1]),
            constant("half", [0.5], TensorProto.FLOAT), constant("quarter", [0.25], TensorProto.FLOAT),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class Server:
    """`python -m movingline.inference.server` on a free loopback port (--port 0), its log in a file."""

    def __init__(self, model: Path, folder: Path, *args: str) -> None:
        self.log_path = folder / f"server-{time.monotonic_ns()}.log"
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "movingline.inference.server", "--model", str(model), "--port", "0", *args],
            cwd=ROOT, env=stage_env(), stdout=self.log_file, stderr=subprocess.STDOUT,
        )
        wait_until(lambda: "serving " in self.log(), "the server's first line", 30)
        found = re.search(r"at http://([\d.]+):(\d+) ", self.log())
        self.host, self.port = found.group(1), int(found.group(2))
        wait_until(lambda: self.request("GET", "/v2/health/ready").status == 200, "the ready route", 30)

    def log(self) -> str:
        return self.log_path.read_text()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def infer(self, frames: np.ndarray, **fields) -> Answer:
        return self.request("POST", INFER, json.dumps(infer_body(frames, **fields)).encode())

    def stop(self, signum: int = signal.SIGTERM, seconds: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(seconds)
        finally:
            self.process.kill()
            self.log_file.close()


def infer_body(frames: np.ndarray, **fields) -> dict:
    tensor = {"name": "frames", "datatype": "UINT8", "shape": list(frames.shape), "data": frames.reshape(-1).tolist()}
    return {"inputs": [tensor | fields]}


def read_all(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with DatasetReader(path) as reader:
        return reader.read_frames(0, len(reader)), reader.read_labels()


def predicted_table(model: Path, data: Path, folder: Path) -> Path:
    """The predictions CSV of `python -m stages.predict --model MODEL --input DATA`."""
    output = folder / f"{data.stem}-{model.stem}.csv"
    run_stage("predict", ROOT, "--model", str(model), "--input", str(data), "--output", str(output))
    return output


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve")
    return {
        "folder": folder,
        "model": first_column_model(folder / "first_column.onnx", SIZE),
        "data": tiny_dataset(folder / "test.h5", 10, seed=5),
        "other_size": tiny_dataset(folder / "size6.h5", 3, seed=6, size=6),
        "too_many": tiny_dataset(folder / "sixty.h5", 60, seed=7),
    }


@pytest.fixture(scope="module")
def server(files):
    served = Server(files["model"], files["folder"], *LIMITS)
    yield served
    assert served.stop() == 0, served.log()


@pytest.fixture(scope="module")
def sequences(files) -> tuple[np.ndarray, np.ndarray]:
    return read_all(files["data"])


def test_health_server_and_model_metadata_and_docs(server):
    assert server.request("GET", "/v2/health/live").json() == {"live": True}
    assert server.request("GET", "/v2/health/ready").json() == {"ready": True}
    assert server.request("GET", "/v2/models/movingline/ready").json() == {"name": "movingline", "ready": True}
    assert server.request("GET", "/v2").json()["extensions"] == []
    metadata = server.request("GET", "/v2/models/movingline").json()
    assert metadata["inputs"] == [{"name": "frames", "datatype": "UINT8", "shape": [-1, -1, SIZE, SIZE, 1]}]
    assert metadata["outputs"] == [{"name": "right", "datatype": "FP32", "shape": [-1, 1]},
                                   {"name": "label", "datatype": "BYTES", "shape": [-1]}]
    docs = server.request("GET", "/docs")
    assert docs.status == 200 and b"swagger" in docs.body.lower()
    routes = server.request("GET", "/openapi.json").json()["paths"]
    assert {"/v2/health/live", "/v2/health/ready", "/v2/models/{model_name}", "/v2/models/{model_name}/infer",
            "/predictions"} <= routes.keys()


def test_infer_answers_the_probability_of_right_and_the_label(server, sequences):
    frames, labels = sequences
    answer = server.infer(frames[:4], parameters={})
    assert answer.status == 200, answer.body
    right, label = answer.json()["outputs"]
    assert right["name"] == "right" and right["datatype"] == "FP32" and right["shape"] == [4, 1]
    assert right["data"] == [0.75 if expected else 0.25 for expected in labels[:4]]
    assert label == {"name": "label", "datatype": "BYTES", "shape": [4], "data": [LABEL_NAMES[int(e)] for e in labels[:4]]}
    # Nested data, a request id, and one output asked for by name.
    nested = {"inputs": [{"name": "frames", "datatype": "UINT8", "shape": [1, SIZE, SIZE, SIZE, 1], "data": frames[:1].tolist()}],
              "id": "42", "outputs": [{"name": "label"}]}
    answer = server.request("POST", INFER, json.dumps(nested).encode()).json()
    assert answer["id"] == "42" and [output["name"] for output in answer["outputs"]] == ["label"]
    assert answer["outputs"][0]["data"] == [LABEL_NAMES[int(labels[0])]]


def test_upload_answers_the_predict_stages_table(server, files):
    expected = predicted_table(files["model"], files["data"], files["folder"]).read_bytes()
    body = files["data"].read_bytes()
    answer = server.request("POST", "/predictions", body)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.body == expected
    as_json = server.request("POST", "/predictions", body, {"Accept": "application/json"}).json()["predictions"]
    rows = list(csv.DictReader(io.StringIO(expected.decode())))
    assert as_json == [{"index": int(r["index"]), "probability_right": float(r["probability_right"]),
                        "predicted": int(r["predicted"]), "expected": int(r["expected"])} for r in rows]


ONE = SIZE * SIZE * SIZE  # the values of one sequence


def frames_tensor(shape=(1, SIZE, SIZE, SIZE, 1), **changes) -> bytes:
    tensor = {"name": "frames", "datatype": "UINT8", "shape": list(shape), "data": [0] * ONE * shape[0]} | changes
    return json.dumps({"inputs": [tensor]}).encode()


# (what is wrong, method, path, body, status, words the error must hold)
BAD_REQUESTS = [
    ("malformed JSON", "POST", INFER, b'{"inputs": [', 400, "not JSON (Expecting value: line 1 column 13"),
    ("not binary JSON", "POST", INFER, b"\xff\xfe\x00garbage", 400, "not JSON"),
    ("no inputs", "POST", INFER, b'{"input": []}', 400, "a list 'inputs'"),
    ("missing input", "POST", INFER, b'{"inputs": []}', 400, "missing input 'frames'"),
    ("extra input", "POST", INFER, json.dumps({"inputs": [json.loads(frames_tensor())["inputs"][0], {"name": "extra"}]}).encode(),
     400, "unexpected input 'extra'"),
    ("input named otherwise", "POST", INFER, frames_tensor(name="pixels"), 400, "unexpected input 'pixels'"),
    ("wrong dtype", "POST", INFER, frames_tensor(datatype="FP32"), 400, "datatype 'FP32', expected 'UINT8'"),
    ("wrong rank", "POST", INFER, frames_tensor(shape=(1, SIZE, SIZE, SIZE)), 400, "has 4 dimensions, expected 5"),
    ("other frame size", "POST", INFER, frames_tensor(shape=(1, 6, 6, 6, 1)), 400, "frames of 6x6x1; this model takes 8x8x1"),
    ("shape and data disagree", "POST", INFER, frames_tensor(data=[0] * (ONE - 1)), 400, f"holds {ONE} values, 'data' holds {ONE - 1}"),
    ("no frames", "POST", INFER, frames_tensor(shape=(1, 0, SIZE, SIZE, 1)), 400, "holds no frames"),
    ("bad shape", "POST", INFER, frames_tensor(shape=[1, "8", 8, 8, 1]), 400, "'shape' must be a list of whole numbers"),
    ("floats", "POST", INFER, frames_tensor(data=[0.5] * ONE), 400, "holds non-whole numbers, expected UINT8"),
    ("strings", "POST", INFER, frames_tensor(data=["0"] * ONE), 400, "holds strings"),
    ("pixel out of range", "POST", INFER, frames_tensor(data=[0] * (ONE - 1) + [7]), 400, "pixel value 7, expected only 0 and 1"),
    ("ragged data", "POST", INFER, frames_tensor(data=[[0, 0], [0]]), 400, "ragged"),
    ("binary data", "POST", INFER, frames_tensor(data=None), 400, "'data' must be a list"),
    ("unknown output", "POST", INFER, json.dumps(json.loads(frames_tensor()) | {"outputs": [{"name": "x"}]}).encode(),
     400, "unknown output 'x'"),
    ("unknown model (infer)", "POST", "/v2/models/other/infer", frames_tensor(), 404, "unknown model 'other'; this server serves 'movingline'"),
    ("unknown model (metadata)", "GET", "/v2/models/other", None, 404, "unknown model 'other'"),
    ("unknown route", "GET", "/v1/models", None, 404, "Not Found: GET /v1/models"),
    ("wrong method", "GET", INFER, None, 405, "Method Not Allowed"),
    ("not HDF5 upload", "POST", "/predictions", b"index,probability\n", 400, "the uploaded file: not an HDF5 file"),
    ("empty upload", "POST", "/predictions", b"", 400, "the uploaded file: not an HDF5 file"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_gets_a_json_error_naming_it_and_the_next_is_answered(server, sequences, method, path, body, status, words):
    answer = server.request(method, path, body)
    assert answer.status == status and answer.headers["content-type"] == "application/json", answer
    assert words in answer.json()["error"] and "Traceback" not in answer.json()["error"]
    assert server.infer(sequences[0][:1]).status == 200


def test_damaged_or_foreign_uploads_get_400_naming_the_problem(server, files, tmp_path):
    whole = files["data"].read_bytes()
    truncated, damaged, foreign = (tmp_path / name for name in ("truncated.h5", "damaged.h5", "foreign.h5"))
    for path in (truncated, damaged):
        path.write_bytes(whole)
    truncate(truncated)
    flip_byte_in_chunk(damaged, sample=7)
    write_foreign_hdf5(foreign)
    for path, words in (
        (truncated, "the uploaded file: truncated HDF5 file"),
        (damaged, "the uploaded file: sample 7 is corrupt: its data fails the checksum"),
        (foreign, "the uploaded file: not a movingline-sequences dataset (has no 'format' attribute"),
        (files["other_size"], "the uploaded file holds frames of 6x6; this model takes 8x8"),
    ):
        answer = server.request("POST", "/predictions", path.read_bytes())
        assert answer.status == 400 and words in answer.json()["error"], answer
        assert server.request("POST", "/predictions", whole).status == 200
    answer = server.request("POST", "/predictions", whole, {"Accept": "image/png"})
    assert answer.status == 406 and "text/csv or application/json" in answer.json()["error"]


def post_chunks_until_answered(server: Server, path: str, chunk: bytes, most: int) -> tuple[int, str, int]:
    """POSTs up to ``most`` copies of ``chunk`` with chunked transfer-encoding, stopping once the
    server answers: (status, its error, bytes sent)."""
    with socket.create_connection((server.host, server.port), timeout=30) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        sent = 0
        for _ in range(most):
            if select.select([connection], [], [], 0)[0]:
                break
            try:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break  # the server closed the connection after its answer
            sent += len(chunk)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())["error"], sent


def test_over_a_limit_is_413_before_the_body_is_read(server, files, sequences):
    # A body announced at 10 GB is refused on its headers alone: the client never sends it.
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.putrequest("POST", INFER)
    connection.putheader("Content-Length", str(10 * 2**30))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and response.getheader("connection") == "close"
    assert json.loads(response.read()) == {"error": f"the body's {10 * 2**30} bytes is over the limit of 20000 bytes "
                                                    "(the server's --max-request-bytes)"}
    connection.close()
    # Without a length (chunked), reading stops at the limit: the answer comes while the client still sends.
    status, error, sent = post_chunks_until_answered(server, "/predictions", chunk=b"x" * 1000, most=10_000)
    assert status == 413 and error == "the body is over the limit of 200000 bytes (the server's --max-upload-bytes)"
    assert 200_000 < sent < 10_000 * 1000
    frames = sequences[0]
    answer = server.infer(frames[:5])
    assert answer.status == 413 and answer.json()["error"] == (
        "input 'frames': 5 sequences is over the limit of 4 sequences (the server's --max-request-sequences)")
    answer = server.request("POST", "/predictions", files["too_many"].read_bytes())
    assert answer.status == 413 and "60 sequences is over the limit of 50" in answer.json()["error"]
    assert server.infer(frames[:4]).status == 200


def test_the_server_never_loads_tensorflow_and_listens_on_loopback(server, sequences):
    assert server.infer(sequences[0][:2]).status == 200
    assert server.request("POST", "/predictions", b"x").status == 400
    assert f"at http://127.0.0.1:{server.port} " in server.log() and "TensorFlow not loaded" in server.log()
    if sys.platform == "linux":
        # What the process has loaded, seen from outside: no TensorFlow library is mapped in.
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "onnxruntime" in maps and "tensorflow" not in maps


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_exits_0_after_saying_what_it_answered(files, signum):
    served = Server(files["model"], files["folder"])
    assert served.request("GET", "/v2/health/live").status == 200
    assert served.stop(signum) == 0
    assert served.log().strip().splitlines()[-1] == "stopped: answered 2 of the 2 requests accepted"


def test_a_missing_or_damaged_model_exits_2_with_one_error_line(tmp_path):
    damaged = tmp_path / "model.onnx"
    damaged.write_bytes(b"\x08\x07garbage")
    for model, words in ((tmp_path / "missing.onnx", "model file not found"), (damaged, "not an ONNX model")):
        result = subprocess.run([sys.executable, "-m", "movingline.inference.server", "--model", str(model), "--port", "0"],
                                cwd=ROOT, env=stage_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {model}: {words}")


def test_the_listening_socket_names_tcp_so_that_asyncio_turns_nagle_off():
    # asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; on a socket made
    # with protocol 0 every answer waited for the client's delayed ACK.
    from movingline.inference.server import listen

    with listen("127.0.0.1", 0) as listener:
        assert listener.proto == socket.IPPROTO_TCP


def test_a_port_in_use_exits_2_naming_it(server, files):
    result = subprocess.run([sys.executable, "-m", "movingline.inference.server", "--model", str(files["model"]),
                             "--port", str(server.port)], cwd=ROOT, env=stage_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: --host 127.0.0.1 --port {server.port}: cannot listen there")


# --- The full set: the exported model, under load --------------------------------------------


CLIENTS, REQUESTS = 8, 25


def request_sequences(client: int, request: int, n_sequences: int) -> list[int]:
    """Which sequences of the test set a client's request sends: 1 to 3, varying."""
    start = (client * REQUESTS + request) % n_sequences
    return [(start + offset) % n_sequences for offset in range(1 + (client + request) % 3)]


def run_clients(served: Server, frames: np.ndarray, answers: dict, on_answer=None) -> list[threading.Thread]:
    """CLIENTS threads, each sending REQUESTS infer requests in turn; each answer (or the error that
    ended the client) is kept in ``answers`` by (client, request). A refused or dropped connection
    (the server shutting down) ends that client."""
    def client(number: int) -> None:
        for request in range(REQUESTS):
            indices = request_sequences(number, request, len(frames))
            try:
                answers[number, request] = (indices, served.infer(frames[indices]))
            except (ConnectionError, http.client.HTTPException) as error:
                answers[number, request] = (indices, error)
                return
            if on_answer:
                on_answer()

    threads = [threading.Thread(target=client, args=(number,), daemon=True) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


def expected_rows(table: Path) -> list[dict]:
    return list(csv.DictReader(table.open()))


def assert_answer_is_the_tables(indices: list[int], answer: Answer, rows: list[dict]) -> None:
    assert answer.status == 200, answer
    right, label = answer.json()["outputs"]
    for index, probability, name in zip(indices, right["data"], label["data"], strict=True):
        # The table rounds to 6 decimals; the label is the same decision.
        assert abs(probability - float(rows[index]["probability_right"])) <= 1e-6
        assert name == LABEL_NAMES[int(rows[index]["predicted"])]


@pytest.fixture(scope="module")
def exported_server(exported, built_project, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    served = Server(exported, folder)
    yield served, expected_rows(predicted_table(exported, built_project / "data/test.h5", folder))
    assert served.stop() == 0, served.log()


@pytest.mark.slow
@pytest.mark.full
def test_concurrent_clients_get_the_predict_stages_answers(exported_server, built_project):
    served, rows = exported_server
    frames, _ = read_all(built_project / "data/test.h5")
    answers = {}
    for thread in run_clients(served, frames, answers):
        thread.join(120)
    assert len(answers) == CLIENTS * REQUESTS
    for indices, answer in answers.values():
        assert_answer_is_the_tables(indices, answer, rows)
    upload = served.request("POST", "/predictions", (built_project / "data/test.h5").read_bytes())
    assert list(csv.DictReader(io.StringIO(upload.body.decode()))) == rows


@pytest.mark.slow
@pytest.mark.full
def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(exported, built_project, tmp_path):
    served = Server(exported, tmp_path)
    rows = expected_rows(predicted_table(exported, built_project / "data/test.h5", tmp_path))
    frames, _ = read_all(built_project / "data/test.h5")
    answers, answered = {}, threading.Semaphore(0)
    threads = run_clients(served, frames, answers, on_answer=answered.release)
    for _ in range(20):
        assert answered.acquire(timeout=60), "the clients were not answered"
    served.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(120)
    assert served.stop(seconds=60) == 0, served.log()
    replies = [(indices, answer) for indices, answer in answers.values() if isinstance(answer, Answer)]
    # The signal came during the load: some clients were cut off, each by a refused or dropped
    # connection, never by an error answer.
    assert 20 <= len(replies) < CLIENTS * REQUESTS
    for indices, answer in replies:
        assert_answer_is_the_tables(indices, answer, rows)
    # Every request the server accepted (counted as it came in) was answered, and the clients got those answers.
    assert f"stopped: answered {len(replies) + 1} of the {len(replies) + 1} requests accepted" in served.log()
