"""Choosing and running the client for a pull reference: the server's /api/pull and
`slm pull --local` (no server: init containers) share it."""

from __future__ import annotations

from collections.abc import Callable

from slmkit.config import Config
from slmkit.names import ModelName
from slmkit.store.hub import HubClient, is_hub_ref, parse_hub_ref
from slmkit.store.registry import Progress, RegistryClient
from slmkit.store.store import ModelStore

PullClient = RegistryClient | HubClient


def pull_client(store: ModelStore, config: Config, ref: str, *, max_bytes: int | None = None) -> PullClient:
    """The client that pulls ``ref``: Hugging Face for ``hf.co/...``, else an Ollama registry."""
    if is_hub_ref(ref):
        return HubClient(
            store,
            endpoint=config.hf_endpoint,
            token=config.hf_token,
            allowed_hosts=config.allowed_hosts,
            private=config.pull_private,
            max_bytes=max_bytes,
        )
    ModelName.parse(ref)  # a bad name fails before any connection
    return RegistryClient(store, allowed_hosts=config.allowed_hosts, private=config.pull_private)


def run_pull(
    client: PullClient, config: Config, ref: str, *, insecure: bool, progress: Callable[[Progress], None]
) -> None:
    if isinstance(client, HubClient):
        client.pull(parse_hub_ref(ref), progress=progress)
    else:
        client.pull(
            ModelName.parse(ref), insecure=insecure, progress=progress, default_registry=config.registry
        )
