"""The base of every error a user can cause; the CLI prints these without a traceback."""


class WritemateError(Exception):
    """Bad input, a missing or damaged file, or a request that cannot be met."""


class Interrupted(WritemateError):
    """Training was stopped by a signal after saving a checkpoint; rerunning resumes it."""


class Diverged(WritemateError):
    """The training loss became infinite or NaN; the last checkpoint is kept as it was."""
