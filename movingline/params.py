"""params.yaml, parsed once into frozen dataclasses and validated.

Every stage loads and validates the whole file at start-up, so a typo in any section
stops the run before work starts, with a message that names the file and the key.
Every value comes from params.yaml: a key missing there is an error. (The dataclass
defaults, model.conv_layers = 1 and the train section's 0 for validation, only let code
that builds the reference ModelParams or TrainParams directly leave them out.)
"""

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from movingline.errors import InputError, one_line

# NumPy's legacy seeding, which Keras uses, takes seeds below 2**32.
MAX_SEED = 2**32 - 1
# One sequence is one HDF5 chunk of size**3 bytes, and a chunk must stay under 4 GiB.
MAX_SIZE = 1625


def _bounds(minimum: float, maximum: float | None = None, *, strict: bool = False, why: str = "") -> dict[str, Any]:
    """Field metadata: the allowed range of a value, and why the maximum is there."""
    return {"minimum": minimum, "maximum": maximum, "strict": strict, "why": why}


_SEED = _bounds(0, MAX_SEED, why="NumPy and Keras take seeds below 2**32")
_COUNT = _bounds(1)
_NONE_OR_COUNT = _bounds(0)


@dataclass(frozen=True)
class DataParams:
    size: int = field(metadata=_bounds(2, MAX_SIZE, why="one sequence is one HDF5 chunk, which must stay under 4 GiB"))


@dataclass(frozen=True)
class GenerateParams:
    n_samples: int = field(metadata=_COUNT)
    seed: int = field(metadata=_SEED)


@dataclass(frozen=True)
class ModelParams:
    filters: int = field(metadata=_COUNT)
    kernel_size: int = field(metadata=_COUNT)
    pool_size: int = field(metadata=_COUNT)
    lstm_units: int = field(metadata=_COUNT)
    # Conv2D + MaxPooling2D blocks per frame. Last, with the reference's value as default,
    # so that ModelParams(2, 2, 2, 50) still builds the reference.
    conv_layers: int = field(default=1, metadata=_COUNT)

    def block_sides(self, size: int) -> list[tuple[int, int]]:
        """(convolution output side, pooled side) of each CNN block on a size x size frame.

        Valid padding shrinks a side by kernel_size - 1, pooling divides it by pool_size
        (rounded down). A side below 1 means the block does not fit; see _check_consistency.
        """
        sides = []
        side = size
        for _ in range(self.conv_layers):
            conv_side = side - self.kernel_size + 1
            side = conv_side // self.pool_size if conv_side >= self.pool_size else 0
            sides.append((conv_side, side))
        return sides

    def features(self, size: int) -> int:
        """Length of the vector the CNN gives the LSTM for each frame."""
        return self.block_sides(size)[-1][1] ** 2 * self.filters

    def parameter_count(self, size: int) -> int:
        """Weights of the CNN-LSTM that model.build_model builds (240,661 for the reference at size 50)."""
        first_conv = self.kernel_size * self.kernel_size * self.filters + self.filters
        later_conv = self.kernel_size * self.kernel_size * self.filters * self.filters + self.filters
        conv = first_conv + (self.conv_layers - 1) * later_conv
        lstm = 4 * self.lstm_units * (self.features(size) + self.lstm_units + 1)
        return conv + lstm + self.lstm_units + 1


@dataclass(frozen=True)
class TrainParams:
    seed: int = field(metadata=_SEED)
    batch_size: int = field(metadata=_COUNT)
    epochs: int = field(metadata=_COUNT)
    learning_rate: float = field(metadata=_bounds(0, strict=True))
    # The last validation_sequences of the training file are held out and scored every
    # validate_every steps (0: at the end of each epoch); the saved model is then the best
    # validation loss's weights, and patience validations without improvement stop early
    # (0: never). 0 held out: no validation, the reference's training, and the other two
    # have no effect (so that -S train.validation_sequences=0 alone turns validation off).
    validation_sequences: int = field(default=0, metadata=_NONE_OR_COUNT)
    validate_every: int = field(default=0, metadata=_NONE_OR_COUNT)
    patience: int = field(default=0, metadata=_NONE_OR_COUNT)

    @property
    def validating(self) -> bool:
        return self.validation_sequences > 0


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = field(metadata=_COUNT)


@dataclass(frozen=True)
class PredictParams:
    n_samples: int = field(metadata=_COUNT)
    seed: int = field(metadata=_SEED)


@dataclass(frozen=True)
class Params:
    data: DataParams
    generate_train: GenerateParams
    generate_test: GenerateParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    predict: PredictParams


