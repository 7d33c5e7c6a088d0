"""Images in requests: the one place every dialect's images are read, bounded and decoded.

Dialects only map their fields: an OpenAI ``image_url`` data URL or a base64 string (Ollama's
``images``, Anthropic's ``image`` source, Responses' ``input_image``) becomes an
:class:`~slmkit.pipe.Image` holding the file's bytes, and a ``MEDIA_MARKER`` in the message
text where it goes. Before the request reaches a worker, :func:`decode_all` (off the event
loop) checks them against the settings and decodes them to RGB with Pillow:

- at most SLM_MAX_IMAGES images, each at most SLM_MAX_IMAGE_BYTES (checked on the base64 text
  before decoding it);
- a format of SLM_IMAGE_FORMATS (PNG, JPEG, WebP, GIF's first frame), by the file's own
  header, whatever MIME type it was sent with;
- at most SLM_MAX_IMAGE_PIXELS pixels as the header declares, checked before the pixels are
  decoded (a decompression bomb is refused unread); a truncated or corrupt file is refused.

Each refusal is a 400 naming the field and the limit. The worker gets pixels only: no image
file parser runs next to the model.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import replace

from slmkit.config import Config
from slmkit.errors import InvalidRequest, LimitExceeded
from slmkit.pipe import MEDIA_MARKER, EngineRequest, Image

PILLOW_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}


def from_base64(text: str, field: str) -> Image:
    """An image sent as base64 (Ollama, Anthropic); checked and decoded by :func:`decode`."""
    return Image(data=text.strip().encode("ascii", "replace"), field=field)


def from_bytes(data: bytes, field: str) -> Image:
    """An image file's bytes (``slmkit.load``)."""
    return from_base64(base64.b64encode(data).decode(), field)


def from_url(url: str, field: str) -> Image:
    """An image sent as a URL (OpenAI, Responses): a ``data:`` URL with base64 content. Remote
    (http/https) image URLs are not fetched: a server that fetches what a request names can be
    made to reach its own network."""
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0][:10]
        raise InvalidRequest(
            f"{field}: only data: URLs (base64) are accepted, not {scheme!r}: this server does "
            "not fetch remote images"
        )
    head, sep, body = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise InvalidRequest(f"{field}: a data URL must be base64 (data:image/png;base64,...)")
    if not head[5:].lower().startswith("image/"):
        raise InvalidRequest(f"{field}: the data URL's type {head[5:].split(';')[0]!r} is not an image type")
    return from_base64(body, field)


def _file(image: Image, limit: int) -> bytes:
    """The file's bytes from the base64 text, its size checked before decoding."""
    too_big = f"{image.field}: the image is more than {limit} bytes (SLM_MAX_IMAGE_BYTES)"
    if len(image.data) // 4 * 3 > limit + 3:
        raise LimitExceeded(too_big)
    try:
        data = base64.b64decode(image.data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{image.field}: not base64 image data") from None
    if len(data) > limit:
        raise LimitExceeded(too_big)
    if not data:
        raise InvalidRequest(f"{image.field}: the image is empty")
    return data


def placed(text: str, images: int) -> str:
    """A message's text with its images' markers before it (Ollama's and Anthropic's
    images-then-text order when a message does not say where)."""
    return MEDIA_MARKER * images + text


def check_places(request: EngineRequest) -> None:
    """Each image has exactly one place, the marker its dialect put: text that holds the
    marker itself would move the images, so it is refused."""
    texts = [request.prompt or ""]
    for message in request.messages or ():
        content = message.get("content")
        texts.append(content if isinstance(content, str) else "")
    found = sum(text.count(MEDIA_MARKER) for text in texts)
    if found != len(request.images):
        raise InvalidRequest(f"messages: the text {MEDIA_MARKER!r} is reserved (it places images)")


async def decode_all(images: tuple[Image, ...], config: Config) -> tuple[Image, ...]:
    """Check and decode a request's images (in a thread: decoding is CPU work)."""
    if not images:
        return images
    count(images, config)  # before starting a thread for them
    return await asyncio.to_thread(lambda: tuple(decode(image, config) for image in images))


def count(images: tuple[Image, ...] | list[Image], config: Config) -> None:
    if len(images) > config.max_images:
        what = "images are off here" if config.max_images == 0 else f"the limit is {config.max_images}"
        raise LimitExceeded(f"images: {len(images)} images in one request; {what} (SLM_MAX_IMAGES)")


def decode_many(images: tuple[Image, ...], config: Config) -> tuple[Image, ...]:
    count(images, config)
    return tuple(decode(image, config) for image in images)


def decode(image: Image, config: Config) -> Image:
    """One image to RGB pixels, or InvalidRequest / LimitExceeded naming its field."""
    from PIL import Image as Pillow
    from PIL import UnidentifiedImageError

    if image.rgb:
        return image
    field = image.field
    data = _file(image, config.max_image_bytes)
    allowed = [f for f, name in PILLOW_FORMATS.items() if name in config.image_formats]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: our pixel limit rules
            with Pillow.open(io.BytesIO(data), formats=allowed or None) as picture:
                if not allowed:
                    raise UnidentifiedImageError
                width, height = picture.size
                if width < 1 or height < 1 or width * height > config.max_image_pixels:
                    raise LimitExceeded(
                        f"{field}: the image declares {width}x{height} pixels, more than "
                        f"{config.max_image_pixels} (SLM_MAX_IMAGE_PIXELS)"
                    )
                picture.seek(0)  # a GIF: its first frame
                rgb = picture.convert("RGB").tobytes()
    except LimitExceeded:
        raise
    except Pillow.DecompressionBombError:  # Pillow's own, far above ours: the header said so
        raise LimitExceeded(
            f"{field}: the image declares more than {config.max_image_pixels} pixels (SLM_MAX_IMAGE_PIXELS)"
        ) from None
    except UnidentifiedImageError:
        formats = ", ".join(config.image_formats) or "none"
        raise InvalidRequest(
            f"{field}: not an image in an accepted format ({formats}; SLM_IMAGE_FORMATS)"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidRequest(
            f"{field}: the image could not be decoded ({type(exc).__name__}: truncated or corrupt)"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    return replace(image, data=b"", width=width, height=height, rgb=rgb, digest=digest)
