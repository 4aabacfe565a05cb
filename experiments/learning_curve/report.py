"""The learning curve's report: per-run CSV, the Markdown tables and answer, and the picture.

Pure functions of the collected results (grid.Result); nothing here runs DVC. The CSV
round-trips: ``read_csv`` gives back the results ``write_csv`` wrote, so the tables can be
rebuilt from the committed docs/learning-curve.csv without running the grid again.
"""

import csv
import statistics
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from experiments.learning_curve.grid import ACCURACY_GOAL, Result, Run
from movingline.errors import InputError

BEGIN_MARK = "<!-- learning-curve results: begin (written by python -m experiments.learning_curve) -->"
END_MARK = "<!-- learning-curve results: end -->"

@dataclass(frozen=True)
class Summary:
    model: str
    budget: int
    parameters: int
    accuracy_mean: float
    accuracy_worst: float
    loss_mean: float
    loss_worst: float
    seconds_mean: float | None
    seconds_worst: float | None


def summarise(results: list[Result]) -> list[Summary]:
    """Mean and worst over seeds for each model and budget, in grid order."""
    groups: dict[tuple[str, int], list[Result]] = {}
    for result in results:
        groups.setdefault((result.run.model, result.run.budget), []).append(result)
    summaries = []
    for (model, budget), group in groups.items():
        seconds = [result.train_seconds for result in group]
        timed = None not in seconds
        summaries.append(
            Summary(
                model,
                budget,
                group[0].parameters,
                statistics.fmean(result.accuracy for result in group),
                min(result.accuracy for result in group),
                statistics.fmean(result.loss for result in group),
                max(result.loss for result in group),
                statistics.fmean(seconds) if timed else None,
                max(seconds) if timed else None,
            )
        )
    order = list(dict.fromkeys(result.run.model for result in results))
    return sorted(summaries, key=lambda summary: (order.index(summary.model), summary.budget))


