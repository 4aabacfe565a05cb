"""Does this workspace reproduce what HEAD records? One line per output, then one verdict.

    bash run.sh verify            # or, in the venv: python -m reproduction.verify
    python -m reproduction.verify --repo PATH

Run it after `dvc repro`. It compares the workspace's `dvc.lock` with HEAD's (the hash of
every output), and `metrics.json` and `training.json` with HEAD's copies in git. The verdict:

- bit-identical: every output has HEAD's bytes (exit status 0);
- reproduced within tolerance: another numeric environment (CPU type, kernel path, threads,
  workers or packages, as training.json records them) computed the same inputs to other
  bits: the data is identical, the accuracy and the confusion matrix equal, and the other
  metrics and the training curve within the tolerances below (exit status 0);
- not reproduced: other inputs (params, code), or numbers outside the tolerances, or other
  bits in the same environment (exit status 1).

The tolerances come from measured runs in other environments (docs/reproducibility.md).
"""

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Largest relative difference of a metric, and largest absolute difference of a training-curve
# value (loss or accuracy of one step), accepted between two numeric environments.
METRIC_TOLERANCE = 1e-3
CURVE_TOLERANCE = 1e-3
EXACT_METRICS = ("accuracy", "n_samples")
METRICS = "metrics.json"
RECORD = "training.json"
CONFUSION = "plots/confusion.json"


class VerifyError(Exception):
    """The comparison cannot be made (no git, no dvc.lock, a damaged one...): one `error:` line
    naming the file, exit status 2, and nothing else printed."""


@dataclass
class Comparison:
    """The lines to print, and what decides the verdict."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each one means "not reproduced"
    differing: list[str] = field(default_factory=list)  # outputs whose bytes differ from HEAD's

    def add(self, name: str, text: str, problem: str | None = None) -> None:
        self.lines.append((name, text))
        if problem:
            self.problems.append(problem)


def relative_difference(ours: float, theirs: float) -> float:
    if ours == theirs:
        return 0.0
    return abs(ours - theirs) / max(abs(ours), abs(theirs))


def flat(values: dict, prefix: str = "") -> dict:
    """{"train": {"seed": 3}} -> {"train.seed": 3}: one entry per param, as `-S` names them."""
    entries: dict = {}
    for key, value in values.items():
        if isinstance(value, dict):
            entries.update(flat(value, f"{prefix}{key}."))
        else:
            entries[f"{prefix}{key}"] = value
    return entries


def stage_inputs(lock: dict) -> dict[str, dict]:
    """Each stage's params and the hashes of its deps that no stage writes (code, params files)."""
    written = set(output_hashes(lock))
    return {
        name: {
            "params": {file: flat(values) for file, values in stage.get("params", {}).items()},
            "deps": {dep["path"]: dep.get("md5") for dep in stage.get("deps", []) if dep["path"] not in written},
        }
        for name, stage in lock["stages"].items()
    }


def output_hashes(lock: dict) -> dict[str, str | None]:
    return {out["path"]: out.get("md5") for stage in lock["stages"].values() for out in stage.get("outs", [])}


def model_free_outputs(lock: dict) -> set[str]:
    """The outputs of stages that run nothing trained (the datasets and their frame strips):
    no numeric environment may change them."""
    producer = {out["path"]: name for name, stage in lock["stages"].items() for out in stage.get("outs", [])}
    trained: set[str] = set()
    changed = True
    while changed:  # a stage is 'trained' if it reads a model or an output of a trained stage
        changed = False
        for name, stage in lock["stages"].items():
            reads = [producer.get(dep["path"]) for dep in stage.get("deps", [])]
            if name not in trained and (name == "train" or any(read in trained for read in reads)):
                trained.add(name)
                changed = True
    return {out["path"] for name, stage in lock["stages"].items() if name not in trained for out in stage.get("outs", [])}


def input_differences(ours: dict, head: dict) -> list[str]:
    """What the workspace's dvc.lock ran with that HEAD's did not, stage by stage."""
    differences = []
    ours_inputs, head_inputs = stage_inputs(ours), stage_inputs(head)
    for stage in sorted(set(ours_inputs) | set(head_inputs)):
        if stage not in ours_inputs or stage not in head_inputs:
            differences.append(f"stage {stage} is only in {'HEAD' if stage in head_inputs else 'the workspace'}")
            continue
        mine, theirs = ours_inputs[stage], head_inputs[stage]
        for file in sorted(set(mine["params"]) | set(theirs["params"])):
            keys = set(mine["params"].get(file, {})) | set(theirs["params"].get(file, {}))
            for key in sorted(keys):
                now, then = mine["params"].get(file, {}).get(key), theirs["params"].get(file, {}).get(key)
                if now != then:
                    differences.append(f"{stage}: param {key} is {now!r} (HEAD: {then!r})")
        for path in sorted(set(mine["deps"]) | set(theirs["deps"])):
            if mine["deps"].get(path) != theirs["deps"].get(path):
                differences.append(f"{stage}: {path} differs from HEAD's")
    return differences


