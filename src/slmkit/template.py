"""Chat templates rendered in jinja2's ImmutableSandboxedEnvironment, with limits.

A GGUF (or a Modelfile) carries its own Jinja chat template, so the template is untrusted
code (CVE-2024-34359, "Llama Drama"). The sandbox blocks attribute tricks that reach
Python internals; on top of it we bound the work a template can do: a wall-clock
deadline checked on every call, loop step and ``*``/``**`` operation, a cap on ``range``,
on repeated strings and on the rendered size. Any breach raises TemplateError.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Generator, Iterator, Sequence
from types import FrameType
from typing import Any, cast

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from slmkit.errors import TemplateError
from slmkit.gotemplate import GoTemplate, render_chat

MAX_OUTPUT_CHARS = 4 * 1024 * 1024
MAX_RANGE = 100_000
MAX_REPEAT_CHARS = 1024 * 1024


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.seconds = seconds

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise TemplateError(f"chat template took longer than {self.seconds:g}s to render")

    # Loops whose bodies call nothing (``{% for a in s %}{% for b in s %}{% endfor %}...``)
    # give the sandbox no hook, so while rendering we also trace the lines of the compiled
    # template code (and only those frames) and check the deadline there.
    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == "<template>":
            return self._trace_line
        return None

    def _trace_line(self, frame: FrameType, event: str, arg: Any) -> Any:
        self.check()
        return self._trace_line


class _LimitedEnvironment(ImmutableSandboxedEnvironment):
    """Sandbox whose calls and arithmetic check a per-render deadline."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        # optimized=False: jinja's optimizer folds constant calls at compile time, outside
        # every hook below (a constant '{:>1000000000}'.format(1) would run unchecked)
        super().__init__(trim_blocks=True, lstrip_blocks=True, autoescape=False, optimized=False)
        self.deadline: _Deadline | None = None
        self.globals["range"] = self._range
        self.globals["raise_exception"] = _raise_exception
        self.filters["tojson"] = _tojson
        self.filters["join"] = _capped(self.filters["join"], "join")
        for name in ("center", "indent", "format", "replace"):
            self.filters[name] = _sized(self.filters[name], name)

    def _tick(self) -> None:
        if self.deadline is not None:
            self.deadline.check()

    def _range(self, *args: int) -> Iterator[int]:
        rng = range(*args)
        if len(rng) > MAX_RANGE:
            raise TemplateError(f"chat template asked for range() of more than {MAX_RANGE} items")
        for value in rng:
            self._tick()
            yield value

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in GROWING:
            _check_growth(__obj.__name__, owner, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        if operator == "+":
            sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
            if sum(sizes) > MAX_REPEAT_CHARS:
                raise TemplateError("chat template built a string or list that is too large")
        if operator == "%" and isinstance(left, str):
            _check_growth("__mod__", left, (right,), {})
        if operator in {"*", "**"}:
            sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
            counts = [v for v in (left, right) if isinstance(v, int)]
            if sizes and counts and sizes[0] * max(counts[0], 0) > MAX_REPEAT_CHARS:
                raise TemplateError("chat template built a string or list that is too large")
            if operator == "**" and isinstance(right, int) and abs(right) > 64:
                raise TemplateError("chat template used an exponent that is too large")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._tick()
        value = super().getattr(obj, attribute)
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            return _sized(value, attribute, text=obj)  # the sandbox wraps these: check them here
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._tick()
        return super().getitem(obj, argument)


# str methods (and filters) whose output can be far larger than their input
GROWING = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map", "replace", "__mod__"}
)
_WIDE = re.compile(r"\d{7,}")  # a width or precision of a million or more in a format string
_NESTED = re.compile(r"\{[^{}]*\{")  # a str.format field whose spec takes a value: {:>{w}}


