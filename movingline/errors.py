"""The one exception type for input a user can fix."""


class InputError(Exception):
    """Bad params, files or arguments. The message names the file or key and what is wrong.

    Stages report it as one line on stderr and exit with status 2.
    """


class ClusterError(Exception):
    """A training worker was lost, or never joined. Stages report it as one line and exit with status 3."""
