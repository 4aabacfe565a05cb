"""Keeps README.md and docs/*.md true mechanically.

Every `python -m stages|bench|reproduction|experiments.NAME ...` command shown names a module whose
--help lists each flag used; every `bash run.sh JOB ...` names a job and options run.sh
takes; every `-S key=value` names a params.yaml key and a value that validates; every
relative link, and every repository path shown in code, exists (or is a git-ignored
output). The README links every page of docs/, its copy of metrics.json is the committed
file's, and the output the docs quote from docs/workflows.log is in that log. A unit test runs the same checks on a deliberately bad snippet.
"""

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from movingline.errors import InputError
from movingline.params import load_params

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

MODULE_COMMAND = re.compile(r"python -m ((?:stages|bench|reproduction|experiments)\.\w+)((?:\s+[^\s|;&#)`]+)*)")
RUN_SH_COMMAND = re.compile(r"bash run\.sh(?:\s+([^\s|;&#)`]+))?((?:\s+[^\s|;&#)`]+)*)")
RUN_SH_JOBS = {"setup": {"--dev", "--gpu"}, "repro": None, "verify": "reproduction.verify", "test": None, "bench": "bench.benchmark",
               "fingerprint": "reproduction.fingerprint", "serve": "movingline.inference.server"}
OVERRIDE = re.compile(r"-S\s+'?([\w.]+)=([^\s'`]+)'?")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# Repository paths shown in code: under a top-level folder, or a top-level config file.
TOP_FOLDERS = "stages|movingline|tests|bench|reproduction|experiments|scripts|report|docs|plots|data|models|\\.ci|\\.dvc"
PATH = re.compile(rf"^(?:\./)?(?:(?:{TOP_FOLDERS})/[\w./-]*|[\w.-]+\.(?:yaml|lock|toml|txt))$")
# Shown as examples, not as files of this checkout: placeholders, and files the docs' history mentions.
PLACEHOLDER = re.compile(r"X\b|NAME|\.\.\.|[*{<]")
HISTORICAL_PATHS = {"movingline/chunks.py"}  # the hand-written deflate encoder, removed in commit c0b8282


def code_of(text: str) -> list[str]:
    """The code a Markdown text shows: each fenced or indented block's commands and each inline span.

    In blocks, a leading `$ ` prompt and `\\` line continuations are undone; output lines
    (in a console block, those without a prompt) are left out.
    """
    pieces, block, fence, console = [], [], None, False
    for line in text.splitlines():
        marker = re.match(r"^\s*(```+|~~~+)(\w*)", line)
        if fence is None and marker:
            fence, console, block = marker.group(1), marker.group(2) == "console", []
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                pieces.extend(_commands(block, console))
                fence = None
            else:
                block.append(line)
            continue
        if line.startswith("    ") and line.strip():
            pieces.extend(_commands([line], console=False))
    inline = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    pieces.extend(" ".join(span.split()) for span in inline)
    return pieces


def _commands(lines: list[str], console: bool) -> list[str]:
    commands, current = [], ""
    for line in lines:
        stripped = line.strip()
        if console:
            if current:
                current += " " + stripped
            elif stripped.startswith("$ "):
                current = stripped[2:]
            else:
                continue
        else:
            current = (current + " " + stripped) if current else stripped
        if current.endswith("\\"):
            current = current[:-1]
            continue
        commands.append(current)
        current = ""
    return commands


