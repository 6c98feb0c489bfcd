"""GakuNin RDM (OSF API v2 + WaterButler) remote: client, token handling, fsspec ``rdm://``."""

from .client import (
    DEFAULT_API_URL,
    OSF_API_URL,
    Entry,
    RDMAuthError,
    RDMClient,
    RDMConflictError,
    RDMIntegrityError,
    RDMNotFoundError,
    RDMProjectNotFound,
    RDMQuotaError,
)

__all__ = [
    "DEFAULT_API_URL",
    "OSF_API_URL",
    "Entry",
    "RDMAuthError",
    "RDMClient",
    "RDMConflictError",
    "RDMIntegrityError",
    "RDMNotFoundError",
    "RDMProjectNotFound",
    "RDMQuotaError",
]
