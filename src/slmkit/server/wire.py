"""The base of every request body a route or a batch line validates.

One validator for all dialects: before pydantic looks at a body's fields, its every string
(values and mapping keys, however deep: messages, tools and their schemas, stop strings,
Modelfile text, unknown extra fields) must be encodable as UTF-8 (security/text.py). A body
that is not is refused with a 400 naming the field, before any work, so no such text ever
reaches a worker (``slmkit.load`` runs the same check). ``tests/unit/server/test_text_fields.py``
checks that every route's body model derives from :class:`RequestBody`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator

from slmkit.security.text import check_text


class RequestBody(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        check_text(data)
        return data
