"""Learning curves through DVC's experiment queue: test accuracy against training sequences.

Queues one DVC experiment per model, training budget (generate_train.n_samples) and
training seed (train.seed), runs the queue with `dvc queue start --jobs N`, waits for it,
and collects test accuracy and loss from `dvc exp show --json` and each run's training
time from its queue log. Writes a per-run CSV, a Markdown summary (mean and worst over
seeds), a PNG of the curves, and the answer: the smallest budget at which each model
reaches ACCURACY_GOAL on every seed. See docs/learning-curve.md.

Run from the project root, in the project's environment:
    python -m experiments.learning_curve [--jobs N] [--fresh] [--smoke]

Experiments are named PREFIX-MODEL-nBUDGET-sSEED and are based on the current commit.
Finished ones of those names are reused (a rerun resumes), failed ones are queued again;
no other experiment is touched. Experiments already queued by someone else stop the script
before it queues anything, since `dvc queue start` would run them too.
"""

import argparse
import csv
import dataclasses
import json
import logging
import re
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from movingline.cli import run_stage
from movingline.errors import InputError
from movingline.params import ModelParams, load_params
from movingline.runtime import THREADS_VARIABLE, thread_share

log = logging.getLogger("learning_curve")

ACCURACY_GOAL = 0.99

# Each model is the reference params.yaml with these params set (dvc exp run -S).
# The reference spends 91% of its arithmetic in the LSTM's input projection from 1,152
# features per frame; a second CNN block shrinks that to 242 (240,661 -> 58,679 weights),
# so there are fewer weights to fit from few sequences. A batch of 8 instead of 32 gives
# four times as many Adam updates from the same sequences. One change per variant keeps
# their effects apart; three models keep the whole grid to 45 runs.
MODELS: dict[str, dict[str, object]] = {
    "reference": {},
    "deep2": {"model.conv_layers": 2},
    "batch8": {"train.batch_size": 8},
}
BUDGETS = (250, 500, 1000, 2000, 5000)
SEEDS = (3, 4, 5)  # train.seed; 3 is the reference's
PREFIX = "lc"

# A smoke run: the same grid machinery on tiny sequences, in a minute or two per job.
SMOKE_BUDGETS = (16, 32)
SMOKE_SEEDS = (3, 4)
SMOKE_PREFIX = "lcsmoke"
SMOKE_PARAMS: dict[str, object] = {
    "data.size": 8,
    "generate_test.n_samples": 40,
    "model.lstm_units": 4,
    "train.learning_rate": 0.01,
}

DEFAULT_CSV = Path("docs/learning-curve.csv")
DEFAULT_PNG = Path("docs/learning-curve.png")
DEFAULT_DOC = Path("docs/learning-curve.md")
BEGIN_MARK = "<!-- learning-curve results: begin (written by python -m experiments.learning_curve) -->"
END_MARK = "<!-- learning-curve results: end -->"

# The train stage's last line, e.g. "trained 157 steps in 14.2 s (352 sequences/s)".
TRAINED_LINE = re.compile(r"trained (\d+) steps in ([0-9.]+) s\b")
# Without it, Keras's per-epoch line at verbose=2, e.g. "157/157 - 15s - 95ms/step - ...":
# whole seconds only.
KERAS_EPOCH_LINE = re.compile(r"^\s*\d+/\d+ - (\d+)s - ", re.MULTILINE)

QUEUED_STATES = {"queued", "running"}
# `dvc exp show` can fail while a queue worker removes a finished run's temporary copy
# ("directory '.dvc/tmp/exps/tmp.../.dvc' does not exist"); the next poll no longer sees it.
POLL_RETRIES = 5


@dataclass(frozen=True)
class Run:
    """One experiment of the grid."""

    model: str
    budget: int
    seed: int
    prefix: str

    @property
    def name(self) -> str:
        return f"{self.prefix}-{self.model}-n{self.budget}-s{self.seed}"


@dataclass(frozen=True)
class Result:
    run: Run
    accuracy: float
    loss: float
    train_seconds: float | None
    time_source: str
    parameters: int
    test_set: str  # e.g. "1000 sequences, generate_test.seed = 2"


