"""The rules of the outbound choke point: which URLs, headers and addresses Loom may call.

Everything here is pure (no I/O): ``parse_url`` turns a URL into a normalised ``Target``
(an IP literal in any spelling becomes the address it really is), ``check_headers`` refuses
header injection, ``refusal`` says why an address is internal, and ``Allowlist`` admits the
exact ``host`` / ``host:port`` entries a workspace names. ``loom.net.client`` applies them to
every resolved address and every redirect hop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import httpx

from loom.net.errors import ALLOWLIST_SOLUTION, InvalidOutboundRequest, OutboundBlocked

IPAddress = IPv4Address | IPv6Address

SCHEMES = {"http": 80, "https": 443}
MAX_URL_LENGTH = 16_384

# Cloud metadata and credential endpoints: refused even when a workspace allowlists them,
# because they hand out the platform's own credentials.
METADATA = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # EC2 / GCP / Azure instance metadata
        "169.254.170.2",  # ECS task credentials
        "169.254.170.23",  # EKS Pod Identity
        "fd00:ec2::254",  # EC2 instance metadata over IPv6
        "fd00:ec2::23",  # EKS Pod Identity over IPv6
    )
)

_V4_RANGES: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("255.255.255.255/32", "the broadcast address"),
        ("0.0.0.0/8", "in 0.0.0.0/8 ('this network')"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address (RFC 1918)"),
        ("172.16.0.0/12", "a private address (RFC 1918)"),
        ("192.168.0.0/16", "a private address (RFC 1918)"),
        ("100.64.0.0/10", "a carrier-grade NAT address (100.64.0.0/10)"),
        ("169.254.0.0/16", "a link-local address"),
        ("192.0.0.0/24", "an IETF protocol assignment (192.0.0.0/24)"),
        ("192.0.2.0/24", "a documentation address (TEST-NET-1)"),
        ("198.51.100.0/24", "a documentation address (TEST-NET-2)"),
        ("203.0.113.0/24", "a documentation address (TEST-NET-3)"),
        ("198.18.0.0/15", "a benchmarking address (198.18.0.0/15)"),
        ("192.88.99.0/24", "a 6to4 relay anycast address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address (240.0.0.0/4)"),
    )
)
_V6_RANGES: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "the unspecified address"),
        ("::1/128", "the loopback address"),
        ("::/96", "an IPv4-compatible address (deprecated)"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo address"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a unique-local address (fc00::/7)"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address (deprecated)"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls except HTAB
_HOSTNAME = re.compile(r"[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*")
_AUTHORITY = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?)(?P<host>[^/?#:\[]*)")

# Set by the client from the URL and the body; a caller setting them could smuggle a second
# request or address another virtual host behind a checked address.
MANAGED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "proxy-authorization",
    }
)


@dataclass(frozen=True)
class Target:
    """A parsed, normalised http(s) URL: ``host`` is IDNA ASCII without a trailing dot, or
    an IP literal in its canonical text; ``address`` is set when the host is an IP literal.
    Its addresses are checked later, per connection (``check_address``)."""

    url: httpx.URL
    host: str
    port: int
    address: IPAddress | None
    given: str  # the host as written, for messages: "0x7f.1 means 127.0.0.1"

    @property
    def scheme(self) -> str:
        return self.url.scheme

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.url.scheme, self.host, self.port)

    @property
    def where(self) -> str:
        """``host:port`` as an allowlist entry spells it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def redacted(self) -> str:
        """The URL without its query string, for messages (queries may carry keys)."""
        return str(self.url.copy_with(query=None, fragment=None))


