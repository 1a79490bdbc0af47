"""The one error tree of shopserve.

Every error a user can meet is a ``ShopserveError``; adapters (HTTP, CLI) turn them into
status codes and exit codes, nothing else does::

    ShopserveError
    ├── UsageError                  bad arguments, flags or spec files            (400, exit 2)
    │   ├── SpecError               a YAML/JSON spec that does not validate
    │   └── InputError              request or data that does not fit the model
    │       └── PayloadTooLargeError body or tensor over the size limit         (413)
    ├── NotFoundError               unknown model, version, alias or file         (404, exit 3)
    ├── ConflictError               refused because of current state              (409, exit 4)
    │   └── AliasInUseError         delete of a version an alias points at
    ├── IntegrityError              checksum mismatch, truncated or tampered file  (500, exit 5)
    ├── QualityGateError            an optimized child lost more than its budget   (422, exit 6)
    ├── UnavailableError            no healthy replica, dependency down           (503, exit 7)
    │   ├── OverloadedError         queue full: retry after a moment              (429)
    │   └── DeadlineExceededError   the request ran out of time                   (504)
    ├── AuthError                   missing or wrong token                        (401, exit 8)
    └── DependencyError             an optional extra (torch, ray) is not installed (500, exit 9)
"""

from __future__ import annotations

from typing import ClassVar


class ShopserveError(Exception):
    """Root of every error shopserve raises on purpose."""

    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ShopserveError):
    """Arguments, flags or files that cannot be used as given."""

    http_status = 400
    exit_code = 2


class SpecError(UsageError):
    """A spec file (deployment, drill, recipe) that does not validate."""


class InputError(UsageError):
    """A request or data row that does not fit what the model expects."""


class PayloadTooLargeError(InputError):
    """A body or tensor over the configured size limit."""

    http_status = 413


class NotFoundError(ShopserveError):
    """An unknown model, version, alias, file or route."""

    http_status = 404
    exit_code = 3


class ConflictError(ShopserveError):
    """Refused because of the current state (a running drill, a held lock)."""

    http_status = 409
    exit_code = 4


class AliasInUseError(ConflictError):
    """A version cannot be deleted while an alias points at it."""


class IntegrityError(ShopserveError):
    """A stored artefact whose checksum or size does not match its record."""

    http_status = 500
    exit_code = 5


class QualityGateError(ShopserveError):
    """An optimized version lost more quality than its budget allows."""

    http_status = 422
    exit_code = 6


class UnavailableError(ShopserveError):
    """No replica or dependency can answer right now."""

    http_status = 503
    exit_code = 7

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OverloadedError(UnavailableError):
    """The queue is full; the client should retry after ``retry_after_s``."""

    http_status = 429


class DeadlineExceededError(UnavailableError):
    """The request's deadline passed before an answer was ready."""

    http_status = 504


class AuthError(ShopserveError):
    """A missing or wrong token for a protected API."""

    http_status = 401
    exit_code = 8


class DependencyError(ShopserveError):
    """An optional extra needed for this command is not installed."""

    http_status = 500
    exit_code = 9


def require(module: str, extra: str) -> None:
    """Raise a ``DependencyError`` naming the extra when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DependencyError(
            f"this needs the optional package {module!r}: pip install 'shopserve[{extra}]'"
        )
