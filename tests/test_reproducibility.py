"""Same params, same bytes: a forced rerun of the whole pipeline changes nothing.

Every output is a pure function of the code, the inputs and params.yaml: the datasets,
the model (whose .keras zip save_model normalises), the metrics, the plot data and the
pictures. So is dvc.lock, which records the hash of each.
"""

import re

import pytest

from tests.conftest import copy_repo, dvc, output_hashes

pytestmark = pytest.mark.slow

STAGES = ["generate_train", "generate_test", "train", "evaluate", "predict", "export"]


def test_forced_repro_leaves_dvc_lock_and_every_output_byte_identical(reproduced_repo, tmp_path):
    # The rerun happens in a copy at another path, so nothing may depend on where the repo lies.
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    result = dvc(repo, "repro", "--force")

    assert re.findall(r"Running stage '(\w+)'", result.stdout) == STAGES
    assert (repo / "dvc.lock").read_bytes() == (reproduced_repo / "dvc.lock").read_bytes()
    hashes = output_hashes(repo)
    assert set(hashes) >= {"data/train.h5", "data/test.h5", "models/model.keras", "metrics.json", "plots/roc.json"}
    assert hashes == output_hashes(reproduced_repo)
    assert dvc(repo, "status").stdout.strip() == "Data and pipelines are up to date."
