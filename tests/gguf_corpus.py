"""A generated corpus of malformed GGUF files (SECURITY.md L1, O4, O8, O9).

``build`` writes GGUF bytes field by field, so each case below breaks exactly one rule.
Run as a script to write the corpus to a folder: ``python -m tests.gguf_corpus OUT``.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from pathlib import Path

U8, I32, U32, F32, BOOL, STRING, ARRAY, U64 = 0, 5, 4, 6, 7, 8, 9, 10
F32_TYPE, Q4_0 = 0, 2


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_string(key: str, value: str) -> bytes:
    return s(key) + struct.pack("<I", STRING) + s(value)


def kv_u32(key: str, value: int) -> bytes:
    return s(key) + struct.pack("<I", U32) + struct.pack("<I", value)


def tensor_info(name: str, dims: list[int], kind: int, offset: int) -> bytes:
    return (
        s(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", kind, offset)
    )


def build(
    *,
    magic: bytes = b"GGUF",
    version: int = 3,
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    n_tensors: int | None = None,
    n_kv: int | None = None,
    data: bytes | None = None,
    alignment: int = 32,
) -> bytes:
    kvs = kvs if kvs is not None else [kv_string("general.architecture", "llama")]
    tensors = tensors if tensors is not None else [tensor_info("t0", [4, 2], F32_TYPE, 0)]
    head = magic + struct.pack(
        "<IQQ", version, len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv
    )
    body = head + b"".join(kvs) + b"".join(tensors)
    body += b"\0" * (-len(body) % alignment)
    return body + (data if data is not None else b"\0" * 32)


VALID = build()


def cases() -> Iterator[tuple[str, bytes]]:
    arch = kv_string("general.architecture", "llama")
    yield "empty", b""
    yield "bad-magic", build(magic=b"GGUX")
    yield "version-1", build(version=1)
    yield "version-future", build(version=99)
    yield "huge-tensor-count", build(n_tensors=2**63)
    yield "huge-kv-count", build(n_kv=2**63)
    yield "more-kvs-than-present", build(n_kv=5)
    yield "more-tensors-than-present", build(n_tensors=7)
    yield "key-length-huge", build(kvs=[struct.pack("<Q", 2**62) + b"x"])
    yield "string-length-past-end", build(kvs=[s("general.architecture") + struct.pack("<IQ", STRING, 10**9)])
    yield "bad-value-type", build(kvs=[arch, s("x") + struct.pack("<I", 99) + b"\0" * 8])
    yield "duplicate-key", build(kvs=[arch, arch])
    yield "array-count-huge", build(kvs=[arch, s("a") + struct.pack("<IIQ", ARRAY, U8, 2**40)])
    yield "array-count-past-end", build(kvs=[arch, s("a") + struct.pack("<IIQ", ARRAY, U32, 10**6)])
    yield (
        "nested-array",
        build(kvs=[arch, s("a") + struct.pack("<IIQ", ARRAY, ARRAY, 1) + struct.pack("<IQ", U8, 0)]),
    )
    yield (
        "string-array-bad-length",
        build(kvs=[arch, s("a") + struct.pack("<IIQ", ARRAY, STRING, 2) + struct.pack("<Q", 2**60)]),
    )
    yield "bad-utf8-key", build(kvs=[arch, s(b"\xff\xfe") + struct.pack("<IB", U8, 1)])
    for value in (0, 3, 2**31 + 1):
        yield f"alignment-{value}", build(kvs=[arch, kv_u32("general.alignment", value)])
    yield "alignment-wrong-type", build(kvs=[arch, kv_string("general.alignment", "32")])
    yield "no-architecture", build(kvs=[kv_u32("general.file_type", 1)])
    yield "no-tensors", build(tensors=[])
    yield "tensor-name-too-long", build(tensors=[tensor_info("t" * 64, [4], F32_TYPE, 0)])
    yield "tensor-five-dims", build(tensors=[tensor_info("t", [1, 1, 1, 1, 1], F32_TYPE, 0)])
    yield "tensor-zero-dims", build(tensors=[s("t") + struct.pack("<IIQ", 0, F32_TYPE, 0)])
    yield "tensor-zero-extent", build(tensors=[tensor_info("t", [4, 0], F32_TYPE, 0)])
    yield "tensor-dims-overflow", build(tensors=[tensor_info("t", [2**32, 2**32, 2**32], F32_TYPE, 0)])
    yield "tensor-huge-dim", build(tensors=[tensor_info("t", [2**63], F32_TYPE, 0)])
    yield "tensor-bad-type", build(tensors=[tensor_info("t", [4], 77, 0)])
    yield "tensor-partial-block", build(tensors=[tensor_info("t", [31], Q4_0, 0)])
    yield "tensor-offset-unaligned", build(tensors=[tensor_info("t", [4], F32_TYPE, 3)])
    yield "tensor-offset-past-end", build(tensors=[tensor_info("t", [4], F32_TYPE, 2**40)])
    yield "tensor-offset-wraps", build(tensors=[tensor_info("t", [4], F32_TYPE, 2**64 - 32)])
    yield "tensor-data-one-byte-short", build(data=b"\0" * 31)
    yield (
        "duplicate-tensor",
        build(tensors=[tensor_info("t", [4], F32_TYPE, 0), tensor_info("t", [4], F32_TYPE, 0)]),
    )
    yield (
        "overlapping-tensors",
        build(tensors=[tensor_info("a", [8], F32_TYPE, 0), tensor_info("b", [8], F32_TYPE, 0)]),
    )
    for cut in range(4, len(VALID) - 1, 7):
        yield f"truncated-at-{cut}", VALID[:cut]


def write_corpus(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in cases():
        path = out / f"{name}.gguf"
        path.write_bytes(data)
        paths.append(path)
    return paths


if __name__ == "__main__":
    print(len(write_corpus(Path(sys.argv[1]))), "files")
