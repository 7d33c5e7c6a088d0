"""The base of every request body a route or a batch line validates.

Unknown fields (in the bodies that allow them) are refused by name, once, here: a dialect
declares which it accepts and ignores (``IGNORED``), which values of an unknown field mean
"not set" (``UNSET``) and, per field, values that change nothing (``HARMLESS``).

One validator for all dialects: before pydantic looks at a body's fields, its every string
(values and mapping keys, however deep: messages, tools and their schemas, stop strings,
Modelfile text, unknown extra fields) must be encodable as UTF-8 (security/text.py). A body
that is not is refused with a 400 naming the field, before any work, so no such text ever
reaches a worker (``slmkit.load`` runs the same check). ``tests/unit/server/test_text_fields.py``
checks that every route's body model derives from :class:`RequestBody`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, model_validator

from slmkit.security.text import check_text


class RequestBody(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        check_text(data)
        return data

    IGNORED: ClassVar[frozenset[str]] = frozenset()  # unknown fields accepted and ignored
    UNSET: ClassVar[tuple[Any, ...]] = (None,)  # an unknown field with one of these is not set
    HARMLESS: ClassVar[Mapping[str, tuple[Any, ...]]] = {}  # per field: values that change nothing

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> Self:
        for name, value in (self.model_extra or {}).items():
            if name in self.IGNORED or value in self.UNSET or value in self.HARMLESS.get(name, ()):
                continue
            raise ValueError(f"{name}: this field is not supported yet")
        return self
