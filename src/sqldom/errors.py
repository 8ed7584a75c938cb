"""Exceptions that reach the user, each with the user's words in it.

    SqldomError                 headline, optional file/line, hint; exit code
    ├── UsageError              bad flags, unknown step ids, missing -C directory (exit 2)
    ├── ConfigError             sqldom.yaml / build.py cannot be used (exit 2)
    ├── DatabaseError           var/build.db is foreign, newer, corrupt or cannot be opened (exit 2)
    ├── LockError               another sqldom holds the project lock (exit 2)
    ├── EnvironmentFailure      the machine refused: disk full, file-size limit, read-only or
    │                           permission denied (exit 1; not a bug, the database stays consistent)
    └── OutputClashError        one output is a file where another needs a folder (exit 1)

Content problems (a broken link, a transform that raised) are not exceptions:
they are ``Problem`` values stored in the ``problems`` table (exit 1).
Anything else is a bug: the CLI saves its traceback under var/.
"""

from __future__ import annotations


class SqldomError(Exception):
    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.hint = hint

    def headline(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        return f"{where}{self.message}"


class UsageError(SqldomError):
    pass


class ConfigError(SqldomError):
    pass


class DatabaseError(SqldomError):
    pass


class LockError(SqldomError):
    pass


class EnvironmentFailure(SqldomError):
    """The build ran into its environment (full disk, a file-size limit, a read-only folder)."""

    exit_code = 1


class OutputClashError(SqldomError):
    """build/<a> must be a file for one output and a folder for another."""

    exit_code = 1
