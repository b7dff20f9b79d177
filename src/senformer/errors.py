"""The one exception type for user mistakes: the CLI prints its message on one line and exits non-zero."""


class UserError(Exception):
    """A bad path, malformed file, wrong length or unknown option; the message names the culprit."""