def compare_metrics(ours: dict, head: dict, comparison: Comparison) -> None:
    parts, problems = [], []
    for key in sorted(set(ours) | set(head)):
        now, then = ours.get(key), head.get(key)
        if not isinstance(now, (int, float)) or not isinstance(then, (int, float)):
            if now != then:
                problems.append(f"{METRICS}: {key} is {now!r} (HEAD: {then!r})")
            continue
        difference = relative_difference(float(now), float(then))
        if difference == 0:
            parts.append(f"{key} equal")
            continue
        parts.append(f"{key} {now:.10g} (HEAD {then:.10g}, relative {difference:.1e})")
        if key in EXACT_METRICS:
            problems.append(f"{METRICS}: {key} is {now} (HEAD: {then}); it must be equal")
        elif difference > METRIC_TOLERANCE:
            problems.append(f"{METRICS}: {key} differs by {difference:.1e} relative (tolerance {METRIC_TOLERANCE:g})")
    comparison.add(METRICS, "; ".join(parts) or "no metrics")
    comparison.problems.extend(problems)


def largest_curve_difference(ours: dict, head: dict) -> tuple[str, float, int]:
    """(column, difference, step) of the largest absolute difference between two curves."""
    largest = ("loss", 0.0, 0)
    for column in ("loss", "accuracy"):
        now, then = ours.get(column, []), head.get(column, [])
        if len(now) != len(then):
            return column, float("inf"), min(len(now), len(then)) + 1
        for step, (a, b) in enumerate(zip(now, then), start=1):
            if abs(a - b) > largest[1]:
                largest = (column, abs(a - b), step)
    return largest


def describe_environment_change(ours: dict, head: dict) -> str:
    changes = [f"{key} {ours.get(key)!r} (HEAD: {head.get(key)!r})" for key in sorted(set(ours) | set(head))
               if ours.get(key) != head.get(key)]
    return "; ".join(changes)


def compare_record(ours: dict, head: dict, comparison: Comparison) -> bool:
    """Compares the training records; returns whether the numeric environments differ."""
    environment_change = describe_environment_change(ours.get("environment", {}), head.get("environment", {}))
    comparison.add("environment", f"other: {environment_change}" if environment_change else "the same as HEAD's")
    column, difference, step = largest_curve_difference(ours.get("curve", {}), head.get("curve", {}))
    if difference == float("inf"):
        comparison.add("training curve", f"{column}: another number of steps", "the training curve has another length")
    elif difference == 0:
        comparison.add("training curve", "identical (every step, unrounded)")
    else:
        problem = None
        if difference > CURVE_TOLERANCE:
            problem = f"the training curve's {column} differs by {difference:.1e} at step {step} (tolerance {CURVE_TOLERANCE:g})"
        comparison.add("training curve", f"largest difference {difference:.1e} ({column}, step {step})", problem)
    return bool(environment_change)


def git_show(repo: Path, path: str) -> str | None:
    """HEAD's copy of ``path``, or None where HEAD has none."""
    result = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=repo, capture_output=True, check=False)
    if result.returncode != 0:
        return None
    try:
        return result.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError(f"{in_head(repo, path)}: not UTF-8 text") from None


