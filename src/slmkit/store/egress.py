"""Where pulls may connect: public addresses only, unless a private registry is allowed.

A pull names its host, and so does every redirect a registry or CDN answers with; without a
check, ``/api/pull`` is a request forgery tool against the machine's own loopback services,
its network and the cloud metadata service. Names are checked *after* DNS resolution, by
the network backend every connection of a pull goes through, which then connects to the
address it checked: a name that resolves to a public address for the check and to a private
one for the connection (DNS rebinding) cannot slip through, and neither can a redirect.

Refused by default: loopback, private (RFC 1918, unique local), link-local, carrier-grade
NAT, unspecified, multicast and reserved addresses. ``SLM_PULL_PRIVATE=1`` allows all of
these for a registry on the local network; cloud metadata addresses stay refused. Any
connection failure reads the same (``could not reach HOST``), so a pull cannot tell a
closed port from a filtered one.

Both HTTP stacks in use get the backend: httpx (registry and blob transfers) and the httpx2
that huggingface_hub 2.x brings (Hub metadata). Neither takes a network backend in its
public API, so the transport's connection pool is built here with one; proxy variables are
therefore not used by pulls.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from slmkit.errors import PullError

# Cloud metadata services (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba, Azure wireserver).
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not public
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(address: Address, *, private: bool) -> str | None:
    """Why a pull may not connect to ``address`` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    if private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "a reserved address"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED):
        return "a private address"
    return None


Resolver = Callable[[str, int], Iterable[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (unreachable: PullError, the uniform message)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise PullError(f"could not reach {host}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedNetwork:
    """An httpcore/httpcore2 network backend: resolves, checks every address, then connects
    to a checked one. ``inner`` is the stack's own SyncBackend, ``failures`` its connect
    errors (each one reads the same to the caller)."""

    def __init__(
        self,
        inner: Any,
        failures: tuple[type[BaseException], ...],
        *,
        private: bool,
        resolver: Resolver = resolve,
    ) -> None:
        self.inner = inner
        self.failures = failures
        self.private = private
        self.resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        addresses = list(self.resolver(host, port))
        for text in addresses:  # one bad address refuses the name: no picking the good one
            why = refusal(ipaddress.ip_address(text.split("%")[0]), private=self.private)
            if why is not None:
                hint = "" if "metadata" in why else " (set SLM_PULL_PRIVATE=1 for a private registry)"
                raise PullError(f"pulls may not connect to {host}: it resolves to {why}{hint}")
        for text in addresses:
            try:
                return self.inner.connect_tcp(text, port, timeout, local_address, socket_options)
            except self.failures:
                continue
        raise PullError(f"could not reach {host}")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise PullError("pulls connect over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def transport(*, private: bool, resolver: Resolver = resolve, inner: Any = None) -> Any:
    """An httpx transport whose every connection passes the guard (``resolver`` and
    ``inner``, the backend that connects, are seams for tests)."""
    import httpcore
    import httpx

    out = httpx.HTTPTransport(trust_env=False)
    out._pool = httpcore.ConnectionPool(  # httpx takes no network backend
        ssl_context=httpx.create_ssl_context(),
        network_backend=GuardedNetwork(  # type: ignore[arg-type]  # duck-typed NetworkBackend
            inner or httpcore.SyncBackend(),
            (httpcore.ConnectError, httpcore.ConnectTimeout),
            private=private,
            resolver=resolver,
        ),
    )
    return out


_hub_lock = threading.Lock()
_hub_private: bool | None = None  # the policy huggingface_hub's client was built with


def guard_hub(*, private: bool) -> None:
    """Make huggingface_hub's shared HTTP client connect through the guard (once per policy:
    replacing it closes the client other pulls may be using)."""
    global _hub_private
    with _hub_lock:
        if _hub_private is private:
            return
        import httpcore2
        import httpx2
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils import _http

        def factory() -> Any:
            guarded = httpx2.HTTPTransport(trust_env=False)
            guarded._pool = httpcore2.ConnectionPool(
                ssl_context=httpx2.create_ssl_context(),
                network_backend=GuardedNetwork(  # type: ignore[arg-type]
                    httpcore2.SyncBackend(),
                    (httpcore2.ConnectError, httpcore2.ConnectTimeout),
                    private=private,
                ),
            )
            return httpx2.Client(
                transport=guarded,
                event_hooks={"request": [_http.hf_request_event_hook]},
                follow_redirects=True,
                timeout=None,
            )

        set_client_factory(factory)
        _hub_private = private
