"""Pre-flight checks: memory, disk, and files that must agree, before any work starts."""

import pytest

from pathlib import Path

from movingline.errors import InputError
from movingline.params import load_params
from movingline.preflight import (
    human_bytes,
    require_memory,
    require_model_size,
    require_prediction_fits,
    require_size,
    require_training_fits,
    walks_bytes,
)
from tests.conftest import tiny_params, write_params


def test_require_memory_names_the_key_and_both_amounts():
    require_memory(1000, "a little", "params.yaml: x")
    with pytest.raises(InputError) as caught:
        require_memory(10**18, "one batch", "params.yaml: data.size = 200")
    # The amount available varies; the rest is exact.
    assert str(caught.value).startswith("params.yaml: data.size = 200: one batch needs 1000.0 PB of memory, but only ")
    assert str(caught.value).endswith(" is available")


def test_human_bytes():
    assert [human_bytes(n) for n in (999, 1000, 1_500_000, 2.5e18)] == ["999 B", "1.0 KB", "1.5 MB", "2500.0 PB"]


def test_walks_and_prediction_checks_name_what_does_not_fit():
    assert walks_bytes(10, 50) == 10 * (50 * 18 + 32)
    with pytest.raises(InputError) as caught:
        require_prediction_fits(10**9, 1000, "params.yaml: data.size = 1000")
    assert str(caught.value).startswith(
        "params.yaml: data.size = 1000: one prediction batch of 1000000000 sequences needs 12000.0 PB of memory, but only "
    )


def test_require_training_fits_refuses_a_model_too_large_for_memory(tmp_path):
    good = write_params(tmp_path / "good.yaml", tiny_params())
    require_training_fits(load_params(good), good)
    huge = write_params(tmp_path / "huge.yaml", tiny_params(model={"lstm_units": 200_000}))
    with pytest.raises(InputError) as caught:
        require_training_fits(load_params(huge), huge)
    assert str(caught.value).startswith(
        f"{huge}: the model section with data.size = 8, train.batch_size = 16: training ("
    )


def test_require_size_names_the_data_file_and_the_params_file():
    require_size(Path("d.h5"), 8, Path("params.yaml"), 8)
    with pytest.raises(InputError) as caught:
        require_size(Path("d.h5"), 8, Path("params.yaml"), 50)
    assert str(caught.value) == (
        "d.h5: holds 8x8 frames, but params.yaml sets data.size = 50 (regenerate it with `dvc repro generate_train`)"
    )


def test_require_model_size_names_both_files_and_sizes():
    require_model_size(Path("m.keras"), 8, 8, Path("data/test.h5"))
    with pytest.raises(InputError) as caught:
        require_model_size(Path("m.keras"), 8, 6, Path("other.h5"))
    assert str(caught.value) == (
        "m.keras: the model was trained on 8x8 frames, but other.h5 holds 6x6 frames "
        "(retrain it, or give data of that size)"
    )
    with pytest.raises(InputError) as caught:
        require_model_size(Path("m.keras"), 8, 6, Path("params.yaml"), from_params=True)
    assert str(caught.value) == (
        "m.keras: the model was trained on 8x8 frames, but params.yaml sets data.size = 6 "
        "(retrain it with `dvc repro train`)"
    )