def parse_url(raw: str | httpx.URL, *, what: str = "URL") -> Target:
    """Parse and normalise an absolute http(s) URL, or raise ``InvalidOutboundRequest``."""
    text = str(raw)
    if len(text) > MAX_URL_LENGTH:
        raise _invalid(f"The {what} is longer than {MAX_URL_LENGTH} characters.")
    if _BAD_VALUE.search(text) or "\t" in text:
        raise _invalid(
            f"The {what} contains a control character (CR, LF, NUL or similar).",
            "Remove line breaks and control characters; percent-encode data in URLs.",
        )
    text, spelled = _canonical_numeric_host(text)
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise _invalid(f"The {what} is not a valid URL: {exc}.") from None
    if url.scheme not in SCHEMES:
        shown = f"'{url.scheme}:'" if url.scheme else "a relative URL"
        raise _invalid(
            f"Only absolute http and https URLs can be called; the {what} is {shown}.",
            "Use an http:// or https:// URL.",
        )
    if url.userinfo:
        raise _invalid(
            f"The {what} carries a user name or password (user@host), which is not allowed.",
            "Remove it from the URL and use the node's auth credential instead.",
        )
    raw_host = url.raw_host.decode("ascii")
    host, address = normalise_host(raw_host, what=what)
    port = SCHEMES[url.scheme] if url.port is None else url.port
    if not 0 < port < 65_536:
        raise _invalid(f"The {what} has port {port}, outside 1-65535.")
    if host != raw_host:
        url = url.copy_with(host=host)
    return Target(url=url, host=host, port=port, address=address, given=spelled or raw_host)


def normalise_host(raw: str, *, what: str = "URL") -> tuple[str, IPAddress | None]:
    """Lower-case, strip one trailing dot, and turn IP literals in any spelling (decimal,
    octal, hex, short, IPv4-mapped IPv6) into the address they are."""
    host = raw.strip().lower()
    host = host[:-1] if host.endswith(".") else host
    if not host:
        raise _invalid(f"The {what} has no host.")
    if ":" in host:
        if "%" in host:
            raise _invalid(
                f"The {what} has an IPv6 zone identifier ({host}), which is not allowed."
            )
        try:
            address = canonical_address(ip_address(host))
        except ValueError:
            raise _invalid(f"The {what} has an invalid IPv6 address: {host}.") from None
        return str(address), address
    v4 = _numeric_ipv4(host, what)
    if v4 is not None:
        return str(v4), v4
    if not host.isascii():
        try:
            host = httpx.URL(scheme="http", host=host).raw_host.decode("ascii")  # IDNA
        except httpx.InvalidURL:
            raise _invalid(f"The {what} has an invalid host name: {host!r}.") from None
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise _invalid(f"The {what} has an invalid host name: {host!r}.")
    return host, None


def canonical_address(address: IPAddress) -> IPAddress:
    """The address a socket really reaches: no zone id, IPv4-mapped IPv6 as IPv4."""
    if isinstance(address, IPv6Address):
        address = IPv6Address(int(address))  # drops a %zone
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address, or None when it is."""
    address = canonical_address(address)
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, IPv6Address):
        embedded, kind = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal(embedded)
            if inner is not None:
                return f"a {kind} address embedding {embedded}, {inner}"
            if kind == "NAT64":  # a public IPv4 host behind DNS64; 64:ff9b::/96 is "reserved"
                return None
        ranges: Iterable[tuple[IPv4Network | IPv6Network, str]] = _V6_RANGES
    else:
        ranges = _V4_RANGES
    for network, why in ranges:
        if address in network:
            return why
    if (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return "not a globally routable address"
    return None


def check_address(
    target: Target, address: IPAddress, allowlist: Allowlist, *, via: str = ""
) -> None:
    """Refuse ``address`` (one that ``target.host`` is or resolved to) unless it is public,
    or the target is allowlisted and the address is not a metadata endpoint. ``via`` names
    the URL that redirected here, for the message."""
    address = canonical_address(address)
    why = refusal(address)
    if why is None:
        return
    if address not in METADATA and allowlist.admits(target):
        return
    if target.address is None:
        subject = f"{target.host} resolved to {address}, which"
    elif target.given != target.host:
        subject = f"{target.given} means {address}, which"
    else:
        subject = str(address)
    refused = f"Refused to connect to {target.where}{via and f' (redirected from {via})'}"
    if address in METADATA:
        raise OutboundBlocked(
            f"{refused}: {subject} is {why}.",
            solution="Cloud metadata endpoints are never reachable from workflows, "
            "allowlisted or not.",
        )
    raise OutboundBlocked(
        f"{refused}: {subject} is {why}.",
        solution=ALLOWLIST_SOLUTION.format(where=target.where),
    )


def check_method(method: str) -> None:
    if not _TOKEN.fullmatch(method):
        raise _invalid(
            f"HTTP method {method[:32]!r} is not a valid token.", "Use GET, POST, PUT and so on."
        )


def check_headers(headers: Mapping[str, str]) -> None:
    """Refuse header injection and headers the client sets itself. Values are never
    quoted back: they may be secrets."""
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise _invalid(
                f"Header name {name[:64]!r} is not a valid HTTP token (it may hold a line break, "
                "space or colon).",
                "Header names are letters, digits and !#$%&'*+-.^_`|~ only.",
            )
        if _BAD_VALUE.search(value):
            raise _invalid(
                f"The value of header '{name}' contains a line break or control character.",
                "Remove CR, LF and NUL characters from header values.",
            )
        if not value.isascii():
            raise _invalid(
                f"The value of header '{name}' contains non-ASCII characters.",
                "Percent-encode or base64-encode non-ASCII text in header values.",
            )
        if name.lower() in MANAGED_HEADERS:
            raise _invalid(
                f"Header '{name}' is set by Loom from the URL and body and cannot be given.",
                "Remove it from the headers.",
            )


class Allowlist:
    """A workspace's admitted internal hosts: ``host`` (any port) or ``host:port``, matched
    exactly after normalisation: no wildcards, no subdomains, no other ports."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._entries = frozenset(parse_allowlist_entry(entry) for entry in entries)

    def admits(self, target: Target) -> bool:
        return (target.host, None) in self._entries or (target.host, target.port) in self._entries

    def __bool__(self) -> bool:
        return bool(self._entries)


