"""Model names: ``[host/][namespace/]model[:tag]``, Ollama's grammar.

Grammar (each part is matched case-sensitively and stored as given)::

    name      = [ host "/" ] [ namespace "/" ] model [ ":" tag ]
    host      = label *( "." label ) [ ":" port ]      ; up to 253 chars
    namespace = part                                     ; default "library"
    model     = part                                     ; required
    tag       = 1*128( ALNUM / "_" / "." / "-" ), first char ALNUM or "_"; default "latest"
    part      = ALNUM *79( ALNUM / "_" / "." / "-" )     ; never "." or ".." or empty

With a single ``/`` the first part is a namespace (``user/model``); with two it is
host/namespace/model. A name never contains ``..`` as a part, a backslash, NUL or
whitespace, so a parsed name is always safe to use as a relative path in the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slmkit.errors import InvalidName

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::[0-9]{1,5})?"
)


@dataclass(frozen=True, order=True)
class ModelName:
    """A parsed, validated model name. Build with :meth:`parse`."""

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ModelName:
        if not isinstance(text, str) or not text:
            raise InvalidName("model name is empty")
        if len(text) > 400:
            raise InvalidName("model name is longer than 400 characters")
        rest, tag = text, DEFAULT_TAG
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
        parts = rest.split("/")
        if len(parts) == 1:
            host, namespace, model = DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0]
        elif len(parts) == 2:
            host, namespace, model = DEFAULT_HOST, parts[0], parts[1]
        elif len(parts) == 3:
            host, namespace, model = parts
        else:
            raise InvalidName(f"invalid model name {text!r}: too many '/' separated parts")
        if not _HOST.fullmatch(host) or len(host) > 253:
            raise InvalidName(f"invalid model name {text!r}: bad host {host!r}")
        for label, value in (("namespace", namespace), ("model", model)):
            if not _PART.fullmatch(value):
                raise InvalidName(
                    f"invalid model name {text!r}: {label} must start with a letter or digit "
                    "and use only letters, digits, '_', '.', '-' (at most 80 characters)"
                )
        if not _TAG.fullmatch(tag):
            raise InvalidName(
                f"invalid model name {text!r}: tag must use only letters, digits, '_', '.', '-'"
            )
        return cls(host, namespace, model, tag)

    @property
    def display(self) -> str:
        """The shortest form that parses back to this name (``smollm2:135m``)."""
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def path_parts(self) -> tuple[str, str, str, str]:
        """Relative path components of this name's manifest inside the store."""
        return (self.host, self.namespace, self.model, self.tag)

    def __str__(self) -> str:
        return self.display