def grid(models: dict[str, dict], budgets: tuple[int, ...], seeds: tuple[int, ...], prefix: str) -> list[Run]:
    """Every run, budget by budget, so that runs sharing a training set follow each other
    (generate_train then comes from DVC's run-cache after its first run)."""
    return [Run(model, budget, seed, prefix) for budget in budgets for model in models for seed in seeds]


def set_params(run: Run, models: dict[str, dict], base: dict[str, object]) -> dict[str, object]:
    """The params a run sets: the base overrides, the model's, then its budget and seed."""
    return {**base, **models[run.model], "generate_train.n_samples": run.budget, "train.seed": run.seed}


def training_seconds(log_text: str) -> tuple[float | None, str]:
    """A run's training time from its queue log, and where it came from."""
    trained = TRAINED_LINE.findall(log_text)
    if trained:
        return float(trained[-1][1]), "train stage"
    epochs = KERAS_EPOCH_LINE.findall(log_text)
    if epochs:
        return float(sum(int(seconds) for seconds in epochs)), "keras epoch lines (whole s)"
    return None, "none (train restored from the run-cache?)"


# --- DVC and git ---------------------------------------------------------------------------


def command(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise InputError(f"`{' '.join(args)}` failed: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    # The dvc beside this interpreter: the project's environment, whatever PATH says.
    return command([str(Path(sys.executable).parent / "dvc"), *args], check=check)


def experiments(baseline: str) -> dict[str, dict]:
    """Experiments based on ``baseline`` by name: state, params and metrics (as `dvc exp show --json`)."""
    found = {}
    for entry in json.loads(dvc("exp", "show", "--json", "--no-fetch").stdout):
        if entry.get("rev") != baseline:
            continue
        for experiment in entry.get("experiments") or []:
            data = experiment["revs"][0].get("data") or {}
            found[experiment["name"]] = {
                "state": (experiment.get("executor") or {}).get("state") or "success",
                "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {},
                "metrics": ((data.get("metrics") or {}).get("metrics.json") or {}).get("data") or {},
            }
    return found


def check_workspace(outputs: list[Path]) -> str:
    """The commit experiments will start from; refuses a workspace with uncommitted changes
    (other than this script's outputs), since queued runs would carry them."""
    if not (Path("dvc.yaml").is_file() and Path("params.yaml").is_file()):
        raise InputError(f"{Path.cwd()}: not the project root (no dvc.yaml and params.yaml here)")
    changed = command(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.splitlines()
    ours = {str(path) for path in outputs}
    changed = [line[3:] for line in changed if line[3:] not in ours]
    if changed:
        raise InputError(
            f"{changed[0]}: uncommitted change; commit or stash it first, so that every experiment "
            "runs the committed code"
        )
    return command(["git", "rev-parse", "HEAD"]).stdout.strip()


def queued_elsewhere(queue_status: str, names: set[str]) -> list[str]:
    """Tasks that `dvc queue status` lists as queued and that are not ``names`` (by name, else task id).

    Its rows read "TASK  NAME  CREATED  STATUS"; any base commit's queued experiments are listed.
    """
    found = []
    for line in queue_status.splitlines():
        words = line.split()
        if len(words) >= 3 and words[-1] == "Queued" and words[1] not in names:
            found.append(words[1] if not words[1][:1].isdigit() else words[0])
    return found


def prepare_queue(runs: list[Run], existing: dict[str, dict], queue_status: str, fresh: bool) -> list[Run]:
    """The runs still to queue. Removes our own failed (or, with ``fresh``, all our) experiments;
    refuses if experiments not ours are queued."""
    names = {run.name for run in runs}
    foreign = queued_elsewhere(queue_status, names)
    if foreign:
        raise InputError(
            f"dvc queue: {len(foreign)} experiment(s) not from this grid are queued ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); `dvc queue start` would run them too: "
            "run them first, or remove them with `dvc exp remove --queue`"
        )
    ours = {name: info for name, info in existing.items() if name in names}
    stale = [name for name, info in ours.items() if fresh or info["state"] not in QUEUED_STATES | {"success"}]
    if any(ours[name]["state"] == "running" for name in stale):
        raise InputError("dvc queue: experiments of this grid are running; wait for them or `dvc queue kill` them")
    if stale:
        log.info("removing %d earlier experiment(s) of this grid", len(stale))
        dvc("exp", "remove", *stale)
    keep = set(ours) - set(stale)
    if keep:
        log.info("reusing %d experiment(s) of this grid already queued or done", len(keep))
    return [run for run in runs if run.name not in keep]


def queue(run: Run, params: dict[str, object]) -> None:
    settings = [argument for key, value in params.items() for argument in ("-S", f"{key}={value}")]
    dvc("exp", "run", "--queue", "--name", run.name, *settings)


def start_queue(jobs: int) -> None:
    # The workers `dvc queue start` leaves running inherit its stdout and stderr: read
    # through pipes, the call would only return once they exit, when the queue is done.
    # Each job gets its share of the cores (MOVINGLINE_THREADS, docs/scaling.md) unless the
    # user set it: jobs contending for every core run slower than jobs that share them.
    env = dict(os.environ)
    env.setdefault(THREADS_VARIABLE, str(thread_share(jobs)))
    log.info("queue workers train with %s=%s", THREADS_VARIABLE, env[THREADS_VARIABLE])
    status = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "queue", "start", "--jobs", str(jobs)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).returncode
    if status != 0:
        raise InputError(f"`dvc queue start --jobs {jobs}` failed (exit {status}); try it by hand to see why")


def wait_for(runs: list[Run], baseline: str, poll_seconds: float) -> dict[str, dict]:
    """Polls `dvc exp show` until none of ``runs`` is queued or running."""
    names = {run.name for run in runs}
    reported, failures = -1, 0
    while True:
        try:
            found = experiments(baseline)
        except InputError as error:
            failures += 1
            if failures > POLL_RETRIES:
                raise
            log.warning("polling the queue failed (%s); trying again in %g s", error, poll_seconds)
            time.sleep(poll_seconds)
            continue
        failures = 0
        pending = [name for name in names if found.get(name, {}).get("state", "queued") in QUEUED_STATES]
        done = len(names) - len(pending)
        if done != reported:
            log.info("%d/%d experiments finished", done, len(names))
            reported = done
        if not pending:
            return found
        time.sleep(poll_seconds)


def collect(runs: list[Run], found: dict[str, dict]) -> list[Result]:
    failed = [run.name for run in runs if found.get(run.name, {}).get("state") != "success"]
    if failed:
        raise InputError(
            f"{failed[0]}: experiment did not succeed ({len(failed)} of {len(runs)} failed); "
            f"see `dvc queue logs {failed[0]}`, then rerun this script to retry them"
        )
    results = []
    for run in runs:
        info = found[run.name]
        params = info["params"]
        if params["generate_train"]["n_samples"] != run.budget or params["train"]["seed"] != run.seed:
            raise InputError(f"{run.name}: its params do not match its name; rerun with --fresh")
        seconds, source = training_seconds(dvc("queue", "logs", run.name, check=False).stdout)
        model = ModelParams(**params["model"])
        results.append(
            Result(
                run,
                float(info["metrics"]["accuracy"]),
                float(info["metrics"]["loss"]),
                seconds,
                source,
                model.parameter_count(params["data"]["size"]),
                f"{params['generate_test']['n_samples']} sequences of {params['data']['size']}x"
                f"{params['data']['size']} frames, generate_test.seed = {params['generate_test']['seed']}",
            )
        )
    return results


def with_earlier_times(results: list[Result], earlier_csv: Path) -> list[Result]:
    """Fills in the training time of runs whose train stage DVC restored from its run-cache
    (same code, data and params as an earlier run, so no training and no time in the log)
    from an earlier CSV of this script, where it has that run's time."""
    if not earlier_csv.is_file():
        return results
    with open(earlier_csv, newline="", encoding="utf-8") as file:
        earlier = {
            (row["model"], int(row["train_sequences"]), int(row["train_seed"])): float(row["train_seconds"])
            for row in csv.DictReader(file)
            if row.get("train_seconds")
        }
    filled = []
    for result in results:
        key = (result.run.model, result.run.budget, result.run.seed)
        if result.train_seconds is None and key in earlier:
            result = dataclasses.replace(result, train_seconds=earlier[key], time_source=f"earlier run ({earlier_csv})")
        filled.append(result)
    return filled


# --- results -------------------------------------------------------------------------------


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
            f"| {s.model} | {s.budget:,} | {s.accuracy_mean:.4f} | {s.accuracy_worst:.4f} | {s.loss_mean:.4f} | "
            f"{s.loss_worst:.4f} | {_seconds(s.seconds_mean)} | {_seconds(s.seconds_worst)} |"
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
                f"(worst seed {_seconds(summary.seconds_worst)} s); worst accuracy {summary.accuracy_worst:.4f}."
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
        # The bar for the front page: a variant that needs at most a quarter of the
        # reference's training sequences (params.yaml's generate_train.n_samples).
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


# --- entry point ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.learning_curve", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--jobs", type=int, default=1, help="queue workers (default: %(default)s; more at once, noisier times)")
    add("--fresh", action="store_true", help="remove this grid's earlier experiments and run them all again")
    add("--smoke", action="store_true", help="tiny sequences and budgets to check the machinery (results: a temp dir)")
    add("--out-dir", type=Path, help="where to write the CSV and PNG (default: docs/, or a temp dir with --smoke)")
    add("--doc", type=Path, help="Markdown file whose results section to rewrite (default: docs/learning-curve.md)")
    parser.add_argument("--poll", type=float, default=20.0, help="seconds between queue checks (default: %(default)s)")
    args = parser.parse_args()
    if args.jobs < 1:
        raise InputError(f"--jobs: expected an integer of at least 1, found {args.jobs}")

    if args.smoke:
        budgets, seeds, prefix, base = SMOKE_BUDGETS, SMOKE_SEEDS, SMOKE_PREFIX, SMOKE_PARAMS
        out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="learning-curve-smoke-"))
        doc = args.doc
    else:
        budgets, seeds, prefix, base = BUDGETS, SEEDS, PREFIX, {}
        out_dir = args.out_dir or DEFAULT_CSV.parent
        doc = args.doc or DEFAULT_DOC
    csv_path, png_path = out_dir / DEFAULT_CSV.name, out_dir / DEFAULT_PNG.name
    if doc is not None and not doc.is_file():
        raise InputError(f"{doc}: results document not found")

    started = time.monotonic()
    baseline = check_workspace([csv_path, png_path, *([doc] if doc else [])])
    runs = grid(MODELS, budgets, seeds, prefix)
    to_queue = prepare_queue(runs, experiments(baseline), dvc("queue", "status").stdout, args.fresh)
    for index, run in enumerate(to_queue, 1):
        queue(run, set_params(run, MODELS, base))
        log.info("queued %s (%d/%d)", run.name, index, len(to_queue))
    if to_queue:
        start_queue(args.jobs)
        log.info("started %d queue worker(s); follow one run with `dvc queue logs -f NAME`", args.jobs)
    found = wait_for(runs, baseline, args.poll)
    results = with_earlier_times(collect(runs, found), csv_path)
    wall = time.monotonic() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(results, csv_path)
    plot(results, png_path)
    # The picture's link, relative to the Markdown file that shows it.
    shown_from = out_dir if doc is None else doc.parent
    png_link = Path(os.path.relpath(png_path, shown_from)).as_posix()
    section = markdown(results, MODELS, base, wall, png_link, load_params().generate_train.n_samples)
    if doc is not None:
        update_doc(doc, section)
        log.info("wrote the results section of %s", doc)
    else:
        (out_dir / "learning-curve-results.md").write_text(section, encoding="utf-8")
    print(section, end="")
    log.info("wrote %s and %s", csv_path, png_path)


if __name__ == "__main__":
    run_stage(main)
