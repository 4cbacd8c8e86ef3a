"""The one exception type for problems with what a user gave us (a file, a folder, an option)."""


class UserError(ValueError):
    """Bad input from the user: a command prints its message as one line, without a traceback.

    A plain ValueError or KeyError is a bug in this project and keeps its traceback.
    """
