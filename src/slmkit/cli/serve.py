"""`slm serve`: run the API server in the foreground."""

from __future__ import annotations

import argparse
import logging


def run(args: argparse.Namespace) -> int:
    from slmkit.config import Config, _host
    from slmkit.server.app import create_app
    from slmkit.server.runtime import run as serve

    config = Config.from_env()
    if args.host:
        host, port = _host(args.host)
        config = Config.from_env(host=host, port=port)
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(config, preload=not args.no_preload)
    print(f"slmkit serving on {config.base_url} (models in {config.models})", flush=True)
    serve(app, config)
    return 0
