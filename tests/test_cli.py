"""What every stage does around its work: one-line errors, exit statuses, shared arguments."""

from collections.abc import Callable
from pathlib import Path

import pytest

from movingline import cli
from movingline.settings import DEBUG_VARIABLE, Settings
from movingline.errors import InputError


def run_stage_in_process(main: Callable[[Settings], None], capsys, monkeypatch, debug: bool = False) -> tuple[int, str]:
    """cli.run_stage(main) in this process: (exit status, stderr)."""
    import signal

    monkeypatch.setenv(DEBUG_VARIABLE, "1" if debug else "")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as caught:
            cli.run_stage(main)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return caught.value.code, capsys.readouterr().err


def raiser(error: BaseException) -> Callable[[Settings], None]:
    def main(settings: Settings) -> None:
        raise error

    return main


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        (
            InputError("params.yaml: train.epochs: expected an integer"),
            2,
            "error: params.yaml: train.epochs: expected an integer\n",
        ),
        (InputError("d.h5: two\n   lines"), 2, "error: d.h5: two lines\n"),
        (
            RuntimeError("Graph execution error:\n\n  detail  "),
            1,
            "error: unexpected failure: RuntimeError: Graph execution error: detail (set MOVINGLINE_DEBUG=1 for the traceback)\n",
        ),
        (KeyboardInterrupt(), 130, "error: interrupted by SIGINT; no partial output was left\n"),
        (cli.Terminated(15), 143, "error: interrupted by SIGTERM; no partial output was left\n"),
    ],
    ids=["input error", "multi-line input error", "unexpected failure", "SIGINT", "SIGTERM"],
)
def test_run_stage_reports_one_line_and_the_exit_status(capsys, monkeypatch, error, status, expected):
    assert run_stage_in_process(raiser(error), capsys, monkeypatch) == (status, expected)


def test_run_stage_cuts_a_huge_unexpected_message(capsys, monkeypatch):
    status, err = run_stage_in_process(raiser(ValueError("x" * 10_000)), capsys, monkeypatch)
    assert status == 1 and err.count("\n") == 1 and len(err) < 600


def test_debug_shows_the_real_exception(monkeypatch):
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(InputError, match="d.h5: file not found"):
        cli.run_stage(raiser(InputError("d.h5: file not found")))


def test_stage_parser_gives_every_stage_the_same_params_and_path_arguments():
    parser = cli.stage_parser("evaluate", "Evaluate.")
    cli.add_path(parser, "--data", "data/test.h5", "test set")
    cli.add_path(parser, "--input", None, "dataset to classify")
    assert parser.prog == "python -m stages.evaluate"
    assert vars(parser.parse_args([])) == {"params": Path("params.yaml"), "data": Path("data/test.h5"), "input": None}
    assert vars(parser.parse_args(["--data", "x.h5", "--input", "y.h5"]))["input"] == Path("y.h5")
    assert "test set (default: data/test.h5)" in " ".join(parser.format_help().split())


def test_a_count_argument_is_a_whole_number_of_at_least_one():
    import argparse

    assert cli.count_argument("2") == 2
    for bad in ("0", "two", "-1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=f"^expected a whole number of at least 1, found '{bad}'$"):
            cli.count_argument(bad)
