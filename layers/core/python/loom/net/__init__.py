"""Outbound HTTP: the one choke point every call to an outside server goes through.

The names below are imported from their modules on first use: importing ``loom.net.errors``
(which the API does to report a bad allowlist) must not import httpx with the client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loom.net.client import OutboundClient, OutboundResponse, Resolver, system_resolver
    from loom.net.errors import (
        InvalidOutboundRequest,
        InvalidOutboundResponse,
        OutboundBlocked,
        OutboundCertificateInvalid,
        OutboundConnectionFailed,
        OutboundError,
        OutboundTimeout,
        OutboundTooLarge,
        TooManyRedirects,
    )
    from loom.net.policy import Allowlist, parse_url

_MODULES = {
    "OutboundClient": "client",
    "OutboundResponse": "client",
    "Resolver": "client",
    "system_resolver": "client",
    "InvalidOutboundRequest": "errors",
    "InvalidOutboundResponse": "errors",
    "OutboundBlocked": "errors",
    "OutboundCertificateInvalid": "errors",
    "OutboundConnectionFailed": "errors",
    "OutboundError": "errors",
    "OutboundTimeout": "errors",
    "OutboundTooLarge": "errors",
    "TooManyRedirects": "errors",
    "Allowlist": "policy",
    "parse_url": "policy",
}

__all__ = [
    "Allowlist",
    "InvalidOutboundRequest",
    "InvalidOutboundResponse",
    "OutboundBlocked",
    "OutboundCertificateInvalid",
    "OutboundClient",
    "OutboundConnectionFailed",
    "OutboundError",
    "OutboundResponse",
    "OutboundTimeout",
    "OutboundTooLarge",
    "Resolver",
    "TooManyRedirects",
    "parse_url",
    "system_resolver",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
