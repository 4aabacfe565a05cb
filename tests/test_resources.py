"""Memory and disk checks before any work starts."""

import pytest

from movingline.errors import InputError
from movingline.params import ModelParams
from movingline.resources import human_bytes, parameter_count, require_memory, require_prediction_fits, walks_bytes


def test_parameter_count_matches_the_built_model():
    from movingline.model import build_model

    for size, params in [(50, ModelParams(2, 2, 2, 50)), (9, ModelParams(3, 3, 2, 7)), (8, ModelParams(1, 2, 3, 5))]:
        assert parameter_count(size, params) == build_model(size, params).count_params()
    assert parameter_count(50, ModelParams(2, 2, 2, 50)) == 240_661  # SPEC section 2


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
