"""shopserve: from a trained shop model to a fast, monitored, failure-proof service."""

from shopserve.errors import (
    AliasInUseError,
    AuthError,
    ConflictError,
    DeadlineExceededError,
    DependencyError,
    InputError,
    IntegrityError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    QualityGateError,
    ShopserveError,
    SpecError,
    UnavailableError,
    UsageError,
)
from shopserve.types import ModelKind, ModelSignature, TensorSpec, VersionStatus

__version__ = "0.1.0"

__all__ = [
    "AliasInUseError",
    "AuthError",
    "ConflictError",
    "DeadlineExceededError",
    "DependencyError",
    "InputError",
    "IntegrityError",
    "ModelKind",
    "ModelSignature",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "QualityGateError",
    "ShopserveError",
    "SpecError",
    "TensorSpec",
    "UnavailableError",
    "UsageError",
    "VersionStatus",
    "__version__",
]
