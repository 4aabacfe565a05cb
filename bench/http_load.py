"""Requests per second and latency of the HTTP server, against onnxruntime in this process on the same sequences.

    python -m bench.http_load --model models/model.onnx --data data/test.h5
    python -m bench.http_load --clients 4 --requests 200

Starts `python -m movingline.inference.server` on a free loopback port. For each size (1 and
32 sequences per request by default), --clients threads send --requests v2 infer requests in
all (JSON tensors, encoded before the clock starts; one keep-alive connection per client),
then as many threads give the same batches of the same sequences to the model's
onnxruntime session in this process: the baseline, the model without HTTP, JSON or the
server. Then the whole --data file is uploaded --uploads times to POST /predictions, against
the predict stage's path in this process (prediction.predict_batches over the file's
batches: HDF5 reading included on both sides). A request's latency runs from sending it to having read its answer. Prints a
Markdown table with the CPU, the commit, the date, and the server's peak memory; the
clients run on the same machine as the server, and share its cores. Nothing is asserted:
the figures depend on the machine.
"""

import argparse
import datetime
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.machine import commit
from bench.process import ROOT, child_environment
from movingline.data.dataset import DatasetReader
from movingline.environment import describe_cpu
from movingline.inference.prediction import PREDICT_BATCH_SIZE, predict_batches
from movingline.inference.onnx_runtime import OnnxModel, load_onnx_model

log = logging.getLogger(__name__)

INFER = "/v2/models/movingline/infer"


def request_batches(frames: np.ndarray, n_requests: int, per_request: int) -> list[np.ndarray]:
    """The sequences of each request: consecutive runs of ``per_request``, wrapping around the set."""
    indices = np.arange(n_requests * per_request) % len(frames)
    return [frames[indices[i * per_request : (i + 1) * per_request]] for i in range(n_requests)]


