"""`slm serve`: run the API server in the foreground."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--host", help="address to bind, host[:port] (default: SLM_HOST)")
    cmd.add_argument("--port", type=_no_port, help=argparse.SUPPRESS)  # a hint, not an option
    cmd.add_argument("--no-preload", action="store_true", help="do not load the default model at start")
    cmd.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback address without any API key"
    )
    cmd.add_argument("--tls-cert", help="TLS certificate (PEM), serves https (default: SLM_TLS_CERT)")
    cmd.add_argument("--tls-key", help="TLS private key (PEM) (default: SLM_TLS_KEY)")


def _no_port(value: str) -> str:
    raise argparse.ArgumentTypeError(f"there is no --port: use --host 127.0.0.1:{value} (or SLM_HOST)")


def run(args: argparse.Namespace) -> int:
    from slmkit import logs
    from slmkit.config import Config, _host, is_loopback
    from slmkit.errors import InvalidRequest
    from slmkit.security.keys import KeyStore
    from slmkit.server.app import create_app
    from slmkit.server.runtime import run as serve

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"], overrides["port"] = _host(args.host, "--host")
        overrides["scheme"] = "https" if args.host.strip().lower().startswith("https://") else "http"
    if args.tls_cert:
        overrides["tls_cert"] = args.tls_cert
    if args.tls_key:
        overrides["tls_key"] = args.tls_key
    config = Config.from_env(**overrides)
    if bool(config.tls_cert) != bool(config.tls_key):
        raise InvalidRequest("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
    if config.scheme == "https" and not config.tls_cert:
        raise InvalidRequest(
            f"{'--host' if args.host else 'SLM_HOST'} asks for https but there is no certificate: "
            "pass --tls-cert and --tls-key (or set SLM_TLS_CERT and SLM_TLS_KEY), or use http://"
        )
    if not is_loopback(config.host) and not KeyStore(config.keys_file).keys() and not args.insecure:
        raise InvalidRequest(
            f"refusing to listen on {config.host} without an API key: anyone on the network could use it. "
            "Create one with `slm keys create`, or pass --insecure"
        )
    _check_free(config.host, config.port)
    logs.setup(config.log_format, logging.DEBUG if config.debug else logging.INFO)
    app = create_app(config, preload=not args.no_preload)
    serve(app, config)  # says where it listens once it has bound (server/runtime.py)
    return 0


def _check_free(host: str, port: int) -> None:
    """A port another program holds is one clear line before anything starts."""
    import errno
    import socket

    from slmkit.errors import InvalidRequest

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InvalidRequest(
                    f"{host}:{port} is in use by another program; choose another port with "
                    f"--host {host}:PORT (or SLM_HOST), or stop the other server (`slm stop`)"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidRequest(
                    f"{host} is not an address of this machine (--host / SLM_HOST)"
                ) from None
            raise InvalidRequest(f"cannot listen on {host}:{port}: {exc.strerror}") from None
