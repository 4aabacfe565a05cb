"""What every stage does around its work: logging, signals, and one-line errors.

Exit status 2 means bad input (as argparse uses), 1 an unexpected failure, 3 a training
worker lost or missing (movingline/cluster.py), 130 an interruption by Ctrl-C (SIGINT)
and 143 by SIGTERM. Set MOVINGLINE_DEBUG=1 to see the
full traceback.
"""

import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator

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
    text = os.environ.get(THREADS_VARIABLE, "").strip()
    if not text:
        return
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{THREADS_VARIABLE}: expected a whole number of threads of at least 1, found {text!r}")
    os.environ["TF_NUM_INTRAOP_THREADS"] = text
    os.environ["TF_NUM_INTEROP_THREADS"] = text


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
