"""OpenAI's files and batches APIs under /v1 (the jobs themselves run in slmkit/batch/)."""

from __future__ import annotations

from slmkit.server.family import Family


def family() -> Family:
    from slmkit.server.batches.router import router

    return Family("batches", (router,))
