"""params.yaml, parsed once into frozen dataclasses and validated.

Every stage loads and validates the whole file at start-up, so a typo in any section
stops the run before work starts, with a message that names the file and the key.
There are no defaults here: every value comes from params.yaml.
"""

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from movingline.errors import InputError


def _at_least(minimum: float, *, strict: bool = False) -> dict[str, Any]:
    return {"minimum": minimum, "strict": strict}


@dataclass(frozen=True)
class DataParams:
    size: int = field(metadata=_at_least(2))


@dataclass(frozen=True)
class GenerateParams:
    n_samples: int = field(metadata=_at_least(1))
    seed: int = field(metadata=_at_least(0))


@dataclass(frozen=True)
class ModelParams:
    filters: int = field(metadata=_at_least(1))
    kernel_size: int = field(metadata=_at_least(1))
    pool_size: int = field(metadata=_at_least(1))
    lstm_units: int = field(metadata=_at_least(1))


@dataclass(frozen=True)
class TrainParams:
    seed: int = field(metadata=_at_least(0))
    batch_size: int = field(metadata=_at_least(1))
    epochs: int = field(metadata=_at_least(1))
    learning_rate: float = field(metadata=_at_least(0, strict=True))


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = field(metadata=_at_least(1))


@dataclass(frozen=True)
class PredictParams:
    n_samples: int = field(metadata=_at_least(1))
    seed: int = field(metadata=_at_least(0))


@dataclass(frozen=True)
class Params:
    data: DataParams
    generate_train: GenerateParams
    generate_test: GenerateParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    predict: PredictParams


def _unknown_key_message(where: str, key: str, expected: list[str]) -> str:
    message = f"{where}: unknown key '{key}' (expected: {', '.join(expected)})"
    close = difflib.get_close_matches(str(key), expected, n=1)
    if close:
        message += f"; did you mean '{close[0]}'?"
    return message


def _check_keys(where: str, raw: dict, expected: list[str]) -> None:
    for key in raw:
        if key not in expected:
            raise InputError(_unknown_key_message(where, key, expected))
    for key in expected:
        if key not in raw:
            raise InputError(f"{where}: missing key '{key}'")


def _parse_value(where: str, value: Any, kind: type, minimum: float, strict: bool) -> int | float:
    # bool is a subclass of int in Python, but `epochs: true` is never meant as 1.
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    if not ok:
        hint = ""
        if isinstance(value, str) and kind is float:
            # PyYAML follows YAML 1.1, where 1e-3 (no dot) is a string, not a float.
            hint = " (YAML reads 1e-3 as text: write 0.001 or 1.0e-3)"
        raise InputError(f"{where}: expected {expected}, found {type(value).__name__} {value!r}{hint}")
    if kind is float and not math.isfinite(value):
        raise InputError(f"{where}: expected a finite number, found {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        raise InputError(f"{where}: must be {bound}, found {value!r}")
    return kind(value)


def _parse_section(path: Path, name: str, cls: type, raw: Any) -> Any:
    where = f"{path}: {name}"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping of keys, found {type(raw).__name__} {raw!r}")
    fields = dataclasses.fields(cls)
    _check_keys(where, raw, [f.name for f in fields])
    values = {
        f.name: _parse_value(
            f"{path}: {name}.{f.name}", raw[f.name], f.type, f.metadata["minimum"], f.metadata["strict"]
        )
        for f in fields
    }
    return cls(**values)


def _check_consistency(path: Path, params: Params) -> None:
    """Checks that span keys: the CNN must fit in a frame, and the splits must differ."""
    size, model = params.data.size, params.model
    if model.kernel_size > size:
        raise InputError(
            f"{path}: model.kernel_size: {model.kernel_size} is larger than the frame (data.size = {size})"
        )
    conv_side = size - model.kernel_size + 1
    if model.pool_size > conv_side:
        raise InputError(
            f"{path}: model.pool_size: {model.pool_size} is larger than the convolution output "
            f"({conv_side}x{conv_side} at data.size = {size}, model.kernel_size = {model.kernel_size})"
        )
    seeds = {
        "generate_train.seed": params.generate_train.seed,
        "generate_test.seed": params.generate_test.seed,
        "predict.seed": params.predict.seed,
    }
    for key, seed in seeds.items():
        others = [other for other, value in seeds.items() if value == seed and other != key]
        if others:
            raise InputError(
                f"{path}: {key}: {seed} is also {others[0]}; the two sets would hold the same "
                "sequences, so give each its own seed"
            )


def load_params(path: str | Path = "params.yaml") -> Params:
    """Reads and validates the whole params file; raises InputError naming the first bad key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: params file not found (run from the project root)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read params file: {error}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise InputError(f"{path}: not valid YAML: {detail}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of sections, found {type(raw).__name__}")
    sections = {f.name: f.type for f in dataclasses.fields(Params)}
    _check_keys(str(path), raw, list(sections))
    params = Params(**{name: _parse_section(path, name, cls, raw[name]) for name, cls in sections.items()})
    _check_consistency(path, params)
    return params
