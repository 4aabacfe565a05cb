"""Bad input: every stage exits non-zero with one line naming the file or key, and leaves
no partial output behind (earlier outputs stay byte for byte).

The big tables run in-process (the dataset reader, the model loader, the error handling);
a representative set goes through the real stage processes.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from movingline import cli
from movingline.dataset import FORMAT_NAME, DatasetReader, write_dataset
from movingline.errors import InputError
from movingline.outputs import atomic_outputs, temporary_path
from movingline.params import ModelParams
from movingline.resources import parameter_count, require_memory
from tests.conftest import TINY_PARAMS, stage_env, tiny_params

SIZE = TINY_PARAMS["data"]["size"]


# ---------------------------------------------------------------------------------------
# Files to feed the stages


def write_good_dataset(path: Path, size: int = 4, n_samples: int = 6, seed: int = 5) -> Path:
    """A valid dataset of random 0/1 frames."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 2, size=(n_samples, size, size, size, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, size=n_samples, dtype=np.uint8)
    write_dataset(path, [(frames, labels)], size=size, n_samples=n_samples, seed=seed)
    return path


def flip_byte_in_chunk(path: Path, sample: int) -> None:
    """Flips one byte inside the compressed data of ``sample``'s chunk, as a bad disk would."""
    with h5py.File(path, "r") as file:
        chunk = file["frames"].id.get_chunk_info(sample)
    with open(path, "r+b") as raw:
        raw.seek(chunk.byte_offset + chunk.size // 2)
        byte = raw.read(1)[0]
        raw.seek(-1, os.SEEK_CUR)
        raw.write(bytes([byte ^ 0xFF]))


def replace_dataset(path: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(path, "r+") as file:
        del file[name]
        file.create_dataset(name, data=data)


def replace_with_group(path: Path, name: str) -> None:
    with h5py.File(path, "r+") as file:
        del file[name]
        file.create_group(name)


def set_attribute(path: Path, key: str, value) -> None:
    with h5py.File(path, "r+") as file:
        file.attrs[key] = value


def delete(path: Path, name: str, *, attribute: bool = False) -> None:
    with h5py.File(path, "r+") as file:
        del (file.attrs if attribute else file)[name]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_foreign_hdf5(path: Path) -> None:
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=np.zeros((3, 4, 4), dtype=np.float32))


def write_zip_that_is_not_a_model(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    return path


def assert_one_line(message: str, *needles: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


# ---------------------------------------------------------------------------------------
# The dataset reader, in-process: (id, how to spoil a good file, words of the message)

READER_CASES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("missing", lambda p: p.unlink(), ["d.h5: file not found"]),
    ("a directory", lambda p: (p.unlink(), p.mkdir()), ["d.h5: not a file"]),
    ("empty", lambda p: p.write_bytes(b""), ["d.h5: not an HDF5 file", FORMAT_NAME]),
    ("not HDF5", lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), ["d.h5: not an HDF5 file"]),
    ("text", lambda p: p.write_text("index,label\n0,1\n"), ["d.h5: not an HDF5 file"]),
    ("truncated", truncate, ["d.h5: truncated HDF5 file (", "bytes, but its header says"]),
    ("another layout", write_foreign_hdf5, ["d.h5: not a movingline-sequences dataset (has no 'format' attribute"]),
    (
        "another format",
        lambda p: set_attribute(p, "format", "images"),
        ["attribute 'format' is 'images', expected 'movingline-sequences'"],
    ),
    (
        "format version 2",
        lambda p: set_attribute(p, "format_version", 2),
        ["d.h5: format version 2 is not supported (expected 1)"],
    ),
    ("no size attribute", lambda p: delete(p, "size", attribute=True), ["d.h5: attribute 'size' is missing"]),
    (
        "size attribute not an integer",
        lambda p: set_attribute(p, "size", "four"),
        ["attribute 'size' is 'four', expected an integer of at least 2"],
    ),
    (
        "no samples",
        lambda p: set_attribute(p, "n_samples", 0),
        ["attribute 'n_samples' is 0, expected an integer of at least 1"],
    ),
    ("no frames", lambda p: delete(p, "frames"), ["d.h5: dataset 'frames' is missing"]),
    ("frames a group", lambda p: replace_with_group(p, "frames"), ["'frames' is a Group, expected a dataset"]),
    (
        "frames float32",
        lambda p: replace_dataset(p, "frames", np.zeros((6, 4, 4, 4, 1), np.float32)),
        ["'frames' has dtype float32, expected uint8"],
    ),
    (
        "frames without channel axis",
        lambda p: replace_dataset(p, "frames", np.zeros((6, 4, 4, 4), np.uint8)),
        ["'frames' has shape (6, 4, 4, 4), expected (6, 4, 4, 4, 1)"],
    ),
    (
        "frames not square",
        lambda p: replace_dataset(p, "frames", np.zeros((6, 4, 4, 5, 1), np.uint8)),
        ["'frames' has shape (6, 4, 4, 5, 1)"],
    ),
    (
        "fewer frames than n_samples",
        lambda p: set_attribute(p, "n_samples", 9),
        ["'frames' has shape (6, 4, 4, 4, 1), expected (9, 4, 4, 4, 1)"],
    ),
    ("no labels", lambda p: delete(p, "labels"), ["d.h5: dataset 'labels' is missing (expected uint8 of shape (6,))"]),
    (
        "labels int64",
        lambda p: replace_dataset(p, "labels", np.zeros(6, np.int64)),
        ["'labels' has dtype int64, expected uint8"],
    ),
    (
        "labels too short",
        lambda p: replace_dataset(p, "labels", np.zeros(5, np.uint8)),
        ["'labels' has shape (5,), expected (6,)"],
    ),
    (
        "label 2",
        lambda p: replace_dataset(p, "labels", np.array([0, 1, 2, 0, 1, 0], np.uint8)),
        ["'labels' must hold only 0 (left) and 1 (right), found 2"],
    ),
]


@pytest.mark.parametrize(("case_id", "spoil", "needles"), READER_CASES, ids=[case[0] for case in READER_CASES])
def test_reader_refuses_bad_files_naming_the_file_and_the_problem(tmp_path, case_id, spoil, needles):
    path = write_good_dataset(tmp_path / "d.h5")
    spoil(path)
    with pytest.raises(InputError) as caught:
        DatasetReader(path).close()
    assert str(caught.value).startswith(f"{path}: ")
    assert_one_line(str(caught.value), *needles)


def test_reader_names_the_sample_whose_chunk_fails_its_checksum(tmp_path):
    path = write_good_dataset(tmp_path / "d.h5", n_samples=6)
    flip_byte_in_chunk(path, 4)
    with DatasetReader(path) as reader:
        assert reader.read_frames(0, 4).shape == (4, 4, 4, 4, 1)  # the samples before are fine
        with pytest.raises(InputError) as caught:
            reader.read_frames(2, 6)
    assert_one_line(str(caught.value), f"{path}: sample 4 is corrupt", "checksum", "regenerate")
    assert len(str(caught.value)) < 250


def test_reader_refuses_pixels_other_than_0_and_1(tmp_path):
    path = write_good_dataset(tmp_path / "d.h5")
    frames = np.zeros((6, 4, 4, 4, 1), np.uint8)
    frames[3, 1, 2, 2, 0] = 7
    with h5py.File(path, "r+") as file:
        file["frames"][...] = frames
    with DatasetReader(path) as reader, pytest.raises(InputError) as caught:
        reader.read_frames(0, 6)
    assert_one_line(str(caught.value), f"{path}: sample 3 holds pixel value 7, expected only 0 and 1")


def test_read_errors_wrapped_by_another_library_come_out_as_they_were(tmp_path):
    path = write_good_dataset(tmp_path / "d.h5")
    flip_byte_in_chunk(path, 1)
    with (
        DatasetReader(path) as reader,
        pytest.raises(InputError, match="sample 1 is corrupt"),
        reader.read_errors_unwrapped(),
    ):
        try:
            reader.read_frames(0, 2)
        except InputError as error:
            # As tf.data does: a new exception whose text holds a traceback.
            raise RuntimeError(f"Graph execution error:\n{error}\nTraceback ...") from None


# ---------------------------------------------------------------------------------------
# The model loader, in-process


@pytest.fixture(scope="module")
def keras_model_file(tmp_path_factory) -> Path:
    from movingline.model import build_model, save_model

    path = tmp_path_factory.mktemp("model") / "model.keras"
    save_model(build_model(SIZE, ModelParams(**TINY_PARAMS["model"])), path)
    return path


def write_dense_model(path: Path) -> Path:
    import keras

    inputs = keras.Input(shape=(3,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(path)
    return path


MODEL_CASES: list[tuple[str, Callable[[Path], object], list[str]]] = [
    ("missing", lambda p: None, ["m.keras: model file not found"]),
    (
        "random bytes",
        lambda p: p.write_bytes(np.random.default_rng(1).bytes(3000)),
        ["m.keras: not a Keras model file (expected a .keras zip archive"],
    ),
    ("empty", lambda p: p.write_bytes(b""), ["m.keras: not a Keras model file"]),
    (
        "a zip but not a model",
        write_zip_that_is_not_a_model,
        ["m.keras: a zip archive but not a Keras model (it has no config.json)"],
    ),
    (
        "another kind of model",
        write_dense_model,
        ["m.keras: the model takes input of shape (None, 3), expected (batch, time, size, size, 1)"],
    ),
]


@pytest.mark.parametrize(("case_id", "make", "needles"), MODEL_CASES, ids=[case[0] for case in MODEL_CASES])
def test_load_model_refuses_what_is_not_our_model(tmp_path, case_id, make, needles):
    from movingline.model import load_model

    path = tmp_path / "m.keras"
    make(path)
    with pytest.raises(InputError) as caught:
        load_model(path)
    assert_one_line(str(caught.value), *needles)


def test_a_damaged_model_archive_is_refused(tmp_path, keras_model_file):
    from movingline.model import load_model

    damaged = tmp_path / "m.keras"
    with zipfile.ZipFile(keras_model_file) as source, zipfile.ZipFile(damaged, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, data[: len(data) // 3] if name.endswith(".h5") else data)
    with pytest.raises(InputError) as caught:
        load_model(damaged)
    assert_one_line(str(caught.value), f"{damaged}: cannot load the Keras model (")


def test_check_frame_size_names_both_files_and_sizes(keras_model_file):
    from movingline.model import check_frame_size, load_model

    model = load_model(keras_model_file)
    check_frame_size(model, keras_model_file, SIZE, Path("data/test.h5"))
    with pytest.raises(InputError) as caught:
        check_frame_size(model, keras_model_file, 6, Path("other.h5"))
    assert_one_line(
        str(caught.value), f"{keras_model_file}: the model was trained on 8x8 frames", "other.h5 holds 6x6 frames"
    )


# ---------------------------------------------------------------------------------------
# Memory checks, error reporting and atomic outputs, in-process


def test_parameter_count_matches_the_built_model():
    from movingline.model import build_model

    for size, params in [(50, ModelParams(2, 2, 2, 50)), (9, ModelParams(3, 3, 2, 7)), (8, ModelParams(1, 2, 3, 5))]:
        assert parameter_count(size, params) == build_model(size, params).count_params()
    assert parameter_count(50, ModelParams(2, 2, 2, 50)) == 240_661  # SPEC section 2


def test_require_memory_names_the_key_and_both_amounts():
    require_memory(1000, "a little", "params.yaml: x")
    with pytest.raises(InputError) as caught:
        require_memory(10**18, "one batch", "params.yaml: data.size = 200")
    assert_one_line(str(caught.value), "params.yaml: data.size = 200: one batch needs 1000.0 PB of memory, but only")


def run_stage_in_process(main: Callable[[], None], capsys, monkeypatch, debug: bool = False) -> tuple[int, str]:
    """cli.run_stage(main) in this process: (exit status, stderr)."""
    import signal

    monkeypatch.setenv(cli.DEBUG_VARIABLE, "1" if debug else "")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as caught:
            cli.run_stage(main)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return caught.value.code, capsys.readouterr().err


def raiser(error: BaseException) -> Callable[[], None]:
    def main() -> None:
        raise error

    return main


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        (
            InputError("params.yaml: train.epochs: expected an integer"),
            2,
            "error: params.yaml: train.epochs: expected an integer\n",
        ),
        (InputError("d.h5: two\n   lines"), 2, "error: d.h5: two lines\n"),
        (
            RuntimeError("Graph execution error:\n\n  detail  "),
            1,
            "error: unexpected failure: RuntimeError: Graph execution error: detail (set MOVINGLINE_DEBUG=1 for the traceback)\n",
        ),
        (KeyboardInterrupt(), 130, "error: interrupted by SIGINT; no partial output was left\n"),
        (cli.Terminated(15), 143, "error: interrupted by SIGTERM; no partial output was left\n"),
    ],
    ids=["input error", "multi-line input error", "unexpected failure", "SIGINT", "SIGTERM"],
)
def test_run_stage_reports_one_line_and_the_exit_status(capsys, monkeypatch, error, status, expected):
    assert run_stage_in_process(raiser(error), capsys, monkeypatch) == (status, expected)


def test_run_stage_cuts_a_huge_unexpected_message(capsys, monkeypatch):
    status, err = run_stage_in_process(raiser(ValueError("x" * 10_000)), capsys, monkeypatch)
    assert status == 1 and err.count("\n") == 1 and len(err) < 600


def test_debug_shows_the_real_exception(monkeypatch):
    monkeypatch.setenv(cli.DEBUG_VARIABLE, "1")
    with pytest.raises(InputError, match="d.h5: file not found"):
        cli.run_stage(raiser(InputError("d.h5: file not found")))


def test_a_failing_stage_leaves_earlier_outputs_and_no_temporaries(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "sub" / "b.png"
    first.write_bytes(b"earlier output\n")
    with pytest.raises(InputError), atomic_outputs(first, second) as (first_temporary, _):
        first_temporary.write_text("half of the new output")
        raise InputError("stopped half-way")
    assert first.read_bytes() == b"earlier output\n"
    assert not second.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.csv"]


def test_outputs_are_replaced_together_on_success(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.json"
    first.write_bytes(b"old")
    with atomic_outputs(first, second) as (first_temporary, second_temporary):
        assert first_temporary.name.startswith(".a.partial-") and first_temporary.suffix == ".csv"
        first_temporary.write_text("new a")
        second_temporary.write_text("new b")
        assert first.read_bytes() == b"old"
    assert (first.read_text(), second.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.json"]


def test_temporaries_of_killed_runs_are_swept_but_not_those_of_live_ones(tmp_path):
    destination = tmp_path / "train.h5"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=False
    )
    stale = temporary_path(destination, int(dead.stdout))
    live = temporary_path(destination, os.getppid())
    for path in (stale, live):
        path.write_bytes(b"left behind")
    with atomic_outputs(destination) as (temporary,):
        temporary.write_bytes(b"new")
    assert not stale.exists()
    assert live.exists()


@pytest.mark.parametrize("kind", ["directory", "file as folder"])
def test_an_output_path_that_cannot_be_a_file_is_refused_before_work(tmp_path, kind):
    target = tmp_path / "metrics.json"
    if kind == "directory":
        target.mkdir()
    else:
        (tmp_path / "plots").write_text("a file")
        target = tmp_path / "plots" / "roc.json"
    with pytest.raises(InputError) as caught, atomic_outputs(target):
        pytest.fail("the body must not run")
    assert_one_line(str(caught.value), str(target))


# ---------------------------------------------------------------------------------------
# The real stages, as a user runs them: a representative set


class Inputs:
    """Bad inputs for one test, built in its own folder from the built project's files."""

    def __init__(self, root: Path, folder: Path):
        self.root = root
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def params(self, **overrides: dict) -> str:
        return self.params_text(yaml.safe_dump(tiny_params(**overrides), sort_keys=False))

    def params_text(self, text: str) -> str:
        path = self.folder / "params.yaml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def renamed_key(self, section: str, key: str, new_key: str) -> str:
        params = tiny_params()
        params[section][new_key] = params[section].pop(key)
        return self.params_text(yaml.safe_dump(params, sort_keys=False))

    def copy(self, relative: str, name: str) -> Path:
        return Path(shutil.copy(self.root / relative, self.folder / name))

    def corrupt(self, relative: str, sample: int) -> str:
        path = self.copy(relative, "corrupt.h5")
        flip_byte_in_chunk(path, sample)
        return str(path)

    def spoiled(self, relative: str, spoil: Callable[[Path], object]) -> str:
        path = self.copy(relative, "spoiled.h5")
        spoil(path)
        return str(path)

    def raw(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def dataset(self, size: int, n_samples: int = 10) -> str:
        return str(write_good_dataset(self.folder / f"size{size}.h5", size=size, n_samples=n_samples))

    def not_a_model(self) -> str:
        return str(write_zip_that_is_not_a_model(self.folder / "zip.keras"))


# Each stage's outputs, written under the test's own folder; the first one exists beforehand.
OUTPUT_FLAGS = {
    "generate_train": [("--output", "train.h5"), ("--strip", "strip.png")],
    "train": [("--model", "model.keras"), ("--curve", "curve.csv")],
    "evaluate": [("--metrics", "metrics.json"), ("--roc", "roc.json"), ("--confusion", "confusion.json")],
    "predict": [("--output", "predictions.csv"), ("--image", "predictions.png")],
}

GARBAGE = np.random.default_rng(2).bytes(4000)

# (id, stage, its arguments given the Inputs, the words the one line must hold)
STAGE_CASES: list[tuple[str, str, Callable[[Inputs], list[str]], list[str]]] = [
    (
        "params missing",
        "train",
        lambda i: ["--params", str(i.folder / "nope.yaml")],
        ["nope.yaml: params file not found"],
    ),
    (
        "params not YAML",
        "generate_train",
        lambda i: ["--params", i.params_text("data: [\n")],
        ["params.yaml: not valid YAML: line 2"],
    ),
    (
        "typo in evaluate stops train",
        "train",
        lambda i: ["--params", i.renamed_key("evaluate", "batch_size", "batch_sise")],
        ["params.yaml: evaluate.batch_sise: unknown key 'batch_sise'", "did you mean 'batch_size'?"],
    ),
    (
        "typo in train",
        "train",
        lambda i: ["--params", i.renamed_key("train", "learning_rate", "learnig_rate")],
        ["train.learnig_rate: unknown key", "did you mean 'learning_rate'?"],
    ),
    (
        "float epochs",
        "train",
        lambda i: ["--params", i.params(train={"epochs": 1.5})],
        ["params.yaml: train.epochs: expected an integer", "found float 1.5"],
    ),
    (
        "size 1000 at the first stage",
        "generate_train",
        lambda i: ["--params", i.params(data={"size": 1000})],
        ["params.yaml: the model section with data.size = 1000, train.batch_size = 16: training", "of memory"],
    ),
    (
        "size 1000 at predict",
        "predict",
        lambda i: ["--params", i.params(data={"size": 1000})],
        ["data.size = 1000", "of memory, but only"],
    ),
    (
        "n_samples beyond memory",
        "generate_train",
        lambda i: ["--params", i.params(generate_train={"n_samples": 10**13})],
        ["generate_train.n_samples = 10000000000000: drawing 10000000000000 paths needs", "of memory, but only"],
    ),
    (
        "model beyond memory",
        "train",
        lambda i: ["--params", i.params(model={"lstm_units": 200_000})],
        ["params.yaml: the model section", "of memory, but only"],
    ),
    (
        "predict count beyond memory",
        "predict",
        lambda i: ["--params", i.params(predict={"n_samples": 10**13})],
        ["predict.n_samples = 10000000000000", "of memory"],
    ),
    ("train data missing", "train", lambda i: ["--data", str(i.folder / "nope.h5")], ["nope.h5: file not found"]),
    (
        "train data truncated",
        "train",
        lambda i: ["--data", i.spoiled("data/train.h5", truncate)],
        ["spoiled.h5: truncated HDF5 file"],
    ),
    ("train data not HDF5", "train", lambda i: ["--data", i.raw("x.h5", GARBAGE)], ["x.h5: not an HDF5 file"]),
    (
        "train data without labels",
        "train",
        lambda i: ["--data", i.spoiled("data/train.h5", lambda p: delete(p, "labels"))],
        ["spoiled.h5: dataset 'labels' is missing"],
    ),
    (
        "train data of another size",
        "train",
        lambda i: ["--data", i.dataset(size=6)],
        ["size6.h5: holds 6x6 frames", "data.size = 8"],
    ),
    (
        "train data corrupt",
        "train",
        lambda i: ["--data", i.corrupt("data/train.h5", 50)],
        ["corrupt.h5: sample 50 is corrupt"],
    ),
    (
        "test data corrupt",
        "evaluate",
        lambda i: ["--data", i.corrupt("data/test.h5", 33)],
        ["corrupt.h5: sample 33 is corrupt"],
    ),
    (
        "predict input corrupt",
        "predict",
        lambda i: ["--input", i.corrupt("data/test.h5", 2)],
        ["corrupt.h5: sample 2 is corrupt"],
    ),
    (
        "test data wrong version",
        "evaluate",
        lambda i: ["--data", i.spoiled("data/test.h5", lambda p: set_attribute(p, "format_version", 2))],
        ["spoiled.h5: format version 2 is not supported"],
    ),
    (
        "model missing",
        "evaluate",
        lambda i: ["--model", str(i.folder / "nope.keras")],
        ["nope.keras: model file not found"],
    ),
    (
        "model random bytes",
        "evaluate",
        lambda i: ["--model", i.raw("m.keras", GARBAGE)],
        ["m.keras: not a Keras model file"],
    ),
    (
        "model a foreign zip",
        "predict",
        lambda i: ["--model", i.not_a_model()],
        ["zip.keras: a zip archive but not a Keras model"],
    ),
    (
        "model for other frames (evaluate)",
        "evaluate",
        lambda i: ["--data", i.dataset(size=6)],
        ["the model was trained on 8x8 frames, but", "size6.h5 holds 6x6 frames"],
    ),
    (
        "model for other frames (predict --input)",
        "predict",
        lambda i: ["--input", i.dataset(size=6)],
        ["the model was trained on 8x8 frames, but", "size6.h5 holds 6x6 frames"],
    ),
    (
        "model for other frames (predict)",
        "predict",
        lambda i: ["--params", i.params(data={"size": 6})],
        ["the model was trained on 8x8 frames, but", "sets data.size = 6"],
    ),
    (
        "predict input of the wrong shape",
        "predict",
        lambda i: [
            "--input",
            i.spoiled("data/test.h5", lambda p: replace_dataset(p, "frames", np.zeros((40, 8, 8, 8), np.uint8))),
        ],
        ["spoiled.h5: 'frames' has shape (40, 8, 8, 8), expected (40, 8, 8, 8, 1)"],
    ),
    (
        "output is a directory",
        "evaluate",
        lambda i: ["--roc", str(i.folder)],
        ["is a directory, expected the path of a file"],
    ),
]


def stage_command(stage: str, args: list[str], out: Path) -> list[str]:
    """python -m stages.STAGE with ``args``, outputs redirected into ``out`` unless ``args`` set them."""
    command = [sys.executable, "-m", f"stages.{stage}", *args]
    for flag, name in OUTPUT_FLAGS[stage]:
        if flag not in args:
            command += [flag, str(out / name)]
    return command


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (bytecode caches aside), hidden ones included."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case_id", "stage", "arguments", "needles"), STAGE_CASES, ids=[case[0] for case in STAGE_CASES]
)
def test_stage_refuses_bad_input_in_one_line_and_changes_nothing(
    built_project, tmp_path, case_id, stage, arguments, needles
):
    inputs = Inputs(built_project, tmp_path / "inputs")
    out = tmp_path / "out"
    out.mkdir()
    (out / OUTPUT_FLAGS[stage][0][1]).write_bytes(b"the previous output\n")
    project_before = snapshot(built_project)
    before = snapshot(out)

    result = subprocess.run(
        stage_command(stage, arguments(inputs), out),
        cwd=built_project,
        env=stage_env(),
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert_one_line(result.stderr.strip(), *needles)
    assert snapshot(out) == before, "an output was written or changed"
    assert snapshot(built_project) == project_before


@pytest.mark.slow
def test_a_params_typo_stops_train_before_any_training(built_project, tmp_path):
    """train validates all of params.yaml first: no TensorFlow import, no model, within seconds."""
    inputs = Inputs(built_project, tmp_path / "inputs")
    params = inputs.renamed_key("predict", "seed", "sead")
    script = (
        "import sys, runpy; sys.argv = ['train'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('stages.train', run_name='__main__')\n"
        "finally:\n    print('tensorflow' in sys.modules, file=sys.stdout)\n"
    )
    command = [
        sys.executable,
        "-c",
        script,
        "--params",
        params,
        "--model",
        str(tmp_path / "m.keras"),
        "--curve",
        str(tmp_path / "c.csv"),
    ]
    result = subprocess.run(command, cwd=built_project, env=stage_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert_one_line(result.stderr.strip(), "predict.sead: unknown key 'sead'", "did you mean 'seed'?")
    assert result.stdout.strip() == "False", "TensorFlow was loaded before params.yaml was checked"
    assert not list(tmp_path.glob("*.keras")) and not list(tmp_path.glob(".*"))


@pytest.mark.slow
def test_debug_shows_the_traceback(built_project, tmp_path):
    command = stage_command("train", ["--data", str(tmp_path / "nope.h5")], tmp_path)
    result = subprocess.run(
        command,
        cwd=built_project,
        env={**stage_env(), "MOVINGLINE_DEBUG": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "movingline.errors.InputError: " in result.stderr and "nope.h5: file not found" in result.stderr
    assert not list(tmp_path.iterdir())
