from __future__ import annotations

import psutil
import pytest

from slmkit.errors import TemplateError
from slmkit.template import FALLBACK_TEMPLATE, ChatTemplate

MESSAGES = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]


def test_renders_chatml() -> None:
    out = ChatTemplate(FALLBACK_TEMPLATE).render(MESSAGES)
    assert out == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


def test_exposes_bos_eos_and_helpers() -> None:
    t = ChatTemplate(
        "{{ bos_token }}{{ messages[0].content | tojson }}{{ eos_token }}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert t.render([{"role": "user", "content": 'a"b'}]) == '<s>"a\\"b"</s>'


def test_raise_exception_becomes_template_error() -> None:
    t = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(TemplateError, match="roles must alternate"):
        t.render(MESSAGES)


PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('id') }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{% set x = namespace() %}{{ x.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ messages.append(1) }}",
    "{{ (1).__class__.__base__.__subclasses__() }}",
]

RUNAWAY = [
    "{% for x in range(10**9) %}{% endfor %}",
    "{% for x in range(100000) %}{% for y in range(100000) %}{% endfor %}{% endfor %}",
    "{% set s = 'a' * 100000 %}{% for x in s %}{% for y in s %}{% endfor %}{% endfor %}",
    "{{ 'a' * 10**9 }}",
    "{{ [1] * 10**9 }}",
    "{{ 2 ** 100000 }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% for x in range(100000) %}{{ '" + "a" * 50 + "' }}{% endfor %}",
    # memory before time: doubling by concatenation, joins of large lists, float overflow
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{{ (['x' * 1000000] * 100) | join }}",
    "{{ 1.5 ** 64 ** 1.5 * 10.0 ** 300 }}",
    "{{ 1 // 0 }}",
]


def test_growth_is_refused_for_size_not_time() -> None:
    """The doubling loop ends on the size cap, long before the deadline could stop it."""
    doubling = (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="too large"):
        ChatTemplate(doubling, timeout=60).render(MESSAGES)
    ok = "{{ 'a' ~ 'b' }}{{ messages | map(attribute='content') | join(', ') }}"
    assert ChatTemplate(ok).render(MESSAGES).startswith("ab")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_is_blocked(payload: str) -> None:
    before = _children()
    with pytest.raises(TemplateError):
        ChatTemplate(payload).render(MESSAGES)
    assert _children() == before


@pytest.mark.parametrize("payload", RUNAWAY)
def test_runaway_templates_are_bounded(payload: str) -> None:
    with pytest.raises(TemplateError):  # it ends (pytest-timeout would catch a hang) with our error
        ChatTemplate(payload, timeout=0.5).render(MESSAGES)


def test_syntax_error_is_template_error() -> None:
    with pytest.raises(TemplateError, match="does not compile"):
        ChatTemplate("{% for %}")


def test_trace_is_restored() -> None:
    import sys

    before = sys.gettrace()
    ChatTemplate(FALLBACK_TEMPLATE).render(MESSAGES)
    assert sys.gettrace() is before


def _children() -> int:
    return len(psutil.Process().children(recursive=True))


WIDENING = [
    "{{ 'x' | center(10**9) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a'.zfill(10**9) }}",
    "{{ 'x' | indent(10**9, true) }}",
    "{{ '{:>1000000000}'.format(1) }}",  # a constant call: jinja's optimizer would fold it unchecked
    "{{ '{:>{w}}'.format(1, w=10**9) }}",
    "{{ '{x:>{w}}'.format_map({'x': 1, 'w': 10**9}) }}",
    "{{ '%1000000000s' % 'a' }}",
    "{{ '%*s' % (10**9, 'a') }}",
    "{{ 'ab' | replace('a', 'a' * 100000) | replace('a', 'a' * 100000) }}",
    "{{ 'a\tb'.expandtabs(10**9) }}",
]


@pytest.mark.parametrize("payload", WIDENING)
def test_calls_that_widen_a_string_are_refused_before_they_run(payload: str) -> None:
    """Each would build a string of a gigabyte or more in one call (no deadline can stop a
    single call): refused by size before it runs, at once even with a long deadline."""
    with pytest.raises(TemplateError, match="too large"):
        ChatTemplate(payload, timeout=60).render(MESSAGES)


def test_ordinary_formatting_still_works() -> None:
    ok = (
        "{{ '{} and {}'.format('a', 'b') }}|{{ '%s-%d' % ('x', 2000000000) }}|"
        "{{ 'ab'|center(6) }}|{{ 'a b'|replace(' ', '_') }}"
    )
    assert ChatTemplate(ok).render(MESSAGES) == "a and b|x-2000000000|  ab  |a_b"
