"""User-facing errors and the exit codes the CLI returns for them."""

from __future__ import annotations

# Exit codes of ``python -m runner`` (documented in the README).
EXIT_OK = 0
EXIT_HYDRA = 1  # Hydra's own errors: bad override syntax, unknown config group or key, type mismatch
EXIT_CONFIG = 2  # a config value or an input file is invalid (ConfigError)
EXIT_INTERNAL = 3  # an unexpected error: a bug, reported with its traceback
EXIT_INTERRUPTED = 130  # SIGINT or SIGTERM during a run


class ConfigError(ValueError):
    """A config value or input file the run cannot use.

    ``str(err)`` is the one line the user sees: it starts with the config key (with its path) or
    the file, then says what was expected and what was received.
    """

    def __init__(self, message: str, *, key: str = "") -> None:
        self.key = key
        super().__init__(message)


class DataError(ConfigError):
    """An input file that is missing, unreadable, or holds values the run cannot use."""


class Interrupted(BaseException):
    """SIGTERM arrived during a run (SIGINT arrives as KeyboardInterrupt).

    A BaseException, like KeyboardInterrupt, so that it ends a whole sweep rather than one job.
    """