def _describe(kind: type, bounds: dict[str, Any]) -> str:
    """What a value must be, in words, e.g. 'an integer of at least 1'."""
    noun = "an integer" if kind is int else "a number"
    minimum, maximum = bounds["minimum"], bounds["maximum"]
    if bounds["strict"]:
        return f"{noun} greater than {minimum:g}"
    if maximum is not None:
        return f"{noun} from {minimum:g} to {maximum}"
    return f"{noun} of at least {minimum:g}"


def _check_keys(prefix: str, raw: dict, expected: dict[str, str], kind: str) -> None:
    """Refuses unknown keys (suggesting the closest known one) and reports the first missing key.

    ``expected`` maps each key to what it must hold; ``prefix`` is the file and section.
    """
    names = list(expected)
    for key in raw:
        if key not in expected:
            message = f"{prefix}{key}: unknown {kind} {key!r} (expected: {', '.join(names)})"
            close = difflib.get_close_matches(str(key), names, n=1)
            raise InputError(message + (f"; did you mean {close[0]!r}?" if close else ""))
    for key in names:
        if key not in raw:
            raise InputError(f"{prefix}{key}: missing {kind} (expected {expected[key]})")


def _parse_value(where: str, value: Any, kind: type, bounds: dict[str, Any]) -> int | float:
    # bool is a subclass of int in Python, but `epochs: true` is never meant as 1.
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _describe(kind, bounds)
    if not ok:
        hint = ""
        if isinstance(value, str) and kind is float:
            # PyYAML follows YAML 1.1, where 1e-3 (no dot) is a string, not a float.
            hint = " (YAML reads 1e-3 as text: write 0.001 or 1.0e-3)"
        found = "nothing" if value is None else f"{type(value).__name__} {value!r}"
        raise InputError(f"{where}: expected {expected}, found {found}{hint}")
    if kind is float and not math.isfinite(value):
        raise InputError(f"{where}: expected a finite number, found {value!r}")
    minimum, maximum = bounds["minimum"], bounds["maximum"]
    too_small = value < minimum or (bounds["strict"] and value == minimum)
    if too_small or (maximum is not None and value > maximum):
        why = f" ({bounds['why']})" if bounds["why"] and not too_small else ""
        raise InputError(f"{where}: expected {expected}, found {value!r}{why}")
    return kind(value)


def _parse_section(path: Path, name: str, cls: type, raw: Any) -> Any:
    fields = dataclasses.fields(cls)
    expected = {f.name: _describe(f.type, f.metadata) for f in fields}
    if not isinstance(raw, dict):
        found = "nothing" if raw is None else f"{type(raw).__name__} {raw!r}"
        raise InputError(f"{path}: {name}: expected a section with keys {', '.join(expected)}, found {found}")
    _check_keys(f"{path}: {name}.", raw, expected, "key")
    return cls(**{f.name: _parse_value(f"{path}: {name}.{f.name}", raw[f.name], f.type, f.metadata) for f in fields})


def _check_consistency(path: Path, params: Params) -> None:
    """Checks that span keys: every CNN block must fit in a frame, and the splits must differ."""
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
    # The first block fits (checked above); each later one must fit what the previous left.
    sides = model.block_sides(size)
    fitting = next((index for index, (_, pooled) in enumerate(sides) if pooled < 1), len(sides))
    if fitting < model.conv_layers:
        left = sides[fitting - 1][1]
        raise InputError(
            f"{path}: model.conv_layers: {model.conv_layers} blocks do not fit in a {size}x{size} frame "
            f"(data.size = {size}): after {fitting} the features are {left}x{left}, too small for another "
            f"{model.kernel_size}x{model.kernel_size} convolution and {model.pool_size}x{model.pool_size} "
            f"pooling; at most {fitting} fit"
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


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line, with the line and column where it found the problem."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is None or problem is None:
        return one_line(str(error))
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: {problem}" + (f" ({context})" if context else "")


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
        raise InputError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    sections = {f.name: f.type for f in dataclasses.fields(Params)}
    if not isinstance(raw, dict):
        found = "an empty file" if raw is None else f"{type(raw).__name__} {raw!r}"
        raise InputError(f"{path}: expected the sections {', '.join(sections)}, found {found}")
    keys = {name: "keys " + ", ".join(f.name for f in dataclasses.fields(cls)) for name, cls in sections.items()}
    _check_keys(f"{path}: ", raw, keys, "section")
    params = Params(**{name: _parse_section(path, name, cls, raw[name]) for name, cls in sections.items()})
    _check_consistency(path, params)
    return params
