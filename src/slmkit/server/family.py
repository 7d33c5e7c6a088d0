"""An endpoint family: its routes and the error body its paths answer in.

Each family is a package of the same shape: ``protocol.py`` (wire types and conversions,
pure), ``serving.py`` (what a request does), ``router.py`` (the routes), and
``family()`` in its ``__init__``. The app (server/app.py, the composition root) mounts the
families and registers their error shapes; no other module of the server root imports a
family (tests/unit/test_boundaries.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from slmkit.server.errors import ErrorShape


@dataclass(frozen=True)
class Family:
    name: str
    routers: tuple[APIRouter, ...]
    errors: tuple[ErrorShape, ...] = ()
