"""Outbound HTTP: the one choke point every call to an outside server goes through."""

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
