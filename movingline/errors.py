"""The exceptions that stages turn into one line and an exit status, and the two helpers
every message goes through: one line of text, and a whole number checked by name."""


class InputError(Exception):
    """Bad params, files or arguments. The message names the file or key and what is wrong.

    Stages report it as one line on stderr and exit with status 2.
    """


class ClusterError(Exception):
    """A training worker was lost, or never joined. Stages report it as one line and exit with status 3."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so cleanup runs as it does for Ctrl-C; stages exit with status 143."""


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` with its whitespace collapsed, cut to ``limit`` characters (ending in '...') when longer."""
    text = " ".join(text.split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def whole_number(name: str, text: str, low: int = 1, high: int | None = None, unit: str = "") -> int:
    """``text`` as a whole number from ``low`` to ``high`` (no upper bound when None); raises
    InputError naming ``name`` (a variable or key) if it is not one."""
    text = text.strip()
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        of_unit = f" of {unit}" if unit else ""
        raise InputError(f"{name}: expected a whole number{of_unit} {bounds}, found {text!r}")
    return int(text)
