"""movingline.params.load_params: every way params.yaml can be wrong, checked in-process."""

import pytest
import yaml

from movingline.errors import InputError
from movingline.params import MAX_SEED, Params, load_params
from tests.conftest import ROOT, tiny_params, write_params

TINY_YAML = yaml.safe_dump(tiny_params(), sort_keys=False)


def without(section: str, key: str | None = None) -> dict:
    """TINY_PARAMS less one section, or less one key of a section."""
    params = tiny_params()
    if key is None:
        del params[section]
    else:
        del params[section][key]
    return params


def renamed(section: str, key: str, new_key: str) -> dict:
    params = tiny_params()
    params[section][new_key] = params[section].pop(key)
    return params


# (id, params as a dict or as YAML text, words the one-line message must hold)
BAD_PARAMS = [
    ("empty file", "", ["expected the sections data, generate_train", "found an empty file"]),
    ("not yaml", "data: [\n", ["not valid YAML", "line 2, column 1"]),
    ("bad indentation", "data:\n  size: 8\n size: 3\n", ["not valid YAML", "line 3"]),
    ("a list", "- data\n- train\n", ["expected the sections", "found list"]),
    ("missing section", without("train"), ["train: missing section", "seed, batch_size, epochs, learning_rate"]),
    ("unknown section", {**tiny_params(), "trian": {}}, ["trian: unknown section 'trian'", "did you mean 'train'?"]),
    (
        "empty section",
        tiny_params() | {"evaluate": None},
        ["evaluate: expected a section with keys batch_size", "found nothing"],
    ),
    ("section not a mapping", tiny_params() | {"data": 8}, ["data: expected a section with keys size", "found int 8"]),
    ("missing key", without("train", "epochs"), ["train.epochs: missing key", "expected an integer of at least 1"]),
    (
        "typo",
        renamed("train", "learning_rate", "learnig_rate"),
        [
            "train.learnig_rate: unknown key 'learnig_rate'",
            "expected: seed, batch_size, epochs, learning_rate",
            "did you mean 'learning_rate'?",
        ],
    ),
    (
        "typo in evaluate",
        renamed("evaluate", "batch_size", "batch_sise"),
        ["evaluate.batch_sise: unknown key", "'batch_size'"],
    ),
    ("unknown key, nothing close", tiny_params(model={"dropout": 0.5}), ["model.dropout: unknown key 'dropout'"]),
    (
        "string for int",
        tiny_params(train={"epochs": "3"}),
        ["train.epochs: expected an integer of at least 1", "found str '3'"],
    ),
    (
        "float for int",
        tiny_params(generate_train={"n_samples": 64.5}),
        ["generate_train.n_samples: expected an integer", "found float 64.5"],
    ),
    (
        "whole float for int",
        tiny_params(train={"batch_size": 16.0}),
        ["train.batch_size: expected an integer", "found float 16.0"],
    ),
    ("bool for int", tiny_params(train={"epochs": True}), ["train.epochs: expected an integer", "found bool True"]),
    ("null value", tiny_params(model={"lstm_units": None}), ["model.lstm_units: expected an integer", "found nothing"]),
    (
        "list for int",
        tiny_params(data={"size": [8]}),
        ["data.size: expected an integer from 2 to 1625", "found list [8]"],
    ),
    (
        "string for float",
        tiny_params(train={"learning_rate": "fast"}),
        ["train.learning_rate: expected a number greater than 0", "found str 'fast'"],
    ),
    (
        "1e-3 is text in YAML 1.1",
        TINY_YAML.replace("learning_rate: 0.01", "learning_rate: 1e-3"),
        ["train.learning_rate", "found str '1e-3'", "write 0.001"],
    ),
    (
        "bool for float",
        tiny_params(train={"learning_rate": False}),
        ["train.learning_rate: expected a number", "found bool False"],
    ),
    (
        "nan",
        tiny_params(train={"learning_rate": float("nan")}),
        ["train.learning_rate: expected a finite number", "nan"],
    ),
    (
        "n_samples 0",
        tiny_params(generate_train={"n_samples": 0}),
        ["generate_train.n_samples: expected an integer of at least 1, found 0"],
    ),
    ("n_samples negative", tiny_params(generate_test={"n_samples": -5}), ["generate_test.n_samples", "found -5"]),
    ("predict n_samples 0", tiny_params(predict={"n_samples": 0}), ["predict.n_samples", "found 0"]),
    ("size 1", tiny_params(data={"size": 1}), ["data.size: expected an integer from 2 to 1625, found 1"]),
    ("size 0", tiny_params(data={"size": 0}), ["data.size", "found 0"]),
    (
        "size 2000",
        tiny_params(data={"size": 2000}),
        ["data.size: expected an integer from 2 to 1625, found 2000", "4 GiB"],
    ),
    (
        "batch_size 0",
        tiny_params(train={"batch_size": 0}),
        ["train.batch_size: expected an integer of at least 1, found 0"],
    ),
    ("evaluate batch_size -1", tiny_params(evaluate={"batch_size": -1}), ["evaluate.batch_size", "found -1"]),
    ("epochs 0", tiny_params(train={"epochs": 0}), ["train.epochs: expected an integer of at least 1, found 0"]),
    (
        "validation_sequences negative",
        tiny_params(train={"validation_sequences": -1}),
        ["train.validation_sequences: expected an integer of at least 0, found -1"],
    ),
    ("patience a float", tiny_params(train={"patience": 1.5}), ["train.patience: expected an integer", "found float 1.5"]),
    (
        "learning_rate 0",
        tiny_params(train={"learning_rate": 0}),
        ["train.learning_rate: expected a number greater than 0, found 0"],
    ),
    ("learning_rate negative", tiny_params(train={"learning_rate": -0.01}), ["train.learning_rate", "found -0.01"]),
    ("lstm_units 0", tiny_params(model={"lstm_units": 0}), ["model.lstm_units", "found 0"]),
    (
        "seed negative",
        tiny_params(train={"seed": -1}),
        ["train.seed: expected an integer from 0 to 4294967295, found -1"],
    ),
    (
        "seed too big",
        tiny_params(predict={"seed": MAX_SEED + 1}),
        ["predict.seed", f"found {MAX_SEED + 1}", "below 2**32"],
    ),
    (
        "kernel wider than the frame",
        tiny_params(model={"kernel_size": 9}),
        ["model.kernel_size: 9 is larger than the frame (data.size = 8)"],
    ),
    (
        "pool wider than the convolution",
        tiny_params(model={"pool_size": 8}),
        ["model.pool_size: 8 is larger than the convolution output"],
    ),
    (
        "conv_layers 0",
        tiny_params(model={"conv_layers": 0}),
        ["model.conv_layers: expected an integer of at least 1, found 0"],
    ),
    (
        # At size 8 with 2x2 kernels and pooling: 8 -> 7 -> 3, then 3 -> 2 -> 1; a third block has nothing to pool.
        "more CNN blocks than the frame holds",
        tiny_params(model={"conv_layers": 3}),
        [
            "model.conv_layers: 3 blocks do not fit in a 8x8 frame (data.size = 8): after 2 the features "
            "are 1x1, too small for another 2x2 convolution and 2x2 pooling; at most 2 fit"
        ],
    ),
    (
        "missing conv_layers",
        without("model", "conv_layers"),
        ["model.conv_layers: missing key (expected an integer of at least 1)"],
    ),
    (
        "same seed for train and test",
        tiny_params(generate_test={"seed": 11}),
        ["generate_train.seed: 11 is also generate_test.seed", "give each its own seed"],
    ),
]


