"""Workloads: realistic chat prompts shipped with slmkit, and fixed-length synthetic prompts."""

from __future__ import annotations

import random

CHAT_PROMPTS = [
    "Explain in simple terms why the sky is blue.",
    "Write a short, friendly email declining a meeting invitation for Thursday.",
    "What are three good habits for learning a new programming language?",
    "Summarize the plot of Romeo and Juliet in four sentences.",
    "Give me a recipe for a quick vegetarian pasta dinner.",
    "How does a refrigerator keep food cold?",
    "Suggest five names for a small coffee shop near a university.",
    "What is the difference between a virus and a bacterium?",
    "Write a haiku about the first snow of winter.",
    "Plan a three-day trip to Lisbon on a modest budget.",
    "Explain what a hash table is and when to use one.",
    "List the pros and cons of working from home.",
    "How do I politely ask my neighbour to keep the noise down at night?",
    "Describe photosynthesis to a ten-year-old.",
    "What should I check before buying a used bicycle?",
    "Translate 'Where is the train station?' into French, Spanish and German.",
]

_WORDS = [
    "the",
    "river",
    "lamp",
    "harbor",
    "quiet",
    "morning",
    "stone",
    "window",
    "garden",
    "letter",
    "orange",
    "market",
    "bridge",
    "travel",
    "paper",
    "winter",
    "summer",
    "music",
    "simple",
    "careful",
    "history",
    "table",
    "little",
    "bright",
    "number",
    "forest",
]


def fixed_length(tokens: int, seed: int) -> str:
    """A prompt of roughly ``tokens`` tokens (about one token per short English word)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(max(1, tokens)))


def multi_turn(n: int, turns: int, seed: int) -> list[str]:
    """``n`` prompts from conversations of ``turns`` turns: turn t repeats turns 1..t-1 (with
    short replies) before its question, so later turns share a growing prefix with earlier
    ones, as chats do. Conversations are interleaved: c0t0, c1t0, ..., c0t1, ..."""
    rng = random.Random(seed)
    conversations = max(1, -(-n // turns))
    history = [[rng.choice(CHAT_PROMPTS) for _ in range(turns)] for _ in range(conversations)]
    out = []
    for t in range(turns):
        for questions in history:
            past = "".join(f"User: {q}\nAssistant: Sure, here is a short answer.\n" for q in questions[:t])
            out.append(f"{past}User: {questions[t]}\nAssistant:")
    return out[:n]


def workload(n: int, input_tokens: int | None, seed: int, turns: int = 1) -> list[str]:
    """``n`` prompts: fixed-length ones when ``input_tokens`` is given, multi-turn chats when
    ``turns`` > 1, else the chat set."""
    if input_tokens:
        return [fixed_length(input_tokens, seed + i) for i in range(n)]
    if turns > 1:
        return multi_turn(n, turns, seed)
    rng = random.Random(seed)
    return [rng.choice(CHAT_PROMPTS) for _ in range(n)]
