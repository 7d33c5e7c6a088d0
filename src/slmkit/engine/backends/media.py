"""Images for llama.cpp models: the vision projector (libmtmd, through llama-cpp-python's
bindings), owned by the llama backend of the model it belongs to.

A prompt with images is tokenized by libmtmd into text tokens and image chunks. The engine
sees one token list: each image chunk stands as a run of one negative placeholder id, as long
as the tokens the image takes, derived from the image's content hash and its place in the
prompt. So the scheduler (pure, token counts only) budgets images like text, a slot's prefix
cache matches a second turn about the same image, and no placeholder ever reaches llama.cpp:
the scheduler never splits a run, and the backend encodes the run's image (``evaluate``)
before the step's batch, at the run's position in the request's sequence.

Images arrive decoded (RGB bytes, decoded and bounded in the API process, answer/media.py):
no image file parser runs in the worker.
"""

from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass, field
from typing import Any

from slmkit.errors import EngineError, InvalidRequest, ModelLoadError
from slmkit.pipe import MEDIA_MARKER, Image


def placeholder(content_id: bytes, index: int) -> int:
    """The id an image's tokens stand as: negative, from its content and its place."""
    digest = hashlib.sha256(content_id + b"#" + str(index).encode()).digest()
    return -1 - int.from_bytes(digest[:7], "big")


@dataclass
class _Prompt:
    chunks: Any  # mtmd_input_chunks_p: owns the image chunks below
    spans: dict[int, Any] = field(default_factory=dict)  # position -> mtmd_input_chunk_p


class Projector:
    """A model's vision projector and the image chunks of its requests' prompts."""

    def __init__(self, path: str, model: Any, threads: int, kind: str, single_token: Any) -> None:
        import llama_cpp.mtmd_cpp as mtmd
        from llama_cpp import _logger

        self._mtmd = mtmd
        # libmtmd's log through llama-cpp-python's callback: errors only, as llama.cpp's
        mtmd.mtmd_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.warmup = False
        params.n_threads = max(1, threads)
        params.media_marker = MEDIA_MARKER.encode()
        if kind == "idefics3":  # its image slicing looks these up as single tokens, or aborts
            for text in ("\n", "\n\n"):
                if not single_token(text):
                    raise ModelLoadError(
                        f"this model's vocabulary has no single token for {text!r}, which its "
                        "Idefics3 projector needs: it cannot take images"
                    )
        self.ctx = mtmd.mtmd_init_from_file(path.encode(), model, params)
        if not self.ctx:
            raise ModelLoadError("llama.cpp could not load the vision projector (is it for this model?)")
        if not mtmd.mtmd_support_vision(self.ctx):
            self.close()
            raise ModelLoadError("the projector does not take images")
        if mtmd.mtmd_decode_use_mrope(self.ctx):
            self.close()
            raise ModelLoadError(
                "vision models with M-RoPE positions (Qwen2-VL and kin) are not supported yet"
            )
        self._prompts: dict[str, _Prompt] = {}

    def tokenize(
        self, request_id: str, text: str, images: tuple[Image, ...], add_special: bool, offset: int
    ) -> list[int]:
        """``text`` (one MEDIA_MARKER per image) as tokens, each image a run of its
        placeholder; ``offset``: the position of the first token in the sequence."""
        mtmd = self._mtmd
        if text.count(MEDIA_MARKER) != len(images):
            placed = text.count(MEDIA_MARKER)
            raise InvalidRequest(f"images: the prompt places {placed} images, the request has {len(images)}")
        bitmaps = []
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            for image in images:
                data = (ctypes.c_uint8 * len(image.rgb)).from_buffer_copy(image.rgb)
                bitmap = mtmd.mtmd_bitmap_init(image.width, image.height, data)
                if not bitmap:
                    raise InvalidRequest("images: llama.cpp could not take an image")
                mtmd.mtmd_bitmap_set_id(bitmap, image.digest.encode())
                bitmaps.append(bitmap)
            raw = text.encode("utf-8")
            query = mtmd.mtmd_input_text(raw, len(raw), add_special, True)
            array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            code = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(query), array, len(bitmaps))
            if code != 0:
                raise InvalidRequest(f"images: llama.cpp could not read the prompt's images (code {code})")
            prompt = _Prompt(chunks)
            tokens = self._flatten(prompt, offset)
        except BaseException:
            mtmd.mtmd_input_chunks_free(chunks)
            raise
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        self.forget(request_id)
        self._prompts[request_id] = prompt
        return tokens

    def _flatten(self, prompt: _Prompt, offset: int) -> list[int]:
        mtmd = self._mtmd
        tokens: list[int] = []
        for i in range(mtmd.mtmd_input_chunks_size(prompt.chunks)):
            chunk = mtmd.mtmd_input_chunks_get(prompt.chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens += [int(pointer[j]) for j in range(n.value)]
            elif kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
                if int(mtmd.mtmd_input_chunk_get_n_pos(chunk)) != n_tokens:
                    raise InvalidRequest("images: this model places image tokens in a way not supported yet")
                prompt.spans[offset + len(tokens)] = chunk
                tokens += [placeholder(mtmd.mtmd_input_chunk_get_id(chunk) or b"", i)] * n_tokens
            else:
                raise InvalidRequest("only images are supported (not audio)")
        return tokens

    def evaluate(self, request_id: str, position: int, context: Any, seq: int, n_batch: int) -> None:
        """Encode the image whose run starts at ``position`` and put it in ``seq``'s cache."""
        prompt = self._prompts.get(request_id)
        chunk = prompt.spans.get(position) if prompt is not None else None
        if chunk is None:
            raise EngineError("an image of this request is no longer held")
        after = ctypes.c_int32(0)  # llama_pos
        code = self._mtmd.mtmd_helper_eval_chunk_single(
            self.ctx, context, chunk, position, seq, n_batch, False, ctypes.byref(after)
        )
        if code != 0:
            raise EngineError(f"llama.cpp could not encode an image (code {code})")

    def forget(self, request_id: str) -> None:
        prompt = self._prompts.pop(request_id, None)
        if prompt is not None:
            self._mtmd.mtmd_input_chunks_free(prompt.chunks)

    def close(self) -> None:
        for request_id in list(getattr(self, "_prompts", {})):
            self.forget(request_id)
        if self.ctx:
            self._mtmd.mtmd_free(self.ctx)
            self.ctx = None
