"""shopserve: from a trained shop model to a fast, monitored, failure-proof service."""

from shopserve.data import DemoShopSpec, Shop, generate_demo_shop, load_shop
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
from shopserve.registry import LoadedVersion, ModelVersion, Registry
from shopserve.serve.client import AsyncClient, Client
from shopserve.types import ModelKind, ModelSignature, TensorSpec, VersionStatus

__version__ = "0.1.0"

__all__ = [
    "AliasInUseError",
    "AsyncClient",
    "AuthError",
    "Client",
    "ConflictError",
    "DeadlineExceededError",
    "DemoShopSpec",
    "DependencyError",
    "InputError",
    "IntegrityError",
    "LoadedVersion",
    "ModelKind",
    "ModelSignature",
    "ModelVersion",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "QualityGateError",
    "Registry",
    "Shop",
    "ShopserveError",
    "SpecError",
    "TensorSpec",
    "UnavailableError",
    "UsageError",
    "VersionStatus",
    "__version__",
    "generate_demo_shop",
    "load_shop",
]
