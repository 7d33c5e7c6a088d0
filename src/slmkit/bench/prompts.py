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


def workload(n: int, input_tokens: int | None, seed: int) -> list[str]:
    """``n`` prompts: fixed-length ones when ``input_tokens`` is given, else the chat set."""
    if input_tokens:
        return [fixed_length(input_tokens, seed + i) for i in range(n)]
    rng = random.Random(seed)
    return [rng.choice(CHAT_PROMPTS) for _ in range(n)]
