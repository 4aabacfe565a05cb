"""The HTTP server: the exported model behind the Open Inference Protocol (v2), on onnxruntime.

    python -m movingline.inference.server --model models/model.onnx [--host 127.0.0.1] [--port 8000]

The v2 routes are the ones KServe and Triton serve (``GET /v2/health/live``,
``/v2/health/ready``, ``/v2/models/NAME``, ``/v2/models/NAME/ready``; ``POST
/v2/models/NAME/infer`` with JSON tensors), so a client written for them works here and the
ONNX file moves to them as it is. ``POST /predictions`` takes a file in the dataset format
and answers with the predict stage's table (movingline/prediction.py). OpenAPI docs at /docs;
docs/serving.md shows every route with its output, the limits and the shutdown.

No TensorFlow: the model runs in movingline.inference.onnx_runtime's OnnxModel. Work is bounded: a body
over its limit (bytes, or sequences) gets 413 before more than the limit is read; an upload
is spooled to a temporary file and read one batch at a time; sequences go to onnxruntime in
batches of at most --batch-size; at most --threads requests are parsed and scored at once
and at most --max-connections are open. SIGTERM or Ctrl-C stops accepting, answers what was
accepted (waiting at most --shutdown-seconds) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from movingline.cli import add_path, count_argument, run_stage
from movingline.data.batching import batch_bounds
from movingline.data.dataset import DatasetReader
from movingline.data.labels import LABEL_NAMES
from movingline.errors import InputError, one_line, whole_number
from movingline.inference.onnx_runtime import INPUT_NAME, OUTPUT_NAME, OnnxModel, load_onnx_model
from movingline.inference.prediction import PREDICT_BATCH_SIZE, Predictions, predict_batches, predictions_table, write_table
from movingline.model import frame_size
from movingline.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "movingline"
# The server's second output, beside the model's probability: the predicted class's name.
LABEL_OUTPUT = "label"
CSV_TYPE = "text/csv"
JSON_TYPE = "application/json"
MIB = 2**20


@dataclass(frozen=True)
class Limits:
    """What one request may hold and how much work runs at once (docs/serving.md, "Limits")."""

    request_bytes: int = 16 * MIB  # the JSON body of one infer request
    request_sequences: int = 32  # sequences in one infer request (at size 50, 12 MB of JSON)
    upload_bytes: int = 256 * MIB  # one uploaded dataset file
    upload_sequences: int = 10_000  # sequences in one uploaded file
    batch_size: int = PREDICT_BATCH_SIZE  # sequences per onnxruntime call
    threads: int = 2  # requests parsed and scored at once


class RequestError(Exception):
    """A request the server refuses: its HTTP status and one line naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


def too_large(what: str, limit: int, unit: str, flag: str) -> RequestError:
    return RequestError(413, f"{what} is over the limit of {limit} {unit} (the server's {flag})")


# --- The v2 protocol: metadata, and an infer request's tensor -----------------------------


def output_tail(model: OnnxModel) -> list[int]:
    """The model output's dimensions after the batch's (the export writes (batch, 1))."""
    shape = model.session.get_outputs()[0].shape
    return [dim if isinstance(dim, int) else -1 for dim in shape[1:]]


def model_metadata(name: str, model: OnnxModel) -> dict:
    """The v2 model metadata: the input's name, dtype and shape (-1 where any length goes), the outputs'."""
    size = frame_size(model)
    return {
        "name": name,
        "versions": [],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, -1, size, size, 1]}],
        "outputs": [
            {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, *output_tail(model)]},
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
        ],
    }


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"the body is not JSON ({one_line(str(error), 200)})") from None
    except RecursionError:
        raise bad_request("the body is JSON nested too deeply to read") from None