def infer_body(frames: np.ndarray) -> bytes:
    tensor = {"name": "frames", "datatype": "UINT8", "shape": list(frames.shape), "data": frames.reshape(-1).tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def run_load(calls: list[Callable[[], None]], clients: int, setup: Callable[[], object] | None = None) -> tuple[float, list[float]]:
    """Runs ``calls`` from ``clients`` threads, each taking the next call in turn: (wall seconds, latencies)."""
    latencies, lock, next_call = [], threading.Lock(), iter(calls)

    def client() -> None:
        state = setup() if setup else None
        while True:
            with lock:
                call = next(next_call, None)
            if call is None:
                return
            start = time.perf_counter()
            if setup:
                call(state)
            else:
                call()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies


def post(body: bytes) -> Callable[[http.client.HTTPConnection], None]:
    def call(connection: http.client.HTTPConnection) -> None:
        connection.request("POST", INFER, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"the server answered {response.status}: {answer[:300]!r}")
        json.loads(answer)

    return call


def start_server(model: Path, folder: Path, max_sequences: int) -> tuple[subprocess.Popen, int]:
    """The server on a free loopback port, with limits that take the largest request (1 MiB of JSON per sequence)."""
    log_path = folder / "server.log"
    command = [sys.executable, "-m", "movingline.inference.server", "--model", str(model), "--port", "0",
               "--max-request-sequences", str(max_sequences), "--max-request-bytes", str(max_sequences * 2**20)]
    with open(log_path, "w", encoding="utf-8") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=child_environment(), stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (found := re.search(r"at http://[\d.]+:(\d+) ", log_path.read_text(encoding="utf-8"))):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start:\n{log_path.read_text(encoding='utf-8')[-2000:]}")
        time.sleep(0.05)
    return process, int(found.group(1))


def stop_server(process: subprocess.Popen) -> int:
    """SIGTERM, then the server's peak resident memory in bytes (os.wait4's accounting of that child)."""
    process.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the server exited {os.waitstatus_to_exitcode(status)} after SIGTERM")
    # Linux reports ru_maxrss in kilobytes.
    return usage.ru_maxrss * 1024


def row(route: str, per_request: int, wall: float, latencies: list[float]) -> str:
    p50, p99 = np.percentile(np.array(latencies) * 1e3, [50, 99])
    rate = len(latencies) / wall
    return f"| {per_request} | {route} | {rate:.1f} | {rate * per_request:.0f} | {p50:.1f} | {p99:.1f} |"


def measure_infer(model: OnnxModel, connect: Callable, batches: list[np.ndarray], clients: int) -> list[str]:
    """The infer route's row and the in-process baseline's, for requests of these batches."""
    bodies = [infer_body(batch) for batch in batches]
    log.info("%d requests of %d sequences (%.1f MB of JSON each)", len(batches), len(batches[0]), len(bodies[0]) / 1e6)
    # One warm-up request per client, on its own connection, before the clock.
    run_load([post(body) for body in bodies[:clients]], clients, setup=connect)
    wall, latencies = run_load([post(body) for body in bodies], clients, setup=connect)
    served = row("HTTP server (JSON tensors)", len(batches[0]), wall, latencies)
    model.predict_on_batch(batches[0])
    wall, latencies = run_load([lambda batch=batch: model.predict_on_batch(batch) for batch in batches], clients)
    return [served, row("onnxruntime in-process", len(batches[0]), wall, latencies)]


def measure_upload(model: OnnxModel, connect: Callable, data: Path, uploads: int) -> list[str]:
    """The upload route's row, and that of the predict stage's path over the same file in this process."""
    body = data.read_bytes()
    with DatasetReader(data, require_labels=False) as reader:
        n_sequences = len(reader)
    log.info("%d uploads of %s (%d sequences)", uploads, data, n_sequences)

    def send_file(connection: http.client.HTTPConnection) -> None:
        connection.request("POST", "/predictions", body)
        response = connection.getresponse()
        if response.status != 200 or len(response.read().splitlines()) != n_sequences + 1:
            raise RuntimeError(f"the upload was answered {response.status}")

    def predict_file() -> None:
        with DatasetReader(data, require_labels=False) as reader:
            predict_batches(model, reader.iter_batches(PREDICT_BATCH_SIZE), n_shown=0)

    wall, latencies = run_load([send_file] * uploads, 1, setup=connect)
    served = row(f"HTTP upload of {data.name} (CSV back)", n_sequences, wall, latencies)
    wall, latencies = run_load([predict_file] * uploads, 1)
    return [served, row("predict_batches in-process", n_sequences, wall, latencies)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.onnx"), help="exported model (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=Path("data/test.h5"), help="sequences to send (default: %(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 32], help="sequences per request (default: 1 32)")
    parser.add_argument("--requests", type=int, default=100, help="requests per size and route (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=1, help="clients sending at once (default: %(default)s)")
    parser.add_argument("--uploads", type=int, default=5, help="uploads of the whole --data file (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with DatasetReader(args.data, require_labels=False) as reader:
        frames = reader.read_frames(0, min(len(reader), args.requests * max(args.sizes)))
    model = load_onnx_model(args.model)
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_server(args.model.resolve(), Path(folder), max(args.sizes))

        def connect() -> http.client.HTTPConnection:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            connection.connect()
            # As curl and urllib3 do: http.client sends the headers and the body in two writes,
            # and Nagle's algorithm would hold the body until the server's delayed ACK (~40 ms).
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection

        try:
            for per_request in args.sizes:
                lines += measure_infer(model, connect, request_batches(frames, args.requests, per_request), args.clients)
            lines += measure_upload(model, connect, args.data, args.uploads)
        finally:
            peak = stop_server(process)
    print(f"{describe_cpu()}; commit {commit()}; {datetime.date.today().isoformat()}; {args.clients} client(s) at once; "
          f"the server's peak memory {peak / 1e6:.0f} MB")
    print("| sequences per request | route | requests/s | sequences/s | p50 ms | p99 ms |")
    print("|--:|---|--:|--:|--:|--:|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
