"""The learning-curve experiment: its grid and summaries. (`dvc exp run -S model.conv_layers=2` end to end is
test_dvc_workflows.py's exp-run test.)"""

import re
from pathlib import Path

import pytest
import yaml

from experiments.learning_curve.grid import BUDGETS, MODELS, SEEDS, Result, Run, grid, set_params
from experiments.learning_curve.report import (
    BEGIN_MARK,
    END_MARK,
    markdown,
    read_csv,
    smallest_budgets,
    summarise,
    update_doc,
    write_csv,
)
from experiments.learning_curve.results import describe_test_set, training_seconds, with_earlier_times
from movingline.errors import InputError

DOCS = Path(__file__).resolve().parents[1] / "docs"


def result(model: str, budget: int, seed: int, accuracy: float, seconds: float | None = 1.0) -> Result:
    return Result(Run(model, budget, seed, "lc"), accuracy, 1 - accuracy, seconds, "train stage", 100, "40 sequences")


def test_the_grid_covers_the_planned_budgets_seeds_and_models():
    runs = grid(MODELS, BUDGETS, SEEDS, "lc")
    assert {250, 500, 1000, 2000, 5000} <= set(BUDGETS) and len(SEEDS) >= 3 and len(MODELS) >= 3
    assert MODELS["reference"] == {}
    assert len(runs) == len({run.name for run in runs}) == len(MODELS) * len(BUDGETS) * len(SEEDS)
    # Budget by budget, so that a budget's training set is generated once and then reused.
    assert [run.budget for run in runs] == sorted(run.budget for run in runs)
    assert set_params(Run("deep2", 500, 4, "lc"), MODELS, {"data.size": 8}) == {
        "data.size": 8,
        "model.conv_layers": 2,
        "generate_train.n_samples": 500,
        "train.seed": 4,
    }


def test_training_seconds_prefers_the_train_stages_line():
    log = (
        "Running stage 'train':\n157/157 - 15s - 95ms/step - accuracy: 0.9\n"
        "trained 157 steps in 14.27 s (350 sequences/s)\n"
    )
    assert training_seconds(log) == (14.27, "train stage")
    assert training_seconds("157/157 - 15s - 95ms/step - loss: 0.1\n 2/2 - 1s - 9ms/step - loss: 0.2") == (
        16.0,
        "keras epoch lines (whole s)",
    )
    assert training_seconds("Stage 'train' is cached - skipping run")[0] is None


def test_summaries_take_mean_and_worst_and_the_answer_needs_every_seed():
    results = [
        result("reference", 250, 3, 0.98),
        result("reference", 250, 4, 1.0),
        result("reference", 500, 3, 0.99, 2.0),
        result("reference", 500, 4, 1.0, 4.0),
        result("deep2", 250, 3, 0.5),
        result("deep2", 250, 4, 0.6),
        result("deep2", 500, 3, 0.7),
        result("deep2", 500, 4, 0.8),
    ]
    summaries = summarise(results)
    order = [(s.model, s.budget) for s in summaries]
    assert order == [("reference", 250), ("reference", 500), ("deep2", 250), ("deep2", 500)]
    first = summaries[0]
    assert first.accuracy_mean == pytest.approx(0.99) and first.accuracy_worst == 0.98
    assert first.loss_worst == pytest.approx(0.02)
    answer = smallest_budgets(summaries)
    # 250 has a mean of 99% but one seed at 98%: not enough.
    reference = answer["reference"]
    assert (reference.budget, reference.seconds_mean, reference.seconds_worst) == (500, 3.0, 4.0)
    assert answer["deep2"] is None
    text = markdown(results, {"reference": {}, "deep2": {"model.conv_layers": 2}}, {}, 60.0, "curve.png", 5000)
    assert "| reference | 500 | 0.9950 | 0.9900 |" in text
    assert "- reference: 500 training sequences, 3.0 s of training (worst seed 4.0 s)" in text
    assert "- deep2: not reached up to 500 sequences." in text
    assert "`dvc exp run -S generate_train.n_samples=500` (reference)" in text
    assert "at most a quarter" not in text  # only the reference reached it
    variant_wins = [*results, result("deep2", 1000, 3, 1.0), result("deep2", 1000, 4, 0.995)]
    text = markdown(variant_wins, {"reference": {}, "deep2": {"model.conv_layers": 2}}, {}, 60.0, "c.png", 5000)
    assert "- deep2 reaches 99% on every seed with 1,000 sequences, at most a quarter of the reference's 5,000." in text
    assert "- deep2: 1,000 training sequences" in text