def request_frames(payload: object, size: int, max_sequences: int) -> tuple[np.ndarray, list[str]]:
    """The uint8 frames (n, time, size, size, 1) of a v2 infer request, and the outputs it asks for.

    Raises RequestError naming the first thing wrong: 400, or 413 for too many sequences.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise bad_request("the body must be a JSON object with a list 'inputs' (an Open Inference Protocol v2 request)")
    inputs = payload["inputs"]
    names = [tensor.get("name") if isinstance(tensor, dict) else None for tensor in inputs]
    extra = [name for name in names if name != INPUT_NAME]
    if extra:
        raise bad_request(f"unexpected input {extra[0]!r}: the model has one input, {INPUT_NAME!r}")
    if not names:
        raise bad_request(f"missing input {INPUT_NAME!r}: 'inputs' is empty")
    if len(names) > 1:
        raise bad_request(f"input {INPUT_NAME!r} is given {len(names)} times; the model has one input")
    tensor = inputs[0]
    where = f"input {INPUT_NAME!r}"
    if tensor.get("datatype") != "UINT8":
        raise bad_request(f"{where}: datatype {tensor.get('datatype')!r}, expected 'UINT8'")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape):
        raise bad_request(f"{where}: 'shape' must be a list of whole numbers, found {one_line(repr(shape), 100)}")
    expected = f"[sequences, frames, {size}, {size}, 1]"
    if len(shape) != 5:
        raise bad_request(f"{where}: shape {shape} has {len(shape)} dimensions, expected 5: {expected}")
    n_sequences, n_frames, rows, columns, channels = shape
    if (rows, columns, channels) != (size, size, 1):
        raise bad_request(f"{where}: shape {shape} holds frames of {rows}x{columns}x{channels}; this model takes {size}x{size}x1, {expected}")
    if n_sequences < 1 or n_frames < 1:
        raise bad_request(f"{where}: shape {shape} holds no frames; expected at least one sequence of at least one frame")
    if n_sequences > max_sequences:
        raise too_large(f"{where}: {n_sequences} sequences", max_sequences, "sequences", "--max-request-sequences")
    return tensor_values(tensor.get("data"), shape, where), requested_outputs(payload.get("outputs"))


def tensor_values(data: object, shape: list[int], where: str) -> np.ndarray:
    """``data`` (flat in row-major order, or nested) as uint8 of ``shape``; pixels are 0 or 1."""
    if not isinstance(data, list):
        raise bad_request(f"{where}: 'data' must be a list of numbers (JSON tensors; binary data is not served)")
    try:
        values = np.asarray(data)
    except (ValueError, TypeError):
        raise bad_request(f"{where}: 'data' is ragged: nested lists of different lengths") from None
    if values.size != math.prod(shape):
        raise bad_request(f"{where}: shape {shape} holds {math.prod(shape)} values, 'data' holds {values.size}")
    if values.dtype.kind not in "iu":
        found = {"b": "booleans", "f": "non-whole numbers", "U": "strings"}.get(values.dtype.kind, "values that are not numbers")
        raise bad_request(f"{where}: 'data' holds {found}, expected UINT8 whole numbers")
    if values.min() < 0 or values.max() > 1:
        bad = values.max() if values.max() > 1 else values.min()
        raise bad_request(f"{where}: 'data' holds pixel value {bad}, expected only 0 and 1 (as the dataset format holds)")
    return values.astype(np.uint8).reshape(shape)


def requested_outputs(outputs: object) -> list[str]:
    """The names of the outputs an infer request asks for (all of them when it names none)."""
    served = [OUTPUT_NAME, LABEL_OUTPUT]
    if outputs is None:
        return served
    names = [output.get("name") if isinstance(output, dict) else None for output in outputs] if isinstance(outputs, list) else [None]
    unknown = [name for name in names if name not in served]
    if unknown:
        raise bad_request(f"unknown output {unknown[0]!r} in 'outputs': the outputs are {served}")
    return names


def frame_batches(frames: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, None]]:
    for start, stop in batch_bounds(len(frames), batch_size):
        yield frames[start:stop], None


def infer_response(name: str, model: OnnxModel, body: bytes, limits: Limits) -> dict:
    """Scores one v2 infer request's body: the probability of "right" and the label of each sequence."""
    payload = parse_json(body)
    frames, wanted = request_frames(payload, frame_size(model), limits.request_sequences)
    predictions = predict_batches(model, frame_batches(frames, limits.batch_size), n_shown=0)
    n_sequences = len(frames)
    outputs = {
        OUTPUT_NAME: {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [n_sequences, *output_tail(model)],
                      "data": predictions.probabilities.tolist()},
        LABEL_OUTPUT: {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [n_sequences],
                       "data": [LABEL_NAMES[int(label)] for label in predictions.predicted]},
    }
    response = {"model_name": name, "outputs": [outputs[output] for output in wanted]}
    # The protocol's optional request id comes back with the answer.
    return response | ({"id": str(payload["id"])} if payload.get("id") is not None else {})


# --- The upload route: a dataset file in, the predictions table out ------------------------


def upload_predictions(model: OnnxModel, path: Path, limits: Limits) -> Predictions:
    """The predictions for an uploaded dataset file at ``path``; RequestError naming what is wrong."""
    size = frame_size(model)
    try:
        with DatasetReader(path, require_labels=False) as reader:
            if reader.info.size != size:
                raise bad_request(f"the uploaded file holds frames of {reader.info.size}x{reader.info.size}; this model takes {size}x{size}")
            if len(reader) > limits.upload_sequences:
                raise too_large(f"the uploaded file's {len(reader)} sequences", limits.upload_sequences, "sequences", "--max-upload-sequences")
            return predict_batches(model, reader.iter_batches(limits.batch_size), n_shown=0)
    except InputError as error:
        raise bad_request(str(error).replace(str(path), "the uploaded file")) from None