@pytest.mark.parametrize(("case_id", "params", "needles"), BAD_PARAMS, ids=[case[0] for case in BAD_PARAMS])
def test_bad_params_are_refused_with_one_line_naming_the_file_and_key(tmp_path, case_id, params, needles):
    path = tmp_path / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_params(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match=r"nope\.yaml: params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_undecodable_file_names_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"data:\n  size: \xff\xfe\n")
    with pytest.raises(InputError, match=r"params\.yaml: cannot read params file"):
        load_params(path)


def test_the_projects_params_and_tiny_params_are_valid(tmp_path):
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert (params.data.size, params.train.batch_size, params.train.learning_rate) == (50, 32, 0.001)
    tiny = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    assert tiny.model.lstm_units == 4


def test_integers_are_accepted_where_a_float_is_expected(tmp_path):
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params(train={"learning_rate": 1})))
    assert params.train.learning_rate == 1.0 and isinstance(params.train.learning_rate, float)


def test_the_largest_seed_and_size_are_accepted(tmp_path):
    params = load_params(
        write_params(tmp_path / "params.yaml", tiny_params(data={"size": 255}, train={"seed": MAX_SEED}))
    )
    assert (params.data.size, params.train.seed) == (255, MAX_SEED)


def test_as_many_cnn_blocks_as_the_frame_holds_are_accepted(tmp_path):
    # 8 -> 7 -> 3 -> 2 -> 1: two 2x2 blocks fit in an 8x8 frame (the third is refused above).
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params(model={"conv_layers": 2})))
    assert params.model.conv_layers == 2
    assert params.model.block_sides(8) == [(7, 3), (2, 1)]
    assert params.model.features(8) == 1 * 1 * 2