def test_a_run_restored_from_the_run_cache_takes_its_time_from_the_earlier_csv(tmp_path):
    write_csv([result("reference", 250, 3, 0.9, 7.5), result("reference", 250, 4, 0.9, None)], tmp_path / "lc.csv")
    restored = [result("reference", 250, 3, 0.9, None), result("reference", 250, 4, 0.9, None)]
    filled = with_earlier_times(restored, tmp_path / "lc.csv")
    assert [(r.train_seconds, r.time_source.startswith("earlier run")) for r in filled] == [(7.5, True), (None, False)]
    assert with_earlier_times(restored, tmp_path / "none.csv") == restored


def test_the_results_section_is_replaced_between_the_markers_only(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nMethod.\n\n{BEGIN_MARK}\nold results\n{END_MARK}\n\nAfter.\n", encoding="utf-8")
    update_doc(doc, "new table\n")
    assert doc.read_text(encoding="utf-8") == f"# Title\n\nMethod.\n\n{BEGIN_MARK}\nnew table\n{END_MARK}\n\nAfter.\n"
    (tmp_path / "plain.md").write_text("no markers\n", encoding="utf-8")
    with pytest.raises(InputError, match="plain.md: no results markers"):
        update_doc(tmp_path / "plain.md", "x")


def test_the_committed_csv_rebuilds_the_committed_csv_and_tables(tmp_path):
    """The report is a function of the CSV: the committed docs/learning-curve.csv gives back its
    own bytes and the results section of docs/learning-curve.md, all but the script's wall time."""
    committed_csv = DOCS / "learning-curve.csv"
    params = yaml.safe_load((DOCS.parent / "params.yaml").read_text(encoding="utf-8"))
    results = read_csv(committed_csv, describe_test_set(params))
    write_csv(results, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == committed_csv.read_bytes()
    section = markdown(results, MODELS, {}, 0.0, "learning-curve.png", params["generate_train"]["n_samples"])
    doc = (DOCS / "learning-curve.md").read_text(encoding="utf-8")
    committed = doc.split(f"{BEGIN_MARK}\n", 1)[1].split(END_MARK, 1)[0]
    wall_time = re.compile(r"this invocation of the script took [0-9.]+ min")
    assert wall_time.search(committed)
    assert wall_time.sub("", section) == wall_time.sub("", committed)


def test_tables_round_the_csvs_six_places_half_up():
    # 0.348850 is stored a hair below its decimal value, so plain formatting would round it down.
    assert f"{0.348850:.4f}" == "0.3488"
    run = Run("reference", 250, 4, "lc")
    results = [result("reference", 250, 3, 0.5), Result(run, 0.5, 0.348850, 1.0, "train stage", 100, "40 sequences")]
    results[0] = Result(results[0].run, 0.5, 0.1, 1.0, "train stage", 100, "40 sequences")
    assert "| 0.3489 | 1.0 | 1.0 |" in markdown(results, {"reference": {}}, {}, 1.0, "c.png", 5000)


def test_the_docs_page_has_the_results_markers():
    text = (DOCS / "learning-curve.md").read_text(encoding="utf-8")
    assert text.index(BEGIN_MARK) < text.index(END_MARK)
