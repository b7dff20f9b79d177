"""The one exception type for user mistakes: the CLI prints its message on one line and exits 2."""


class UserError(ValueError):
    """A bad path, malformed file, wrong length, unknown option or invalid value; the message names the culprit.

    A ``ValueError``, so library callers that catch ``ValueError`` see no change; the CLI catches only this
    (and ``OSError``), so a ``ValueError`` raised by a bug keeps its traceback.
    """