def _check_growth(name: str, text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a call that would build a string over MAX_REPEAT_CHARS, before it runs."""
    values = [*args, *kwargs.values()]
    if name in {"center", "ljust", "rjust", "zfill", "indent"}:
        size = max([v for v in values if isinstance(v, int)] or [0]) * max(1, text.count("\n") + 1)
    elif name == "expandtabs":
        size = len(text) * max([v for v in values if isinstance(v, int)] or [8])
    elif name == "replace":
        old, new = (str(v) for v in values[:2]) if len(values) >= 2 else ("", "")
        size = len(text) + (text.count(old) if old else len(text) + 1) * max(0, len(new) - len(old))
    else:  # format, format_map, %: widths written in the format string or passed in (``*``)
        flat = [x for v in values for x in (v if isinstance(v, tuple | list) else (v,))]
        flat += [x for v in values if isinstance(v, dict) for x in v.values()]
        passed = "*" in text if name == "__mod__" else bool(_NESTED.search(text))  # widths as values
        wide = _WIDE.search(text) or (
            passed and any(isinstance(x, int) and x > MAX_REPEAT_CHARS for x in flat)
        )
        size = MAX_REPEAT_CHARS + 1 if wide else len(text) + sum(len(x) for x in flat if isinstance(x, str))
    if size > MAX_REPEAT_CHARS:
        raise TemplateError(f"chat template built a string that is too large ({name})")


def _sized(fn: Any, name: str, text: str | None = None) -> Any:
    """``fn`` checked by _check_growth before it runs: a filter (the text is its first string
    argument) or a bound ``text.format``."""

    @functools.wraps(fn)  # keeps jinja's pass_eval_context / pass_environment markers
    def sized(*args: Any, **kwargs: Any) -> Any:
        if text is not None:
            _check_growth(name, text, args, kwargs)
        else:
            texts = [a for a in args if isinstance(a, str)]
            if texts:
                _check_growth(name, texts[0], args[args.index(texts[0]) + 1 :], kwargs)
        return fn(*args, **kwargs)

    return sized


def _capped(join: Any, name: str) -> Any:
    """A string-building function whose result may not pass MAX_REPEAT_CHARS."""

    @functools.wraps(join)  # keeps jinja's pass_eval_context marker
    def capped(*args: Any, **kwargs: Any) -> Any:
        out = join(*args, **kwargs)
        if len(out) > MAX_REPEAT_CHARS:
            raise TemplateError(f"chat template built a string that is too large ({name})")
        return out

    return capped


def _cap_concat(template: Any) -> None:
    """``a ~ b`` compiles to a call of jinja2.runtime's ``str_join`` (or ``markup_join``)
    looked up in the compiled template's module namespace; a loop of ``ns.s = ns.s ~ ns.s``
    doubles a string per step and reaches gigabytes before any deadline. Cap them there (the
    sandbox has no hook for concatenation)."""
    namespace = template.root_render_func.__globals__
    for name in ("str_join", "markup_join"):
        if name in namespace:
            namespace[name] = _capped(namespace[name], "~")


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template refused the conversation: {message}")


def _tojson(value: Any, indent: int | None = None) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, indent=indent)


class ChatTemplate:
    """A compiled chat template. ``render`` is safe to call with untrusted templates."""

    def __init__(
        self, source: str, *, bos_token: str = "", eos_token: str = "", timeout: float = 1.0
    ) -> None:
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.timeout = timeout
        self._go: GoTemplate | None = None
        if not is_jinja(source):  # Ollama's Go-template syntax (Modelfile TEMPLATE)
            self._go = GoTemplate(source, timeout=timeout)
            return
        self._env = _LimitedEnvironment()
        try:
            self._template = self._env.from_string(source)
        except JinjaTemplateError as exc:
            raise TemplateError(
                f"chat template does not compile: {exc.message or type(exc).__name__}"
            ) from exc
        _cap_concat(self._template)

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Render ``messages`` to a prompt string within the time and size limits."""
        if self._go is not None:
            return render_chat(self._go, messages)
        deadline = self._env.deadline = _Deadline(self.timeout)
        previous_trace = sys.gettrace()
        sys.settrace(deadline.trace)
        variables: dict[str, Any] = {
            "messages": list(messages),
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **(extra or {}),
        }
        parts: list[str] = []
        size = 0
        # Held here so that a render cut short is closed after the trace is removed: closed
        # under it, the generator's template frames would hit the passed deadline again while
        # exiting ("Exception ignored in: <generator ...>").
        chunks = cast(Generator[str, None, None], self._template.generate(**variables))
        try:
            for chunk in chunks:
                deadline.check()
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateError("chat template output exceeds the size limit")
                parts.append(chunk)
        except TemplateError:
            raise
        except SecurityError as exc:
            raise TemplateError("chat template tried an operation the sandbox forbids") from exc
        except JinjaTemplateError as exc:
            raise TemplateError(f"chat template failed: {exc.message or type(exc).__name__}") from exc
        except RecursionError as exc:
            raise TemplateError("chat template recursed too deeply") from exc
        except (
            TypeError,
            ValueError,
            KeyError,
            IndexError,
            AttributeError,
            ArithmeticError,  # ZeroDivisionError, OverflowError (2.0 ** 10000)
            MemoryError,
        ) as exc:
            raise TemplateError(f"chat template failed: {type(exc).__name__}") from exc
        finally:
            sys.settrace(previous_trace)
            self._env.deadline = None
            chunks.close()
        return "".join(parts)


# Used when a model has no template: the ChatML layout most small instruct models know.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def is_jinja(source: str) -> bool:
    """Whether a template is Jinja (GGUF, Hugging Face) rather than Ollama's Go templates
    (``{{ .Prompt }}``, ``{{ range .Messages }}``)."""
    import re

    if "{%" in source:
        return True
    return not re.search(r"\{\{-?\s*(\.|range\b|if\s+\.|end\b)", source)