@functools.cache
def accepted_flags(module: str) -> frozenset[str] | None:
    """The options ``python -m MODULE --help`` lists, or None when the module does not run."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        return None
    usage = re.sub(r"python -m [\w.]+", "", result.stdout)  # the program's name, not an option
    return frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", usage))


def _flags(arguments: str) -> list[str]:
    return [token.split("=")[0] for token in arguments.split() if token.startswith("-") and token != "-"]


def check_command(command: str) -> list[str]:
    """What is wrong with the module and run.sh commands in one piece of code."""
    problems = []
    for module, arguments in MODULE_COMMAND.findall(command):
        if PLACEHOLDER.search(module):
            continue
        flags = accepted_flags(module)
        if flags is None:
            problems.append(f"`python -m {module}`: no such module (its --help fails)")
            continue
        problems += [f"`python -m {module}`: no option {flag}" for flag in _flags(arguments) if flag not in flags]
    for job, arguments in RUN_SH_COMMAND.findall(command):
        if not job or job.startswith("-"):
            continue
        if job not in RUN_SH_JOBS:
            problems.append(f"`bash run.sh {job}`: no such job (run.sh has {', '.join(RUN_SH_JOBS)})")
            continue
        accepted = RUN_SH_JOBS[job]
        if isinstance(accepted, str):
            accepted = accepted_flags(accepted)
        if accepted is not None:
            problems += [f"`bash run.sh {job}`: no option {flag}" for flag in _flags(arguments) if flag not in accepted]
    return problems


def check_override(key: str, value: str, tmp_path: Path) -> str | None:
    """Why ``-S key=value`` (a comma-separated value is a sweep) is not a valid change of params.yaml."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    section, _, name = key.partition(".")
    if section not in raw or not isinstance(raw[section], dict) or name not in raw[section]:
        return f"-S {key}={value}: params.yaml has no key {key}"
    for one in value.split(","):
        raw[section][name] = yaml.safe_load(one)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        try:
            load_params(path)
        except InputError as error:
            return f"-S {key}={value}: {error}"
    return None


