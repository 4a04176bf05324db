"""Maker lists as collection exports write them, broken ones included (pure Python).

A maker value is one name (``Thomas Sully``, ``Henri, Baron de Triqueti``: a comma inside one
name is not a separator), or a bracketed list whose first element kept its JSON quotes and the
rest lost them, sometimes with the comma after the quote missing too::

    ["Meissen Manufactory", Johann Joachim Kändler]      -> Meissen Manufactory | Johann Joachim Kändler
    ["Sèvres Manufactory" Jean Michel Moreau the Younger, Charles-Nicholas Dodin]
    ["Tiffany & Co."Jean Antoine Houdon, Ferdinand Barbedienne]

Placeholders ("Unknown", "Unknown, American", "Anonymous, French", "Edo artist": the one rule
of :func:`artsim_pipeline.core.names.is_anonymous`) name nobody: they are left out of the
names, listed apart (the shared finishing keeps them as the work's ``attribution_note``), and
the qualifier of an "Unknown, <qualifier>" ("American") is kept as a culture.

What cannot be read unambiguously is not guessed at: an unbalanced quote (where does the
quoted name end?) or a list that opens with ``[`` and never closes (cut short?) gives a
:class:`ParsedMakers` with a readable ``problem``, and the record is quarantined with rule
``unparseable_makers``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from artsim_pipeline.core.names import is_anonymous

__all__ = ["ParsedMakers", "parse_makers"]

# "Unknown, American", "Anonymous artist, French": the qualifier after a placeholder
_ANONYMOUS = re.compile(
    r"^(?:unknown|anonymous|anon\.?|unidentified)(?:\s+(?:artist|maker))?(?:\s*,\s*(?P<qualifier>.+))?$", re.IGNORECASE
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class ParsedMakers:
    """Maker names in order, the qualifiers of anonymous makers, or why the value is unreadable.

    ``listed``: every distinct name in the value's order, placeholders included (what a record
    stages as its makers); ``placeholders``: those of them that name nobody."""

    names: tuple[str, ...] = ()
    anonymous_qualifiers: tuple[str, ...] = ()
    problem: str | None = None
    placeholders: tuple[str, ...] = ()
    listed: tuple[str, ...] = ()


def parse_makers(value: str | None) -> ParsedMakers:
    """Parse one maker value (see the module docstring)."""
    text = (value or "").strip()
    if not text:
        return ParsedMakers()
    if text.startswith("["):
        if not text.endswith("]"):
            return ParsedMakers(problem=f"maker list {_shown(text)} opens with '[' but does not close with ']' (cut short?)")
        items, problem = _split_list(text[1:-1])
        if problem is not None:
            return ParsedMakers(problem=f"maker list {_shown(text)}: {problem}")
    else:
        if text.count('"') % 2:
            return ParsedMakers(problem=f"maker {_shown(text)} has an unbalanced quote")
        if len(text) > 1 and text.startswith('"') and text.endswith('"') and text.count('"') == 2:
            text = text[1:-1]
        items = [text]
    listed: list[str] = []
    qualifiers: list[str] = []
    for item in items:
        name = _SPACES.sub(" ", item).strip(" ,")
        if not name or name in listed:
            continue
        listed.append(name)
        anonymous = _ANONYMOUS.match(name)
        if anonymous and anonymous.group("qualifier") and is_anonymous(name):
            qualifiers.append(anonymous.group("qualifier").strip())
    placeholders = tuple(name for name in listed if is_anonymous(name))
    return ParsedMakers(tuple(n for n in listed if n not in placeholders), tuple(dict.fromkeys(qualifiers)),
                        placeholders=placeholders, listed=tuple(listed))


def _split_list(inner: str) -> tuple[list[str], str | None]:
    """Items of a bracket list's inside: ``"quoted"`` items (a comma after them is optional)
    and bare items up to the next comma."""
    items: list[str] = []
    pos, n = 0, len(inner)
    while pos < n:
        while pos < n and inner[pos] in " ,\t":
            pos += 1
        if pos >= n:
            break
        if inner[pos] == '"':
            end = inner.find('"', pos + 1)
            if end < 0:
                return [], f"the quote at character {pos + 2} is never closed"
            items.append(inner[pos + 1 : end])
            pos = end + 1
            continue
        end = inner.find(",", pos)
        end = n if end < 0 else end
        bare = inner[pos:end]
        if '"' in bare:
            return [], f"unbalanced quote in {bare.strip()!r}"
        items.append(bare)
        pos = end
    return items, None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:117] + "...")
