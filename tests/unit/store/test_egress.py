"""Pull egress: checked after DNS, on every connection (redirects too), connecting to the
address that was checked; one message for every way a host can be unreachable."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import pytest

from slmkit.errors import PullError
from slmkit.names import ModelName
from slmkit.store import ModelStore, egress
from slmkit.store.registry import RegistryClient
from tests.fakes.registry import FakeRegistry
from tests.ggufs import write_tiny_gguf

PUBLIC = "93.184.216.34"  # stands for a public address; the fake backend connects it to loopback


@pytest.mark.parametrize(
    ("address", "default", "private"),
    [
        ("93.184.216.34", None, None),
        ("2606:2800:220:1::1", None, None),
        ("127.0.0.1", "a loopback address", None),
        ("::1", "a loopback address", None),
        ("::ffff:127.0.0.1", "a loopback address", None),
        ("10.1.2.3", "a private address", None),
        ("192.168.0.10", "a private address", None),
        ("172.16.5.5", "a private address", None),
        ("100.64.1.1", "a private address", None),
        ("fd12::1", "a private address", None),
        ("169.254.10.10", "a link-local address", None),
        ("fe80::1", "a link-local address", None),
        ("0.0.0.0", "a reserved address", None),  # connects to this machine
        ("224.0.0.1", "a reserved address", None),
        ("169.254.169.254", "a cloud metadata address", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address", "a cloud metadata address"),
    ],
)
def test_which_addresses_pulls_may_reach(address: str, default: str | None, private: str | None) -> None:
    ip = ipaddress.ip_address(address)
    assert egress.refusal(ip, private=False) == default
    assert egress.refusal(ip, private=True) == private


class Loopback:
    """A network backend that connects the stand-in public address to 127.0.0.1, and
    records what it was asked to connect to."""

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()
        self.connected: list[str] = []

    def connect_tcp(self, host: str, port: int, *args: Any) -> Any:
        self.connected.append(host)
        return self.inner.connect_tcp("127.0.0.1" if host == PUBLIC else host, port, *args)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


@pytest.fixture
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeRegistry]:
    r = FakeRegistry()
    r.add_model("library/tiny:1", write_tiny_gguf(tmp_path_factory.mktemp("g") / "t.gguf").read_bytes(), [])
    r.start()
    yield r
    r.stop()


def client(store: ModelStore, names: dict[str, list[str]], backend: Loopback, private: bool = False) -> Any:
    def resolver(host: str, port: int) -> list[str]:
        return names[host]

    return RegistryClient(
        store, transport=egress.transport(private=private, resolver=resolver, inner=backend)
    )


def test_the_default_refuses_a_loopback_registry_without_contacting_it(
    tmp_path: Path, reg: FakeRegistry
) -> None:
    with (
        RegistryClient(ModelStore(tmp_path)) as c,
        pytest.raises(PullError, match=r"loopback.*SLM_PULL_PRIVATE"),
    ):
        c.pull(ModelName.parse(f"{reg.host}/library/tiny:1"), insecure=True)
    assert reg.requests == []
    with RegistryClient(ModelStore(tmp_path), private=True) as c:
        c.pull(ModelName.parse(f"{reg.host}/library/tiny:1"), insecure=True)


def test_the_checked_address_is_the_one_connected(tmp_path: Path, reg: FakeRegistry) -> None:
    """A name is resolved once, checked, and connected by address: the registry is reached
    as registry.example (which no DNS knows) through the checked public address."""
    backend = Loopback()
    port = reg.host.rpartition(":")[2]
    with client(ModelStore(tmp_path), {"registry.example": [PUBLIC]}, backend) as c:
        c.pull(ModelName.parse(f"registry.example:{port}/library/tiny:1"), insecure=True)
    assert set(backend.connected) == {PUBLIC}
    assert all(headers.get("host") == f"registry.example:{port}" for _, headers in reg.requests)


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.7"], [PUBLIC, "127.0.0.1"], ["169.254.169.254"]],
    ids=["private", "one bad address among good ones", "metadata"],
)
def test_names_resolving_to_internal_addresses_are_refused(
    tmp_path: Path, reg: FakeRegistry, addresses: list[str]
) -> None:
    backend = Loopback()
    port = reg.host.rpartition(":")[2]
    names = {"registry.example": addresses}
    with (
        client(ModelStore(tmp_path), names, backend) as c,
        pytest.raises(PullError, match=r"may not connect to"),
    ):
        c.pull(ModelName.parse(f"registry.example:{port}/library/tiny:1"), insecure=True)
    assert backend.connected == [] and reg.requests == []


def test_a_redirect_to_an_internal_address_is_refused(tmp_path: Path, reg: FakeRegistry) -> None:
    internal = FakeRegistry(blobs=dict(reg.blobs))
    internal.start()
    try:
        reg.redirect_blobs_to = internal.url.replace("127.0.0.1", "internal.example")
        backend = Loopback()
        port = reg.host.rpartition(":")[2]
        names = {"registry.example": [PUBLIC], "internal.example": ["127.0.0.1"]}
        refused = r"internal\.example: it resolves to a loopback address"
        with client(ModelStore(tmp_path), names, backend) as c, pytest.raises(PullError, match=refused):
            c.pull(ModelName.parse(f"registry.example:{port}/library/tiny:1"), insecure=True)
        assert internal.requests == [] and "127.0.0.1" not in backend.connected
    finally:
        internal.stop()


def test_every_unreachable_host_reads_the_same(tmp_path: Path) -> None:
    """Closed port, silent port, unknown name: one message (no port scanning by error text)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    messages = []
    try:
        for name in (
            f"127.0.0.1:{closed_port}/library/x:1",
            f"127.0.0.1:{listener.getsockname()[1]}/library/x:1",
            "no-such-host.invalid/library/x:1",
        ):
            c = RegistryClient(ModelStore(tmp_path), private=True, timeout=1.0)
            with c, pytest.raises(PullError) as caught:
                c.pull(ModelName.parse(name), insecure=True)
            messages.append(str(caught.value).replace(name.partition("/")[0].partition(":")[0], "HOST"))
    finally:
        listener.close()
    assert messages == ["could not reach HOST"] * 3


def test_the_hub_client_connects_through_the_guard(tmp_path: Path) -> None:
    from slmkit.store.hub import HubClient, parse_hub_ref
    from tests.fakes.hub import FakeHub

    hub = FakeHub(files={})
    hub.start()
    try:
        with pytest.raises(PullError, match="loopback"):
            HubClient(ModelStore(tmp_path), endpoint=hub.url).pull(parse_hub_ref("hf.co/org/x"))
        assert hub.requests == []
        with pytest.raises(PullError, match="not found"):
            HubClient(ModelStore(tmp_path), endpoint=hub.url, private=True).pull(parse_hub_ref("hf.co/org/x"))
    finally:
        hub.stop()