def parse_allowlist_entry(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 literal."""
    text = entry.strip()
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d{1,5}))?", text)
    if bracketed:
        host, port_text = bracketed.group(1), bracketed.group(2)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    what = f"allowlist entry {entry!r}"
    if port_text is not None and not (port_text.isdigit() and 0 < int(port_text) < 65_536):
        raise _invalid(f"The {what} has an invalid port.", "Write host or host:port.")
    normalised, _ = normalise_host(host, what=what)
    return normalised, int(port_text) if port_text is not None else None


def _embedded_ipv4(address: IPv6Address) -> tuple[IPv4Address | None, str]:
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None, ""


def _canonical_numeric_host(url: str) -> tuple[str, str | None]:
    """Rewrite a numeric IPv4 host (``0177.0.0.1``, ``0x7f.1``, ``2130706433``) to dotted
    form before httpx parses the URL (httpx refuses some spellings and keeps others as
    names); also return the host as written. ``parse_url`` normalises httpx's own host
    afterwards, so a disagreement between this scan and httpx cannot let a host through."""
    match = _AUTHORITY.match(url)
    if match is None:
        return url, None
    written = match.group("host")
    v4 = _numeric_ipv4(written.rstrip(".").lower(), "URL")
    if v4 is None:
        return url, None
    return f"{match.group('head')}{v4}{url[match.end() :]}", written


def _numeric_ipv4(host: str, what: str) -> IPv4Address | None:
    """The IPv4 address a host spells the way inet_aton and browsers read it (1-4 parts,
    each decimal, 0x-hex or 0-octal), None for a name; a host ending in a number that is
    not a valid address is refused, as the WHATWG URL standard does."""
    parts = host.split(".")
    if not re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]*", parts[-1]):
        return None
    numbers = [_ipv4_part(part) for part in parts]
    if len(parts) > 4 or None in numbers:
        raise _invalid(f"The {what} host {host!r} looks like an IPv4 address but is not one.")
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        raise _invalid(f"The {what} host {host!r} is an IPv4 address out of range.")
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(head))
    return IPv4Address(value)


def _ipv4_part(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16) if re.fullmatch(r"[0-9a-fA-F]*", part[2:]) else None
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if re.fullmatch(r"[0-7]+", part) else None
    return int(part) if part.isdigit() and part.isascii() else None


def _invalid(message: str, solution: str = "Fix the URL.") -> InvalidOutboundRequest:
    return InvalidOutboundRequest(message, solution=solution)
