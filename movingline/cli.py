"""What every stage does around its work: logging, signals, and one-line errors.

Exit status 2 means bad input (as argparse uses), 1 an unexpected failure, 3 a training
worker lost or missing (movingline/cluster.py), 130 an interruption by Ctrl-C (SIGINT)
and 143 by SIGTERM. Set MOVINGLINE_DEBUG=1 to see the
full traceback.
"""

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from movingline.errors import ClusterError, InputError

DEBUG_VARIABLE = "MOVINGLINE_DEBUG"
# Longest message shown for an unexpected failure; the traceback has the rest.
MAX_MESSAGE_CHARS = 400


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so cleanup runs as it does for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` with its whitespace collapsed, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stage_parser(stage: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """The argument parser every stage starts from: its name, and --params."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}", description=description, **kwargs)
    add_path(parser, "--params", "params.yaml", "params file")
    return parser


def add_path(parser: argparse.ArgumentParser, flag: str, default: str | None, help: str) -> None:
    """A file argument; its default (if any) is shown in --help."""
    suffix = " (default: %(default)s)" if default is not None else ""
    parser.add_argument(flag, default=None if default is None else Path(default), type=Path, help=help + suffix)


def load_checked_params(path: Path):
    """params.yaml, validated, and refused if training at its sizes could not fit in memory here.

    Every stage checks the training fit first, so an impossible ``data.size`` or model stops
    the pipeline at its first stage rather than at training.
    """
    from movingline.params import load_params
    from movingline.resources import require_training_fits

    params = load_params(path)
    require_training_fits(params, path)
    return params


def run_stage(main: Callable[[], None]) -> None:
    """Runs a stage's main() and turns failures into one line on stderr and an exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # TensorFlow's own notices and warnings would bury the stage's log; read before it loads.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    signal.signal(signal.SIGTERM, _raise_terminated)
    debug = debugging()
    try:
        limit_threads()
        main()
    except InputError as error:
        if debug:
            raise
        print(f"error: {one_line(str(error), limit=2000)}", file=sys.stderr)
        sys.exit(2)
    except ClusterError as error:
        if debug:
            raise
        print(f"error: {one_line(str(error), limit=2000)}", file=sys.stderr)
        # Exit now: TensorFlow's shutdown would wait for the lost peer.
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(3)
    except (KeyboardInterrupt, Terminated) as interruption:
        signum = signal.SIGINT if isinstance(interruption, KeyboardInterrupt) else interruption.args[0]
        print(f"error: interrupted by {signal.Signals(signum).name}; no partial output was left", file=sys.stderr)
        # The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM).
        sys.exit(128 + signum)
    except Exception as error:  # noqa: BLE001 - the last line of defence, reported in one line
        if debug:
            raise
        print(
            f"error: unexpected failure: {type(error).__name__}: {one_line(str(error))} "
            f"(set {DEBUG_VARIABLE}=1 for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)


THREADS_VARIABLE = "MOVINGLINE_THREADS"


def limit_threads() -> None:
    """Caps TensorFlow's thread pools at MOVINGLINE_THREADS each, when it is set.

    For running several stages at once (`dvc queue start --jobs N`, local workers): each
    then keeps to its share of the cores instead of all of them contending for every core.
    TensorFlow reads these variables when it starts, so this runs before it is imported.
    """
    threads = positive_setting(THREADS_VARIABLE, None, "threads")
    if threads is None:
        return
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)


def thread_share(n_processes: int) -> int:
    """Threads each of ``n_processes`` running at once gets: an equal share of the cores, at least one."""
    return max(1, (os.cpu_count() or 1) // n_processes)


def positive_setting(variable: str, default: int | None, unit: str) -> int | None:
    """A whole number of at least 1 from the environment (``default`` when unset); raises
    InputError naming the variable if it is not one."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{variable}: expected a whole number of {unit} of at least 1, found {text!r}")
    return int(text)


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Keeps what C++ code writes to stderr (file descriptor 2) off the terminal for a while.

    TensorFlow 2.21 logs its start-up notices through absl before TF_CPP_MIN_LOG_LEVEL can
    take effect, so its import runs inside this. What was written is shown after all if
    the block fails, and nothing is hidden with MOVINGLINE_DEBUG=1.
    """
    if debugging():
        yield
        return
    with tempfile.TemporaryFile() as captured:
        try:
            with _stderr_sent_to(captured):
                yield
        except BaseException:
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise


@contextlib.contextmanager
def _stderr_sent_to(file) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
