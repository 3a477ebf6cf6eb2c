"""The code blocks of a Markdown file, as a reader sees them (parsed with markdown-it, CommonMark).

A block is run by tests/docs/test_readme.py unless an HTML comment `<!-- not run: reason -->` stands
right before it (blank lines allowed in between). Shell blocks: ```bash / sh / shell / console;
Python blocks: ```python / py. Other fences (output examples, trees, YAML) are text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py", "python3"}
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.*?)\s*-->\s*$", re.S)


@dataclass(frozen=True)
class Block:
    """One fenced code block: `kind` shell or python, `line` (1-based, of the fence), `not_run` reason or None."""

    kind: str
    code: str
    line: int
    not_run: str | None

    @property
    def id(self) -> str:
        first = next((ln.strip() for ln in self.code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
        return f"L{self.line}-{self.kind}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', first)[:40]}"


def code_blocks(markdown: str) -> list[Block]:
    """Every shell and Python block of `markdown`, in order, with its `not run` mark (if any)."""
    from markdown_it import MarkdownIt

    blocks, previous = [], None
    for token in MarkdownIt("commonmark").parse(markdown):
        if token.type == "fence":
            lang = (token.info.split() or [""])[0].lower()
            kind = "shell" if lang in SHELL else "python" if lang in PYTHON else None
            if kind is not None:
                mark = NOT_RUN.match(previous.content) if previous is not None and previous.type == "html_block" else None
                blocks.append(Block(kind, token.content, token.map[0] + 1, mark.group("reason") if mark else None))
        if token.level == 0 and token.type.endswith(("_open", "fence", "html_block", "code_block", "hr")):
            previous = token  # the top-level element before the next block
    return blocks
