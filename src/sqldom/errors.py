"""Exceptions that reach the user, each with the user's words in it.

    SqldomError                 headline, optional file/line, hint; exit code
    ├── UsageError              bad flags, unknown step ids, missing -C directory (exit 2)
    ├── ConfigError             sqldom.yaml / build.py cannot be used (exit 2)
    ├── DatabaseError           var/build.db is foreign, newer or corrupt (exit 2)
    └── LockError               another sqldom holds the project lock (exit 2)

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
