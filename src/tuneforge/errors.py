"""The one error type a user sees: a message that says what is wrong and where."""


class TuneforgeError(Exception):
    """Bad input or an impossible request. The CLI prints it as one line and exits with status 2."""
