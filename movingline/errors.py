"""The exceptions that stages turn into one line and an exit status."""


class InputError(Exception):
    """Bad params, files or arguments. The message names the file or key and what is wrong.

    Stages report it as one line on stderr and exit with status 2.
    """


class ClusterError(Exception):
    """A training worker was lost, or never joined. Stages report it as one line and exit with status 3."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so cleanup runs as it does for Ctrl-C; stages exit with status 143."""
