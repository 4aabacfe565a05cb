"""A grid of experiments: `dvc exp run -S` specs expanded into named combinations, checked before anything runs.

The sweep's grid is expanded by DVC's own code (the Hydra sweeper behind `dvc exp run
--queue -S`), so `-S key=1,2`, `range(...)` and `choice(...)` mean here what they mean to
DVC; the learning curve names its combinations itself (``Combination.of``). Each combination
is checked by applying it to a copy of params.yaml the way DVC will, then loading that copy
with the project's params loader.
"""

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from movingline.errors import InputError
from movingline.params import load_params

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Combination:
    """One experiment of a grid: its name and the `-S` overrides (per params file) that make it."""

    name: str
    overrides: tuple[tuple[str, str], ...]  # (params file, "key=value"), in the order given

    @classmethod
    def of(cls, name: str, settings: dict[str, object]) -> "Combination":
        """The experiment ``name`` that sets ``settings`` (key -> value) in params.yaml."""
        return cls(name, tuple((PARAMS_FILE, f"{key}={value}") for key, value in settings.items()))

    def set_params(self) -> list[str]:
        """The `-S` arguments of `dvc exp run` for this combination."""
        return [arg for path, override in self.overrides for arg in ("-S", _qualified(path, override))]

    def describe(self) -> str:
        return " ".join(_qualified(path, override) for path, override in self.overrides)


def _qualified(path: str, override: str) -> str:
    return override if path == PARAMS_FILE else f"{path}:{override}"


def expand(specs: list[str]) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the `-S` specs, as DVC's queue would make them."""
    for spec in specs:
        # One at a time first, so that a spec that cannot be parsed is the one named.
        _sweeps([spec])
    return [tuple((path, override) for path, overrides in sweep.items() for override in overrides)
            for sweep in _sweeps(specs)]


def _sweeps(specs: list[str]) -> list[dict[str, list[str]]]:
    from dvc.exceptions import DvcException
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps
    from hydra.errors import HydraException

    try:
        return get_hydra_sweeps(to_path_overrides(specs))
    except (DvcException, HydraException) as error:
        # Hydra's message: "Error parsing override '...'", the parser's complaint, a link.
        reason = [line for line in str(error).splitlines()
                  if line.strip() and not line.startswith(("Error parsing override", "See https://"))]
        raise InputError(f"-S {' '.join(specs)}: expected KEY=VALUE[,VALUE...] as `dvc exp run -S` takes"
                         f"{' (' + ' '.join(reason) + ')' if reason else ''}{_cause(error)}") from None


def _cause(error: BaseException) -> str:
    return f" ({' '.join(str(error.__cause__).split())})" if error.__cause__ else ""


def name_of(prefix: str, overrides: tuple[tuple[str, str], ...]) -> str:
    """A name that the same overrides always get, so that a rerun finds what is done."""
    digest = hashlib.sha1(repr(sorted(overrides)).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}"


def combinations(specs: list[str], prefix: str) -> list[Combination]:
    """The grid of ``specs``, each combination named PREFIX-HASH of its settings."""
    grid = expand(specs)
    named = [Combination(name_of(prefix, overrides), overrides) for overrides in grid]
    if len({combination.name for combination in named}) != len(named):
        raise InputError("-S: the same combination is given twice")
    return named


def problem_of(combination: Combination, params: Path) -> str | None:
    """Why ``combination`` cannot run on ``params`` (the user's params.yaml), or None."""
    from dvc.exceptions import DvcException
    from dvc.utils.hydra import apply_overrides

    ours = [override for path, override in combination.overrides if path == PARAMS_FILE]
    with tempfile.TemporaryDirectory(prefix="sweep-params-") as folder:
        copy = Path(folder) / PARAMS_FILE
        shutil.copyfile(params, copy)
        try:
            apply_overrides(copy, ours)
            load_params(copy)
        except DvcException as error:
            return f"{error}{_cause(error)}"
        except InputError as error:
            # The loader names the file it read: the temporary copy, which means nothing to the user.
            return str(error).replace(str(copy), PARAMS_FILE)
    return None


def check_all(grid: list[Combination], params: Path) -> None:
    """Refuses the grid, naming every combination that cannot run and why."""
    bad = [(combination, problem_of(combination, params)) for combination in grid]
    bad = [(combination, problem) for combination, problem in bad if problem]
    if bad:
        reasons = "; ".join(f"[{combination.describe()}] {problem}" for combination, problem in bad)
        raise InputError(f"{len(bad)} of {len(grid)} combinations cannot run, nothing was started: {reasons}")
