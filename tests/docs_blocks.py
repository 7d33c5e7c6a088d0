"""The code blocks of the README, docs/ and the examples' READMEs, with what each is marked.

Every block of a shell or Python language carries a marker on the line above its fence:

    <!-- docs-test: run -->              tests/integration/test_docs.py runs it against a real server
    <!-- docs-test: skip network -->     it needs the internet (a hub, a registry, a package index)
    <!-- docs-test: skip gpu -->         it needs a GPU
    <!-- docs-test: skip cluster -->     it needs Kubernetes, Docker or a second machine
    <!-- docs-test: skip long -->        it builds or measures for many minutes (setup, benchmarks)
    <!-- docs-test: skip reference -->   a synopsis of commands or a fragment, not a script

tests/unit/test_docs_marked.py fails on a block without one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
LANGUAGES = {"sh", "bash", "console", "shell", "python", "py"}
REASONS = {"network", "gpu", "cluster", "long", "reference"}
MARK = re.compile(r"<!--\s*docs-test:\s*(run|skip\s+(\w+))\s*-->")
FENCE = re.compile(r"^(```+)\s*([\w-]*)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    mark: str | None  # "run", "skip REASON", or None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def python(self) -> bool:
        return self.language in {"python", "py"}


def documents() -> list[Path]:
    docs, examples = sorted((ROOT / "docs").glob("*.md")), sorted(ROOT.glob("examples/*/README.md"))
    return [ROOT / "README.md", *docs, *examples]


def blocks() -> list[Block]:
    found = []
    for path in documents():
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            match = FENCE.match(lines[i])
            if not match:
                i += 1
                continue
            fence, language = match.groups()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence)), len(lines))
            if language in LANGUAGES:
                above = MARK.search(lines[i - 1]) if i else None
                mark = None if above is None else " ".join(above.group(1).split())
                found.append(Block(path, i + 1, language, "\n".join(lines[i + 1 : end]) + "\n", mark))
            i = end + 1
    return found
