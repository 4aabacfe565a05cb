"""Writes each stage's code deps in dvc.yaml from what its script imports; --check only compares.

    python -m scripts.stage_deps            # after moving a module or adding a stage: rewrite dvc.yaml's code deps
    python -m scripts.stage_deps --check    # exit 1 naming each stage and file that disagree; writes nothing

A stage whose cmd runs `python -m stages.NAME` depends on stages/NAME.py and every project
module it imports, directly or through other project modules: movingline.training.checkpoint.code_files,
the walker that the train stage's checkpoint key uses too, so the two cannot disagree. The
other deps (data files, a model) keep their places, and dvc.yaml keeps its comments and order
(ruamel.yaml's round trip, as `dvc stage add` edits it); a stage whose code deps already agree
is left byte for byte. tests/test_pipeline.py runs the same check.

Exact files, not whole wings (measured at 9c3005a: today's modules mapped to the planned wings, over
the 54 of the 206 commits up to it that changed a file some stage runs): wing deps would have
rerun train 1, evaluate 3, predict 2 and export 1 time for nothing, since each imports only part of a
wing (train the data wing's reader, not its generator); generate_* import all of theirs and import no
training module, so they would rerun needlessly under neither.
"""

import argparse
import io
import os
import re
import sys
import tempfile
from pathlib import Path

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedSeq

from movingline.training.checkpoint import code_files

STAGE_COMMAND = re.compile(r"\bpython3?\s+-m\s+(stages\.\w+)")


class DepsError(Exception):
    """dvc.yaml cannot be read as a pipeline, or a stage's script is missing: one line, exit status 2."""


def round_trip() -> YAML:
    """ruamel.yaml set to dvc.yaml's layout, so that loading and dumping it gives back its bytes."""
    yaml = YAML()
    yaml.width = 4096  # never re-wrap a long command
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def is_code(dep: object) -> bool:
    return isinstance(dep, str) and dep.endswith(".py")


def stage_script(cmd: object) -> str | None:
    """The stage script a dvc.yaml cmd runs (stages/NAME.py), or None when it runs no `python -m stages.NAME`."""
    text = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
    found = STAGE_COMMAND.search(text)
    return found.group(1).replace(".", "/") + ".py" if found else None


def code_deps(root: Path, script: str) -> list[str]:
    """``script`` and the project modules it imports, as paths under ``root``: the script first, then
    its own folder's other files, then the library's, each sorted."""
    entry = root / script
    if not entry.is_file():
        raise DepsError(f"{entry}: no such file (a stage's cmd runs it)")
    try:
        paths = [path.relative_to(root.resolve()).as_posix() for path in code_files(entry)]
    except ValueError:
        raise DepsError(f"{entry}: imports modules outside {root} (run this from the checkout that holds it)") from None
    folder = script.split("/")[0]
    return sorted(paths, key=lambda path: (path != script, path.split("/")[0] != folder, path))


def load(path: Path):
    try:
        pipeline = round_trip().load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DepsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DepsError(f"{path}: cannot be read: {error}") from None
    except YAMLError as error:
        mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise DepsError(f"{path}: not valid YAML: {problem or ' '.join(str(error).split())}{at}") from None
    if not isinstance(pipeline, dict) or not isinstance(pipeline.get("stages"), dict):
        raise DepsError(f"{path}: not a pipeline: expected a mapping with a 'stages' mapping")
    for name, stage in pipeline["stages"].items():
        if not isinstance(stage, dict) or not isinstance(stage.get("deps", []), list):
            raise DepsError(f"{path}: stage {name}: expected a mapping whose deps are a list")
    return pipeline


def derived(path: Path, pipeline) -> dict[str, tuple[list[str], list[str]]]:
    """Per stage that runs a stage script: (the code deps dvc.yaml lists, the code deps its imports give)."""
    result = {}
    for name, stage in pipeline["stages"].items():
        script = stage_script(stage.get("cmd", ""))
        if script is not None:
            listed = [dep for dep in stage.get("deps", []) if is_code(dep)]
            result[name] = (listed, code_deps(path.parent, script))
    return result


def disagreements(path: Path) -> list[str]:
    """One line per stage whose code deps in ``path`` differ from what its script imports; none when all agree."""
    lines = []
    for name, (listed, wanted) in derived(path, load(path)).items():
        missing = [dep for dep in wanted if dep not in listed]
        extra = [dep for dep in listed if dep not in wanted]
        if missing:
            lines.append(f"{name}: imports but does not list {', '.join(missing)}")
        if extra:
            lines.append(f"{name}: lists but does not import {', '.join(extra)}")
    return lines


def replace_code_deps(deps: CommentedSeq, wanted: list[str]) -> None:
    """Puts ``wanted`` where the code deps were (after the other deps that came before them), keeping the
    other deps and every comment: each stays after the dep it followed, or after the last code dep where
    that dep is gone."""
    items, notes = list(deps), dict(deps.ca.items)
    first = next((index for index, dep in enumerate(items) if is_code(dep)), len(items))
    before = [items[index] for index in range(first) if not is_code(items[index])]
    after = [items[index] for index in range(first, len(items)) if not is_code(items[index])]
    note_of = {items[index]: note for index, note in notes.items() if items[index] in wanted or not is_code(items[index])}
    orphans = [note for index, note in sorted(notes.items()) if is_code(items[index]) and items[index] not in wanted]
    deps.clear()
    deps.ca.items.clear()
    deps.extend(before + wanted + after)
    for index, dep in enumerate(deps):
        if dep in note_of:
            deps.ca.items[index] = note_of[dep]
    if orphans and wanted:
        last = len(before) + len(wanted) - 1
        deps.ca.items.setdefault(last, orphans[-1])


def write(path: Path) -> list[str]:
    """Rewrites the code deps of every stage whose listed ones differ from its imports; returns what changed."""
    pipeline = load(path)
    changes = []
    for name, (listed, wanted) in derived(path, pipeline).items():
        if set(listed) == set(wanted):
            continue
        stage = pipeline["stages"][name]
        if "deps" not in stage:
            stage.insert(list(stage).index("cmd") + 1 if "cmd" in stage else 0, "deps", CommentedSeq())
        replace_code_deps(stage["deps"], wanted)
        added, removed = sorted(set(wanted) - set(listed)), sorted(set(listed) - set(wanted))
        parts = [f"added {', '.join(added)}"] if added else []
        changes.append(f"{name}: " + "; ".join(parts + ([f"removed {', '.join(removed)}"] if removed else [])))
    if changes:
        text = io.StringIO()
        round_trip().dump(pipeline, text)
        # A temporary file renamed into place: an interrupted write never leaves half a dvc.yaml.
        temporary = {"dir": path.parent, "prefix": ".dvc.yaml.", "delete": False}
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", **temporary) as new:
            new.write(text.getvalue())
        os.replace(new.name, path)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.stage_deps", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only: exit 1 if a stage's code deps disagree")
    parser.add_argument("--file", type=Path, default=Path("dvc.yaml"), help="the pipeline (default: dvc.yaml)")
    args = parser.parse_args()
    try:
        if args.check:
            problems = disagreements(args.file)
            for line in problems:
                print(f"{args.file}: {line}")
            print(f"{args.file}: code deps {'disagree with' if problems else 'agree with'} the stages' imports"
                  + ("; run python -m scripts.stage_deps" if problems else ""))
            sys.exit(1 if problems else 0)
        changes = write(args.file)
    except DepsError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    for line in changes:
        print(f"{args.file}: {line}")
    if not changes:
        print(f"{args.file}: code deps agree with the stages' imports; unchanged")


if __name__ == "__main__":
    main()
