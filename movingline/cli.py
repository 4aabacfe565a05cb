"""The stage shell: arguments, logging, signals, and one-line errors. Only stages/ and
command-line entry points import it.

Exit status 2 means bad input (as argparse uses), 1 an unexpected failure, 3 a training
worker lost (movingline/cluster/), 130 an interruption by Ctrl-C (SIGINT), 143 by
SIGTERM, and 137 a worker that waited too long for its peers to join (ended by its
watchdog). Set MOVINGLINE_DEBUG=1 to see the full traceback.
"""

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from movingline.errors import ClusterError, InputError, Terminated, one_line, whole_number
from movingline.settings import DEBUG_VARIABLE, Settings, read_settings

# Longest message shown for an unexpected failure; the traceback has the rest.
MAX_MESSAGE_CHARS = 400


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def stage_parser(stage: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """The argument parser every stage starts from: its name, and --params."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{stage}", description=description, **kwargs)
    add_path(parser, "--params", "params.yaml", "params file")
    return parser


def add_path(parser: argparse.ArgumentParser, flag: str, default: str | None, help: str) -> None:
    """A file argument; its default (if any) is shown in --help."""
    suffix = " (default: %(default)s)" if default is not None else ""
    parser.add_argument(flag, default=None if default is None else Path(default), type=Path, help=help + suffix)


def count_argument(text: str) -> int:
    """argparse's type for a count of at least 1, checked as every whole number here is."""
    try:
        return whole_number("count", text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("count: ")) from None


def run_stage(main: Callable[[Settings], None]) -> None:
    """Runs a stage's main(settings) and turns failures into one line on stderr and an exit status.

    The settings (movingline/settings.py) are read from the environment once, here, and
    handed to main, which passes them on to whatever needs them.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _raise_terminated)
    settings = Settings()  # until read: a malformed variable is reported in one line
    try:
        settings = read_settings(os.environ)
        main(settings)
    except InputError as error:
        if settings.debug:
            raise
        print(f"error: {one_line(str(error), limit=2000)}", file=sys.stderr)
        sys.exit(2)
    except ClusterError as error:
        if settings.debug:
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
        if settings.debug:
            raise
        print(
            f"error: unexpected failure: {type(error).__name__}: {one_line(str(error), MAX_MESSAGE_CHARS)} "
            f"(set {DEBUG_VARIABLE}=1 for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