def table_type(accept: str | None) -> str:
    """CSV, unless the Accept header names JSON and not CSV; 406 for a header that takes neither."""
    types = {part.split(";")[0].strip().lower() for part in (accept or "*/*").split(",")}
    if CSV_TYPE in types:
        return CSV_TYPE
    if JSON_TYPE in types:
        return JSON_TYPE
    if types & {"*/*", "text/*", ""}:
        return CSV_TYPE
    raise RequestError(406, f"Accept: {one_line(accept, 100)}: the table comes as {CSV_TYPE} or {JSON_TYPE}")


def table_response(table: list[list[object]], media_type: str, folder: Path) -> Response:
    """The predictions table as the predict stage writes it (CSV), or as JSON objects, one per row."""
    if media_type == JSON_TYPE:
        header, *rows = table
        objects = [dict(zip(header, row)) | {"probability_right": float(row[1])} for row in rows]
        return JSONResponse({"predictions": objects})
    path = folder / "predictions.csv"
    write_table(table, path)
    return Response(path.read_bytes(), media_type=CSV_TYPE)


# --- The application ------------------------------------------------------------------------


async def limited_chunks(request: Request, limit: int, flag: str) -> AsyncIterator[bytes]:
    """The body's chunks; 413 as soon as it declares or reaches more than ``limit`` bytes."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"the body's {int(declared)} bytes", limit, "bytes", flag)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large("the body", limit, "bytes", flag)
            yield chunk
    except ClientDisconnect:
        raise bad_request(f"the client disconnected after {received} bytes of the body") from None


def error_response(status: int, message: str) -> JSONResponse:
    # After a 413 the rest of the body is never read: the connection cannot carry another request.
    headers = {"Connection": "close"} if status == 413 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


INFER_BODY = {
    "required": True,
    "content": {JSON_TYPE: {"schema": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "datatype", "shape", "data"],
                "properties": {
                    "name": {"type": "string", "example": INPUT_NAME},
                    "datatype": {"type": "string", "example": "UINT8"},
                    "shape": {"type": "array", "items": {"type": "integer"}, "example": [1, 50, 50, 50, 1]},
                    "data": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 1},
                             "description": "the pixels, 0 or 1, flat in row-major order (or nested as the shape)"},
                },
            }},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
    }}},
}
UPLOAD_BODY = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
TABLE_RESPONSES = {200: {"content": {CSV_TYPE: {}, JSON_TYPE: {}}, "description": "the predictions table"}}


def build_app(model: OnnxModel, name: str, limits: Limits) -> FastAPI:
    """The FastAPI application serving ``model`` as ``name`` within ``limits``."""
    app = FastAPI(
        title="movingline",
        summary="The moving-line CNN-LSTM (exported to ONNX) behind the Open Inference Protocol v2",
        version="2",
    )
    # Parsing and scoring run in threads (onnxruntime and h5py release the GIL); this many at once.
    scoring = asyncio.Semaphore(limits.threads)

    async def in_thread(function: Callable, *args):
        async with scoring:
            return await run_in_threadpool(function, *args)

    def require_model(requested: str) -> None:
        if requested != name:
            raise RequestError(404, f"unknown model {requested!r}; this server serves {name!r}")

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return error_response(error.status, str(error))

    @app.exception_handler(HTTPException)
    async def no_route(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, f"{error.detail}: {request.method} {request.url.path} (the routes: /docs)")

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, f"internal error: {type(error).__name__}: {one_line(str(error), 200)}")

    @app.get("/v2/health/live", tags=["v2"])
    async def live() -> dict:
        """200 while the server runs."""
        return {"live": True}

    @app.get("/v2/health/ready", tags=["v2"])
    async def ready() -> dict:
        """200 when the model is loaded: always, once the server listens (it loads the model first)."""
        return {"ready": True}

    @app.get("/v2", tags=["v2"])
    async def server_metadata() -> dict:
        """The server's name and version, and the protocol extensions it serves (none)."""
        return {"name": "movingline", "version": "1", "extensions": []}

    @app.get("/v2/models/{model_name}", tags=["v2"])
    async def metadata(model_name: str) -> dict:
        """The model's input (name, UINT8, shape with this model's frame size) and outputs."""
        require_model(model_name)
        return model_metadata(name, model)

    @app.get("/v2/models/{model_name}/ready", tags=["v2"])
    async def model_ready(model_name: str) -> dict:
        """200 for the served model, 404 for any other name."""
        require_model(model_name)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{model_name}/infer", tags=["v2"], openapi_extra={"requestBody": INFER_BODY})
    async def infer(model_name: str, request: Request) -> dict:
        """Sequences as a v2 JSON tensor in; the probability of "right" (FP32) and the label (BYTES) of each out."""
        require_model(model_name)
        body = b"".join([chunk async for chunk in limited_chunks(request, limits.request_bytes, "--max-request-bytes")])
        return await in_thread(infer_response, name, model, body, limits)

    @app.post("/predictions", tags=["files"], openapi_extra={"requestBody": UPLOAD_BODY}, responses=TABLE_RESPONSES)
    async def predictions(request: Request) -> Response:
        """A dataset file (HDF5, as `stages.predict --input` takes) as the body; the predictions table back.

        CSV, the rows `stages.predict` writes; JSON with `Accept: application/json`.
        """
        media_type = table_type(request.headers.get("accept"))
        with tempfile.TemporaryDirectory(prefix="movingline-upload-") as folder:
            path = Path(folder) / "upload.h5"
            with open(path, "wb") as file:
                async for chunk in limited_chunks(request, limits.upload_bytes, "--max-upload-bytes"):
                    file.write(chunk)
            predictions = await in_thread(upload_predictions, model, path, limits)
            return table_response(predictions_table(predictions), media_type, Path(folder))

    return app