def smallest_budgets(summaries: list[Summary]) -> dict[str, Summary | None]:
    """Per model, the smallest budget whose worst seed reaches ACCURACY_GOAL, or None."""
    answer: dict[str, Summary | None] = {}
    for summary in summaries:
        answer.setdefault(summary.model, None)
        if summary.accuracy_worst >= ACCURACY_GOAL and answer[summary.model] is None:
            answer[summary.model] = summary
    return answer


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _four_places(value: float) -> str:
    """``value`` to 4 decimal places, rounding its shortest decimal form half up.

    The CSV keeps losses to 6 places; a loss stored as 0.348850 (measured 0.3488502) must
    give the table's 0.3489 when the tables are rebuilt from the CSV, as it did from the
    measurement, where binary rounding of 0.348850 would give 0.3488.
    """
    return str(Decimal(repr(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


CSV_COLUMNS = [
    "experiment", "model", "train_sequences", "train_seed", "parameters",
    "accuracy", "loss", "train_seconds", "time_source",
]


def write_csv(results: list[Result], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in results:
            seconds = "" if r.train_seconds is None else f"{r.train_seconds:.2f}"
            row = [r.run.name, r.run.model, r.run.budget, r.run.seed, r.parameters]
            writer.writerow([*row, f"{r.accuracy:.4f}", f"{r.loss:.6f}", seconds, r.time_source])



def read_csv(path: Path, test_set: str) -> list[Result]:
    """The results a CSV of ``write_csv`` holds, in its order; ``test_set`` describes the test set
    (the CSV does not record it)."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    results = []
    for row in rows:
        model, budget, seed = row["model"], int(row["train_sequences"]), int(row["train_seed"])
        suffix = f"-{model}-n{budget}-s{seed}"
        if not row["experiment"].endswith(suffix):
            raise InputError(f"{path}: experiment {row['experiment']!r} does not end in {suffix!r}")
        run = Run(model, budget, seed, row["experiment"][: -len(suffix)])
        seconds = float(row["train_seconds"]) if row["train_seconds"] else None
        accuracy, loss = float(row["accuracy"]), float(row["loss"])
        results.append(Result(run, accuracy, loss, seconds, row["time_source"], int(row["parameters"]), test_set))
    return results

def markdown(
    results: list[Result],
    models: dict[str, dict],
    base: dict[str, object],
    wall_seconds: float,
    png_name: str,
    reference_budget: int,
) -> str:
    """The results section: models, the table by model and budget, the picture, the answer, compute."""
    summaries = summarise(results)
    seeds = sorted({result.run.seed for result in results})
    test_sets = sorted({result.test_set for result in results})
    if len(test_sets) != 1:
        raise InputError(f"dvc exp show: the runs were tested on different test sets ({'; '.join(test_sets)})")
    lines = [
        f"{len(results)} runs: {len(models)} models x {len({r.run.budget for r in results})} training budgets x "
        f"{len(seeds)} training seeds (train.seed = {', '.join(map(str, seeds))}), one epoch each; "
        f"every run tested on the same {test_sets[0]}.",
        "",
        "| model | params set | weights |",
        "|---|---|---|",
    ]
    for model, overrides in models.items():
        settings = " ".join(f"`{key}={value}`" for key, value in {**base, **overrides}.items()) or "(params.yaml)"
        weights = next(r.parameters for r in results if r.run.model == model)
        lines.append(f"| {model} | {settings} | {weights:,} |")
    lines += [
        "",
        "Test accuracy and loss over the seeds (worst = lowest accuracy, highest loss), and training time per run:",
        "",
        "| model | training sequences | accuracy mean | accuracy worst | loss mean | loss worst "
        "| training s mean | training s worst |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.model} | {s.budget:,} | {_four_places(s.accuracy_mean)} | {_four_places(s.accuracy_worst)} | "
            f"{_four_places(s.loss_mean)} | {_four_places(s.loss_worst)} | "
            f"{_seconds(s.seconds_mean)} | {_seconds(s.seconds_worst)} |"
        )
    lines += [
        "",
        f"![Test accuracy against training sequences]({png_name})",
        "",
        f"**Smallest budget with at least {ACCURACY_GOAL:.0%} test accuracy on every seed:**",
        "",
    ]
    answer = smallest_budgets(summaries)
    for model, summary in answer.items():
        if summary is None:
            largest = max(r.run.budget for r in results if r.run.model == model)
            lines.append(f"- {model}: not reached up to {largest:,} sequences.")
        else:
            lines.append(
                f"- {model}: {summary.budget:,} training sequences, {_seconds(summary.seconds_mean)} s of training "
                f"(worst seed {_seconds(summary.seconds_worst)} s); "
                f"worst accuracy {_four_places(summary.accuracy_worst)}."
            )
    reached = [s for s in answer.values() if s is not None]
    if reached:
        best = min(reached, key=lambda s: (s.budget, s.seconds_mean if s.seconds_mean is not None else float("inf")))
        chosen = {**base, **models[best.model], "generate_train.n_samples": best.budget}
        settings = " ".join(f"-S {key}={value}" for key, value in chosen.items())
        lines += [
            "",
            f"Recommended (fewest sequences to {ACCURACY_GOAL:.0%} on every seed, then least training time): "
            f"`dvc exp run {settings}` ({best.model}).",
        ]
        # The bar for naming a variant on the README's front page: at most a quarter of the
        # reference model's training sequences (params.yaml's generate_train.n_samples).
        quarter = [
            s for s in reached if s.model != "reference" and s.budget * 4 <= reference_budget
        ]
        for s in quarter:
            lines.append(
                f"- {s.model} reaches {ACCURACY_GOAL:.0%} on every seed with {s.budget:,} sequences, at most a quarter "
                f"of the reference's {reference_budget:,}."
            )
    timed = [r.train_seconds for r in results if r.train_seconds is not None]
    sources = sorted({r.time_source for r in results})
    lines += [
        "",
        f"Compute: {sum(timed):,.0f} s of training over {len(timed)} timed runs (from {', '.join(sources)}); "
        f"this invocation of the script took {wall_seconds / 60:.1f} min of wall time.",
    ]
    return "\n".join(lines) + "\n"


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    summaries = summarise(results)
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for index, model in enumerate(dict.fromkeys(s.model for s in summaries)):
        rows = [s for s in summaries if s.model == model]
        color = f"C{index}"
        budgets = [s.budget for s in rows]
        axes.plot(budgets, [s.accuracy_mean for s in rows], "-o", color=color, label=f"{model} (mean)")
        worst = [s.accuracy_worst for s in rows]
        axes.plot(budgets, worst, "--", color=color, alpha=0.7, label=f"{model} (worst seed)")
    axes.axhline(ACCURACY_GOAL, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xscale("log")
    axes.set_xticks(sorted({s.budget for s in summaries}), [f"{b:,}" for b in sorted({s.budget for s in summaries})])
    axes.minorticks_off()
    axes.set_xlabel("training sequences (one epoch)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Test accuracy against training sequences")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    pyplot.close(figure)


def update_doc(doc: Path, section: str) -> None:
    """Replaces the text between the results markers of ``doc`` with ``section``."""
    text = doc.read_text(encoding="utf-8")
    if BEGIN_MARK not in text or END_MARK not in text:
        raise InputError(f"{doc}: no results markers ({BEGIN_MARK} ... {END_MARK}) to write between")
    head, rest = text.split(BEGIN_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    doc.write_text(f"{head}{BEGIN_MARK}\n{section}{END_MARK}{tail}", encoding="utf-8")

