"""slmkit: choose, run, serve and measure small language models on your own hardware.

import slmkit
model = slmkit.load("smollm2:135m")          # in-process engine
print(model.chat([{"role": "user", "content": "Hi"}]).text)

client = slmkit.Client()                     # a running `slm serve`
print(client.chat("smollm2:135m", [{"role": "user", "content": "Hi"}]).text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from slmkit.client import Client
    from slmkit.local import LocalModel


def load(name: str = "smollm2:135m", **kwargs: Any) -> LocalModel:
    """Load a model from the store into this process (see slmkit.local)."""
    from slmkit.local import LocalModel

    return LocalModel.open(name, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Client":
        from slmkit.client import Client

        return Client
    if name == "LocalModel":
        from slmkit.local import LocalModel

        return LocalModel
    raise AttributeError(name)


__all__ = ["Client", "LocalModel", "__version__", "load"]
