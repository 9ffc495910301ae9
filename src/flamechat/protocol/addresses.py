"""Where a node may be, and where this node will never connect: pure rules.

A node's URL is whatever it registered with the directory, and every other
node then calls it (deliveries, presence, profiles, blobs). A hostile node
could register an address that makes its peers call something else on their
side of the network (server-side request forgery). Two rules bound that:

* a registered URL is a plain base URL (:func:`base_url_problem`): scheme,
  host, optional port and path, nothing that would let the peer's request
  land on another path (no query, fragment, user name, backslash, space or
  control character), since peers append ``/federation/v1/...`` to it;
* no connection is ever made to a link-local, multicast, broadcast or
  unspecified address (:func:`refused_address`): cloud metadata services
  live at link-local addresses, and no node does.

Loopback and private addresses stay allowed: a company's nodes live on its
LAN, and a development network on loopback (``docs/threat-model.md`` says
what is left).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# The IPv6 address of one cloud's instance metadata, inside the private (ULA) range.
_METADATA_V6 = ipaddress.IPv6Address("fd00:ec2::254")


def base_url_problem(url: str) -> str | None:
    """Why ``url`` is not a plain ``http(s)://host[:port][/path]`` base URL, or None."""
    if not url.isascii() or any(c <= " " or c in "\\\x7f" for c in url):
        return "must be ASCII without spaces, control characters or backslashes"
    if "?" in url or "#" in url:
        return "must not have a query or a fragment"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "has a malformed host or port"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if "@" in parts.netloc:
        return "must not hold a user name or password"
    if not parts.hostname or port == 0:
        return "must name a host (and a port other than 0)"
    return None


def refused_address(host: str) -> str | None:
    """Why this node never connects to the IP address ``host``, or None."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone says nothing here
    except ValueError:
        return None  # not an address: names are checked once resolved
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local or address == _METADATA_V6:
        return f"{host} is link-local (where cloud metadata services live), never a node"
    if address.is_multicast or address.is_unspecified:
        return f"{host} is a multicast or unspecified address, never a node"
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return f"{host} is the broadcast address, never a node"
    return None
