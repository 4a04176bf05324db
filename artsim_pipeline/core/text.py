"""Total text decoding: bytes and strings that cannot be represented are replaced or escaped, and
counted, never raised on (pure functions, no I/O).

Two kinds of bad text reach the pipeline:

- *invalid bytes*: a body that is not valid UTF-8 (or not valid in the charset it claims).
  :func:`decode_bytes` replaces each bad sequence with U+FFFD and says how many it replaced.
- *lone surrogates*: JSON may spell a UTF-16 half on its own (``"\\udfff"``); ``json.loads``
  then yields a Python string that cannot be encoded as UTF-8, and polars, Parquet and every
  file write refuse it. :func:`escape_surrogates` turns them back into ``\\udfff`` escapes inside
  JSON text (the same JSON value, now valid UTF-8), :func:`scrub_surrogates` and
  :func:`scrub_json_value` replace them with U+FFFD in decoded values.
"""

from __future__ import annotations

import codecs
import re
import threading
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_counter = threading.local()  # per thread: decodes in parallel workers keep their own counts
_COUNTING_HANDLER = "artsim-count-replace"


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    _counter.count = getattr(_counter, "count", 0) + 1
    return REPLACEMENT, exc.end  # type: ignore[attr-defined]


codecs.register_error(_COUNTING_HANDLER, _count_and_replace)


def decode_bytes(data: bytes, encoding: str | None = "utf-8") -> tuple[str, int]:
    """``data`` as text in ``encoding`` (UTF-8 when unknown); returns ``(text, replaced)``, the
    number of invalid byte sequences replaced with U+FFFD. Never raises."""
    try:
        codecs.lookup(encoding or "utf-8")
        encoding = encoding or "utf-8"
    except LookupError:
        encoding = "utf-8"
    try:
        return data.decode(encoding), 0
    except UnicodeDecodeError:
        pass
    _counter.count = 0
    text = data.decode(encoding, errors=_COUNTING_HANDLER)
    return text, _counter.count


def has_surrogates(text: str) -> bool:
    return _SURROGATE_RE.search(text) is not None


def scrub_surrogates(text: str) -> tuple[str, int]:
    """Lone surrogates in ``text`` replaced with U+FFFD; returns ``(text, replaced)``."""
    if not has_surrogates(text):
        return text, 0
    return _SURROGATE_RE.subn(REPLACEMENT, text)


def escape_surrogates(json_text: str) -> tuple[str, int]:
    """Lone surrogates in JSON text written as ``\\uXXXX`` escapes (inside JSON strings that is the
    same value); returns ``(text, escaped)``. Only JSON strings can hold them, so the document
    stays valid and now encodes as UTF-8."""
    if not has_surrogates(json_text):
        return json_text, 0
    return _SURROGATE_RE.subn(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def scrub_json_value(value: Any) -> tuple[Any, int]:
    """A decoded JSON value with every lone surrogate (in strings and keys) replaced with U+FFFD;
    returns ``(value, replaced)``. Iterative, so a deeply nested value cannot overflow the stack."""
    if isinstance(value, str):
        return scrub_surrogates(value)
    if not isinstance(value, (list, dict)):
        return value, 0
    total = 0
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        parent, key, node = stack.pop()
        if isinstance(node, str):
            fixed, n = scrub_surrogates(node)
            if n:
                parent[key] = fixed
                total += n
        elif isinstance(node, list):
            stack.extend((node, i, item) for i, item in enumerate(node))
        elif isinstance(node, dict):
            if any(isinstance(k, str) and has_surrogates(k) for k in node):
                renamed = {}
                for k, v in node.items():
                    if isinstance(k, str):
                        k, n = scrub_surrogates(k)
                        total += n
                    renamed[k] = v
                node.clear()
                node.update(renamed)
            stack.extend((node, k, v) for k, v in node.items())
    return root[0], total


def lone_surrogate_escapes(json_text: str | None) -> int:
    """How many lone surrogates (``\\udfff`` escapes that form no pair) JSON text decodes to;
    0 for text that is not JSON."""
    if not json_text or "\\u" not in json_text:
        return 0
    import json

    try:
        value = json.loads(json_text)
    except (ValueError, RecursionError):
        return 0
    return scrub_json_value(value)[1]
