"""The one error type a user sees: a message that says what is wrong and where."""


class TuneforgeError(Exception):
    """Bad input or an impossible request. The CLI prints it as one line and exits with status 2."""


class SettingError(TuneforgeError):
    """A setting's value out of its range; `key` names the field, so the message can say where it was set
    (the file line or the override, not only the section)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