@functools.cache
def ignored_by_git(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode == 0


def check_paths(code: str) -> list[str]:
    """Repository paths shown in ``code`` that neither exist nor are git-ignored outputs."""
    problems = []
    for token in re.split(r"[\s=,:;()\"']+", code):
        token = token.rstrip(".")
        if not PATH.match(token) or PLACEHOLDER.search(token) or token in HISTORICAL_PATHS:
            continue
        if not (ROOT / token).exists() and not ignored_by_git(token):
            problems.append(f"path {token}: not in the repository")
    return problems


def _anchor(heading: str) -> str:
    """GitHub's id for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def check_links(text: str, doc: Path) -> list[str]:
    """Relative links (and their #anchors) in ``text`` whose target does not exist."""
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (doc.parent / file_part) if file_part else doc
        if not destination.exists():
            problems.append(f"link {target}: {destination.relative_to(ROOT) if destination.is_relative_to(ROOT) else destination} does not exist")
            continue
        if anchor and destination.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", destination.read_text(encoding="utf-8"), flags=re.M)
            if anchor not in {_anchor(heading) for heading in headings}:
                problems.append(f"link {target}: no heading #{anchor} in {destination.name}")
    return problems


def check_doc(text: str, doc: Path, tmp_path: Path) -> list[str]:
    """Every problem the checks find in one document."""
    problems = check_links(text, doc)
    for code in code_of(text):
        problems += check_command(code)
        problems += check_paths(code)
    for key, value in OVERRIDE.findall(text):
        if "." not in key:  # `-S key=value` as a pattern, not an example
            continue
        problem = check_override(key, value, tmp_path)
        if problem:
            problems.append(problem)
    return sorted(set(problems))


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_doc_commands_params_links_and_paths_exist(doc: Path, tmp_path: Path):
    assert check_doc(doc.read_text(encoding="utf-8"), doc, tmp_path) == []


def test_readme_links_every_doc():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(readme)}
    assert [str(doc.relative_to(ROOT)) for doc in DOCS[1:] if doc.resolve() not in linked] == []


def test_readme_metrics_are_the_committed_metrics_json():
    # HEAD's copy, not the working tree's: a `dvc repro` on a machine that computes other bits
    # rewrites metrics.json there (docs/reproducibility.md), and the README shows the committed run.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"\$ cat metrics\.json\n(\{.*?\n\})", readme, flags=re.S)
    assert shown, "README.md shows no `cat metrics.json`"
    committed = subprocess.run(["git", "show", "HEAD:metrics.json"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(shown.group(1)) == json.loads(committed.stdout)


def shown_output(text: str) -> list[str]:
    """The output lines (not the `$ ` commands) of a text's console blocks, stripped."""
    lines = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        lines += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("$ ")]
    return lines


def missing_from_log(lines: list[str], log: str) -> list[str]:
    """The lines not found in ``log``; `...` in a line stands for any text, alone for trimmed lines."""
    logged = {line.strip() for line in log.splitlines()}
    missing = []
    for line in lines:
        if line == "...":
            continue
        pattern = re.compile(".*".join(map(re.escape, line.split("..."))))
        if line not in logged and not any(pattern.fullmatch(entry) for entry in logged):
            missing.append(line)
    return missing


def test_output_shown_in_the_docs_is_in_the_workflow_log():
    """Output quoted from docs/workflows.log is still there: rerunning scripts/record_workflows.sh
    after a change that moves the digits makes this fail until the excerpts are copied again."""
    log = (ROOT / "docs" / "workflows.log").read_text(encoding="utf-8")
    experiments = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    predict = [block for block in re.findall(r"```console\n.*?```", readme, flags=re.S) if "stages.predict" in block]
    assert predict, "README.md shows no predict output"
    assert missing_from_log(shown_output(experiments) + shown_output("\n".join(predict)), log) == []


def test_figures_cited_from_the_workflow_log_match_it():
    """The README's setup and repro times, and the commit and date both pages name, are the log's."""
    log = (ROOT / "docs" / "workflows.log").read_text(encoding="utf-8")
    commit = re.search(r"^# commit: (\w+)", log, flags=re.M).group(1)
    date = re.search(r"^# date: ([\d-]+)", log, flags=re.M).group(1)
    setup = re.search(r"^\$ bash run\.sh setup\n(?:.*\n)*?\[took (\d+) s\]", log, flags=re.M).group(1)
    repro = re.search(r"^\$ dvc repro\n(?:.*\n)*?\[took (\d+) s\]", log, flags=re.M).group(1)
    training = re.search(r"^trained \d+ steps in ([\d.]+) s", log, flags=re.M).group(1)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = {line.split("|")[1].strip(): line.split("|")[2] for line in readme.splitlines() if line.startswith("| `")}
    assert f"commit {commit}, {date}" in readme
    assert row["`bash run.sh setup` (create `.venv`, install `requirements.lock`)"].strip().startswith(f"{setup} s")
    assert row["`dvc repro` at the default params"].strip() == f"{repro} s, of which training {round(float(training))} s"
    experiments = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    assert f"({commit}) and the date ({date})" in experiments


def test_log_check_reports_a_line_that_is_not_in_the_log():
    log = "$ dvc metrics diff\nmetrics.json  loss      0.00109  0.00039      -0.00071\nfile:///tmp/WORK/x/index.html\n"
    shown = ["metrics.json  loss      0.00109  0.00039      -0.00071", "file:///.../index.html", "...", "accuracy 0.9"]
    assert missing_from_log(shown, log) == ["accuracy 0.9"]


BAD_SNIPPET = """\
Run `python -m stages.train --no-such-flag` or `python -m stages.nope`, then
`bash run.sh setup --cuda` and `bash run.sh deploy`.

```console
$ dvc exp run -S train.batch_sise=8 -S 'train.epochs=1,0'
$ python -m bench.benchmark --size 50 \\
    --samples 10
```

See [the format](data-format.md#no-such-heading), [gone](missing.md) and `movingline/nothing.py`.
"""


def test_checker_reports_each_bad_command_key_value_link_and_path(tmp_path: Path):
    problems = check_doc(BAD_SNIPPET, ROOT / "docs" / "bad.md", tmp_path)
    expected = [
        "`python -m stages.train`: no option --no-such-flag",
        "`python -m stages.nope`: no such module",
        "`bash run.sh setup`: no option --cuda",
        "`bash run.sh deploy`: no such job",
        "-S train.batch_sise=8: params.yaml has no key train.batch_sise",
        "-S train.epochs=1,0: ",
        "`python -m bench.benchmark`: no option --samples",
        "link data-format.md#no-such-heading: no heading #no-such-heading",
        "link missing.md: docs/missing.md does not exist",
        "path movingline/nothing.py: not in the repository",
    ]
    for start in expected:
        assert any(problem.startswith(start) for problem in problems), (start, problems)
    assert len(problems) == len(expected), problems


def test_checker_accepts_good_snippet(tmp_path: Path):
    good = (
        "`python -m stages.predict --model models/model.keras --input data/test.h5 --output out.csv`, "
        "`dvc exp run -S 'model.lstm_units=25,100'`, [install](install.md#the-requirements-files), "
        "`movingline/data/dataset.py`, `plots/roc.json`\n\n    python -m stages.train --local-workers 2\n"
    )
    assert check_doc(good, ROOT / "docs" / "good.md", tmp_path) == []
