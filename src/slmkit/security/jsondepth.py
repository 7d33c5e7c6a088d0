"""How deep a JSON text nests, found without parsing it (a parser recurses, and a body of
ten thousand brackets would exhaust its stack)."""

from __future__ import annotations


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether JSON nesting in ``body`` goes deeper than ``limit`` (strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False
