"""Generating a dataset: what the file holds, flat batches, and the checks before any work."""

import numpy as np
import pytest
from PIL import Image

from movingline.data.dataset import DatasetReader
from movingline.errors import InputError
from movingline.data.generate import MAX_BATCH_SAMPLES, generate_dataset, most_rendered_at_once, render_batch_size
from movingline.preflight import require_generation_fits
from movingline.params import load_params
from movingline.data.sequences import render_frames, sample_walks
from tests.conftest import tiny_params, write_params


def test_the_file_holds_the_walks_drawn_with_the_seed(tmp_path):
    generate_dataset(tmp_path / "d.h5", tmp_path / "s.png", size=7, n_samples=9, seed=21)
    walks = sample_walks(np.random.default_rng(21), 9, 7)
    with DatasetReader(tmp_path / "d.h5") as reader:
        assert (reader.info.size, reader.info.n_samples, reader.info.seed) == (7, 9, 21)
        assert np.array_equal(reader.read_frames(0, 9), render_frames(walks))
        assert np.array_equal(reader.read_labels(), walks.labels)
    assert Image.open(tmp_path / "s.png").format == "PNG"


def test_same_arguments_give_the_same_bytes(tmp_path):
    for name in ("a", "b"):
        generate_dataset(tmp_path / f"{name}.h5", tmp_path / f"{name}.png", size=6, n_samples=5, seed=1)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_batches_stay_within_32_mib_of_frames():
    assert render_batch_size(50) == MAX_BATCH_SAMPLES  # 256 x 125 KB = 32 MB
    assert render_batch_size(100) == 33  # 32 MiB // 1 MB
    assert render_batch_size(400) == 1  # one 64 MB sample still goes


def test_a_set_too_large_for_memory_is_refused_naming_the_key(tmp_path):
    path = write_params(tmp_path / "params.yaml", tiny_params(generate_test={"n_samples": 10**13}))
    params = load_params(path)
    require_generation_fits(params, path, "generate_train", tmp_path / "train.h5", most_rendered_at_once(params.data.size))
    with pytest.raises(InputError) as caught:
        require_generation_fits(params, path, "generate_test", tmp_path / "test.h5", most_rendered_at_once(params.data.size))
    assert str(caught.value).startswith(
        f"{path}: generate_test.n_samples = 10000000000000: drawing 10000000000000 random walks needs "
    )
