"""Errors a user sees: a stable ``code`` for programs and a sentence for people."""

from __future__ import annotations


class VMigrateError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class Refused(VMigrateError):
    """A request refused before anything ran: neither host was touched."""
