"""A small nginx config parser, enough to look at directives per block: the unit tests of
the router's and the gates' templates read their renderings with it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Block:
    name: str
    args: list[str]
    children: list[Block] = field(default_factory=list)

    def all(self, name: str) -> list[Block]:
        return [c for c in self.children if c.name == name]

    def one(self, name: str) -> Block:
        found = self.all(name)
        assert len(found) == 1, f"{name}: {len(found)} in {self.name} {self.args}"
        return found[0]

    def values(self, name: str) -> list[list[str]]:
        return [c.args for c in self.all(name)]

    def location(self, path: str) -> Block:
        found = [c for c in self.all("location") if c.args[-1] == path]
        assert len(found) == 1, path
        return found[0]


_TOKEN = re.compile(
    r"""\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|('(?:[^'\\]|\\.)*')|([{};])|([^\s{};"']+))"""
)


def parse(text: str) -> Block:
    root = Block("root", [])
    stack, words = [root], []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                raise AssertionError(f"cannot parse at {text[pos : pos + 40]!r}")
            break
        pos = m.end()
        comment, dq, sq, punct, word = m.groups()
        if comment:
            continue
        if punct == ";":
            stack[-1].children.append(Block(words[0], words[1:]))
            words = []
        elif punct == "{":
            block = Block(words[0], words[1:])
            stack[-1].children.append(block)
            stack.append(block)
            words = []
        elif punct == "}":
            assert not words, words
            stack.pop()
        else:
            token = dq or sq or word
            words.append(token[1:-1] if (dq or sq) else token)
    assert len(stack) == 1 and not words, "unbalanced braces"
    return root