class RequestCounter:
    """ASGI middleware counting the HTTP requests the server accepted and those it answered in full."""

    def __init__(self, app) -> None:
        self.app = app
        self.accepted = 0
        self.answered = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.accepted += 1

        async def counted_send(message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.answered += 1

        await self.app(scope, receive, counted_send)


# --- The command ----------------------------------------------------------------------------


def port_argument(text: str) -> int:
    try:
        return whole_number("--port", text, low=0, high=65535)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--port: ")) from None


def command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m movingline.inference.server", description=__doc__.splitlines()[0])
    add_path(parser, "--model", "models/model.onnx", "the exported model (the export stage's output)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=port_argument, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="the model's name in the v2 routes (default: %(default)s)")
    defaults = Limits()
    for flag, field, unit in (
        ("--max-request-bytes", "request_bytes", "bytes of an infer request's body"),
        ("--max-request-sequences", "request_sequences", "sequences in an infer request"),
        ("--max-upload-bytes", "upload_bytes", "bytes of an uploaded file"),
        ("--max-upload-sequences", "upload_sequences", "sequences in an uploaded file"),
        ("--batch-size", "batch_size", "sequences per onnxruntime call"),
        ("--threads", "threads", "requests parsed and scored at once"),
    ):
        parser.add_argument(flag, dest=field, type=count_argument, default=getattr(defaults, field), metavar="N",
                            help=f"most {unit} (default: %(default)s)")
    parser.add_argument("--max-connections", type=count_argument, default=64, metavar="N",
                        help="open connections and requests at once; past it the server answers 503 (default: %(default)s)")
    parser.add_argument("--shutdown-seconds", type=count_argument, default=30, metavar="S",
                        help="on SIGTERM or Ctrl-C, how long accepted requests get to be answered (default: %(default)s)")
    parser.add_argument("--access-log", action="store_true", help="log one line per request")
    return parser


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``; InputError when the address cannot be had."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # With the protocol named (TCP), asyncio turns Nagle's algorithm off on each connection;
        # without it, every answer waited for the client's delayed ACK (40 ms, measured).
        listener = socket.socket(family, kind, protocol)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as error:
        raise InputError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from None
    return listener


def main(settings: Settings) -> None:
    args = command_parser().parse_args()
    started = time.monotonic()
    limits = Limits(**{field: getattr(args, field) for field in Limits.__dataclass_fields__})
    model = load_onnx_model(args.model)
    app = RequestCounter(build_app(model, args.name, limits))
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=args.access_log,
        limit_concurrency=args.max_connections,
        timeout_graceful_shutdown=args.shutdown_seconds,
    )
    server = uvicorn.Server(config)
    listener = listen(args.host, args.port)
    host, port = listener.getsockname()[:2]
    log.info(
        "serving %s as %r at http://%s:%d (onnxruntime %s, TensorFlow %s; ready %.2f s after the imports; docs at /docs)",
        args.model, args.name, host, port, onnxruntime.__version__,
        "loaded" if "tensorflow" in sys.modules else "not loaded", time.monotonic() - started,
    )
    # uvicorn handles SIGTERM and SIGINT while it serves (stop accepting, finish the accepted
    # requests), then puts these handlers back and raises the signal again: here, a signal
    # that came before uvicorn took over stops the server as soon as it starts, and the one
    # raised again after the shutdown is done is a no-op, so the exit is 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
    server.run(sockets=[listener])
    cut = app.accepted - app.answered
    log.info("stopped: answered %d of the %d requests accepted", app.answered, app.accepted)
    if cut:
        log.warning("%d requests were cut off after --shutdown-seconds %d", cut, args.shutdown_seconds)


if __name__ == "__main__":
    run_stage(main)
