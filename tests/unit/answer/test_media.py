"""Images in requests (answer/media.py): what every dialect's image becomes, the limits, and
hostile files, each refused with a 400 naming the field and the limit before any pixel is
decoded where the header already says no."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import struct
import zlib
from pathlib import Path

import pytest

from slmkit.answer import media
from slmkit.config import Config
from slmkit.errors import InvalidRequest, LimitExceeded
from slmkit.pipe import MEDIA_MARKER, EngineRequest, Image, SamplingParams


def config(tmp_path: Path, **env: str) -> Config:
    return Config.from_env({"SLM_MODELS": str(tmp_path), **env})


def picture(fmt: str = "PNG", size: tuple[int, int] = (12, 8), frames: int = 1) -> bytes:
    from PIL import Image as Pillow

    buf = io.BytesIO()
    images = [Pillow.new("RGB", size, (40 * i, 100, 200)) for i in range(frames)]
    if size != (12, 8):  # noise: a file of some length (a truncated one then misses pixels)
        images = [Pillow.frombytes("RGB", size, random.Random(0).randbytes(size[0] * size[1] * 3))]
    images[0].save(buf, fmt, save_all=frames > 1, append_images=images[1:])
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_declaring(width: int, height: int, body: bytes = b"") -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, with ``body`` as its image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_each_accepted_format_decodes_to_rgb(tmp_path: Path, fmt: str) -> None:
    image = media.decode(media.from_base64(b64(picture(fmt)), "images.0"), config(tmp_path))
    assert (image.width, image.height) == (12, 8) and len(image.rgb) == 12 * 8 * 3
    assert image.data == b"" and len(image.digest) == 64  # the file is dropped once decoded


def test_a_gif_gives_its_first_frame(tmp_path: Path) -> None:
    image = media.decode(media.from_bytes(picture("GIF", frames=3), "x"), config(tmp_path))
    assert image.rgb[:3] == bytes((0, 100, 200))


def test_data_urls(tmp_path: Path) -> None:
    url = "data:image/png;base64," + b64(picture())
    assert media.decode(media.from_url(url, "f"), config(tmp_path)).width == 12
    with pytest.raises(InvalidRequest, match=r"only data: URLs.*'https'"):
        media.from_url("https://example.com/cat.png", "messages.0.content.1.image_url")
    with pytest.raises(InvalidRequest, match="must be base64"):
        media.from_url("data:image/png,rawbytes", "f")
    with pytest.raises(InvalidRequest, match="'text/plain' is not an image type"):
        media.from_url("data:text/plain;base64,aGk=", "f")


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (picture("PNG", (200, 200))[:60_000], InvalidRequest, "could not be decoded"),  # truncated
        (picture("JPEG", (200, 200))[:20_000], InvalidRequest, "could not be decoded"),
        (png_declaring(100_000, 100_000), LimitExceeded, "more than 12000000 pixels.*SLM_MAX_IMAGE_PIXELS"),
        (png_declaring(4000, 4000), LimitExceeded, "4000x4000.*SLM_MAX_IMAGE_PIXELS"),
        # a "zip bomb": 20000 x 20000 zero pixels compress to ~1 MB; refused by its header alone
        (
            png_declaring(20_000, 20_000, zlib.compress(b"\0" * 1_000_000)),
            LimitExceeded,
            "SLM_MAX_IMAGE_PIXELS",
        ),
        (b"%PDF-1.7 not an image at all", InvalidRequest, "not an image in an accepted format"),
        (b"", InvalidRequest, "empty"),
        (picture("BMP"), InvalidRequest, "accepted format"),  # a real image, not a format we take
    ],
)
def test_hostile_images_are_refused_by_name(
    tmp_path: Path, data: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        media.decode(media.from_bytes(data, "messages.0.images.0"), config(tmp_path))
    assert "messages.0.images.0" in str(caught.value)


def test_byte_and_count_limits(tmp_path: Path) -> None:
    small = config(tmp_path, SLM_MAX_IMAGE_BYTES="1024", SLM_MAX_IMAGES="2")
    big = media.from_bytes(b"x" * 5000, "images.0")
    with pytest.raises(LimitExceeded, match=r"more than 1024 bytes.*SLM_MAX_IMAGE_BYTES"):
        media.decode(big, small)  # refused on the base64 length, before decoding it
    with pytest.raises(InvalidRequest, match="not base64"):
        media.decode(Image(data=b"@@@@", field="images.0"), small)
    three = tuple(media.from_bytes(picture(), f"images.{i}") for i in range(3))
    with pytest.raises(LimitExceeded, match=r"3 images.*limit is 2.*SLM_MAX_IMAGES"):
        asyncio.run(media.decode_all(three, small))
    off = config(tmp_path, SLM_MAX_IMAGES="0")
    with pytest.raises(LimitExceeded, match="images are off"):
        asyncio.run(media.decode_all(three[:1], off))
    only_png = config(tmp_path, SLM_IMAGE_FORMATS="png")
    with pytest.raises(InvalidRequest, match=r"accepted format \(png"):
        media.decode(media.from_bytes(picture("JPEG"), "images.0"), only_png)
    with pytest.raises(InvalidRequest, match="SLM_IMAGE_FORMATS"):
        config(tmp_path, SLM_IMAGE_FORMATS="png,tiff")


def test_text_cannot_forge_an_images_place() -> None:
    one = (Image(data=b"x"),)
    ok = EngineRequest(
        "r", SamplingParams(), messages=({"role": "user", "content": f"hi{MEDIA_MARKER}"},), images=one
    )
    media.check_places(ok)
    forged = EngineRequest(
        "r",
        SamplingParams(),
        messages=({"role": "user", "content": f"{MEDIA_MARKER}{MEDIA_MARKER}"},),
        images=one,
    )
    with pytest.raises(InvalidRequest, match="reserved"):
        media.check_places(forged)
