"""What every stage does around its work: logging, signals, and one-line errors.

Exit status 2 means bad input (as argparse uses), 1 an unexpected failure, 130 an
interruption. Set MOVINGLINE_DEBUG=1 to see the full traceback.
"""

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator

from movingline.errors import InputError

DEBUG_VARIABLE = "MOVINGLINE_DEBUG"


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so cleanup runs as it does for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated(f"stopped by signal {signum}")


def run_stage(main: Callable[[], None]) -> None:
    """Runs a stage's main() and turns failures into one line on stderr and an exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _raise_terminated)
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        main()
    except InputError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Terminated):
        print("error: interrupted; no output was changed", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence, reported in one line
        if debug:
            raise
        print(
            f"error: unexpected failure: {type(error).__name__}: {error} "
            f"(set {DEBUG_VARIABLE}=1 for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Sends file descriptor 2 (where C++ libraries write) to /dev/null for the block, unless debugging."""
    if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