def read_workspace(repo: Path, path: str) -> str | None:
    """The workspace's copy of ``path``, or None where it has none."""
    try:
        return (repo / path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise VerifyError(f"{repo / path}: not UTF-8 text") from None
    except OSError as error:
        raise VerifyError(f"{repo / path}: cannot be read: {error.strerror}") from None


def in_head(repo: Path, path: str) -> str:
    """How messages name HEAD's copy of ``path``."""
    return f"{repo / path} in git's HEAD"


def parse_lock(text: str, where: str) -> dict:
    """A dvc.lock's text as the mapping the comparisons read: its stages, each with lists of
    deps and outs (each with a path) and its params by file. VerifyError naming ``where`` if not."""
    try:
        lock = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise VerifyError(f"{where}: not valid YAML: {problem}{at}") from None
    if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
        raise VerifyError(f"{where}: not a dvc.lock: expected a mapping with a 'stages' mapping")
    for name, stage in lock["stages"].items():
        if not isinstance(name, str) or not isinstance(stage, dict):
            raise VerifyError(f"{where}: not a dvc.lock: stage {name!r} is not a mapping")
        for key in ("deps", "outs"):
            entries = stage.get(key, [])
            if not isinstance(entries, list) or not all(
                    isinstance(entry, dict) and isinstance(entry.get("path"), str) for entry in entries):
                raise VerifyError(f"{where}: not a dvc.lock: {name}.{key} is not a list of entries with a path")
        params = stage.get("params", {})
        if not isinstance(params, dict) or not all(
                isinstance(file, str) and isinstance(values, dict) for file, values in params.items()):
            raise VerifyError(f"{where}: not a dvc.lock: {name}.params is not a mapping of files to their values")
    return lock


def parse_object(text: str, where: str, kind: str) -> dict:
    """A JSON object's text as a dict; VerifyError naming ``where`` if it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise VerifyError(f"{where}: not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise VerifyError(f"{where}: not {kind}: expected a JSON object")
    return value


def parse_record(text: str, where: str) -> dict:
    """A training record's text (environment.training_record): an environment and a curve of numbers."""
    record = parse_object(text, where, "a training record")
    if not isinstance(record.get("environment", {}), dict) or not isinstance(record.get("curve", {}), dict):
        raise VerifyError(f"{where}: not a training record: 'environment' and 'curve' must be JSON objects")
    for column in ("loss", "accuracy"):
        values = record.get("curve", {}).get(column, [])
        if not isinstance(values, list) or not all(
                isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
            raise VerifyError(f"{where}: not a training record: curve.{column} must be a list of numbers")
    return record


def pending_stages(repo: Path) -> list[str]:
    """The stages whose deps, params or outputs differ from the workspace's dvc.lock."""
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc if dvc.exists() else "dvc"), "status", "--json"], cwd=repo,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VerifyError(f"dvc status failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    return sorted(json.loads(result.stdout or "{}"))


def compare(repo: Path) -> tuple[Comparison, str]:
    """Compares the workspace at ``repo`` with its HEAD; returns the lines and the verdict."""
    head_lock_text = git_show(repo, "dvc.lock")
    if head_lock_text is None:
        raise VerifyError(f"{repo}: no dvc.lock in git's HEAD (is this a clone of the project?)")
    ours_lock_text = read_workspace(repo, "dvc.lock")
    if ours_lock_text is None:
        raise VerifyError(f"{repo / 'dvc.lock'}: missing; run dvc repro first")
    head_lock = parse_lock(head_lock_text, in_head(repo, "dvc.lock"))
    ours_lock = parse_lock(ours_lock_text, str(repo / "dvc.lock"))
    comparison = Comparison()
    pending = pending_stages(repo)
    if pending:
        comparison.problems.append(f"dvc status: {', '.join(pending)} not up to date with dvc.lock; run dvc repro")
    inputs = input_differences(ours_lock, head_lock)
    comparison.problems.extend(f"other inputs: {difference}" for difference in inputs)

    head_hashes, our_hashes = output_hashes(head_lock), output_hashes(ours_lock)
    must_match = model_free_outputs(head_lock) | {CONFUSION}
    for path in sorted(set(head_hashes) | set(our_hashes)):
        if head_hashes.get(path) == our_hashes.get(path):
            comparison.add(path, "identical")
            continue
        comparison.differing.append(path)
        if path in (METRICS, RECORD):
            continue  # compared value by value below
        problem = f"{path} differs, and no environment changes it" if path in must_match else None
        comparison.add(path, "other bytes" + (" (made by training, or from the trained model)" if not problem else ""), problem)

    other_environment = False
    if METRICS in comparison.differing:
        ours_metrics = parse_object(read_workspace(repo, METRICS) or "{}", str(repo / METRICS), "a metrics file")
        head_metrics = parse_object(git_show(repo, METRICS) or "{}", in_head(repo, METRICS), "a metrics file")
        compare_metrics(ours_metrics, head_metrics, comparison)
    head_record, our_record = git_show(repo, RECORD), read_workspace(repo, RECORD)
    if head_record is None or our_record is None:
        comparison.add(RECORD, "missing in " + ("HEAD" if head_record is None else "the workspace"),
                       None if not comparison.differing else f"{RECORD} is missing: the environments can't be compared")
    else:
        other_environment = compare_record(parse_record(our_record, str(repo / RECORD)),
                                           parse_record(head_record, in_head(repo, RECORD)), comparison)
    return comparison, verdict(comparison, other_environment)


def verdict(comparison: Comparison, other_environment: bool) -> str:
    if comparison.problems:
        return "not reproduced"
    if not comparison.differing:
        return "bit-identical"
    if not other_environment:
        comparison.problems.append("other bits in the same numeric environment as HEAD's")
        return "not reproduced"
    return "reproduced within tolerance"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("."), help="the project's workspace (default: .)")
    args = parser.parse_args()
    try:
        comparison, result = compare(args.repo)
    except VerifyError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    width = max(len(name) for name, _ in comparison.lines) if comparison.lines else 0
    print("verify: this workspace against HEAD's dvc.lock, metrics.json and training.json")
    for name, text in comparison.lines:
        print(f"  {name:<{width}}  {text}")
    for problem in comparison.problems:
        print(f"  why: {problem}")
    print(f"verdict: {result}")
    sys.exit(1 if result == "not reproduced" else 0)


if __name__ == "__main__":
    main()
