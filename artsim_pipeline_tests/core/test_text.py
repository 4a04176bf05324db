"""Total text decoding (`core/text.py`): bad bytes and lone surrogates are replaced or escaped, and counted."""

import json
import threading

from artsim_pipeline.core.text import (
    decode_bytes,
    escape_surrogates,
    lone_surrogate_escapes,
    scrub_json_value,
    scrub_surrogates,
)


def test_decode_bytes_replaces_and_counts_invalid_sequences():
    assert decode_bytes("Café".encode()) == ("Café", 0)
    assert decode_bytes(b"ab\xffcd\xe2\x82") == ("ab\ufffdcd\ufffd", 2)
    assert decode_bytes("Café".encode("latin-1"), "latin-1") == ("Café", 0)
    assert decode_bytes(b"ok", "no-such-charset") == ("ok", 0)  # an unknown charset falls back to UTF-8
    assert decode_bytes("\ufffd".encode()) == ("\ufffd", 0)  # a real U+FFFD is not a repair


def test_counts_are_per_thread():
    results = {}

    def work(n):
        results[n] = decode_bytes(b"\xff" * n)[1]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: n for n in range(1, 30)}


def test_surrogates_escaped_in_json_text_and_replaced_in_values():
    text = json.dumps({"t": "\udfff x \ud800"}, ensure_ascii=False)
    escaped, n = escape_surrogates(text)
    assert n == 2 and escaped.encode("utf-8") and json.loads(escaped) == json.loads(text)
    assert scrub_surrogates("a\udfffb") == ("a\ufffdb", 1) and scrub_surrogates("fine") == ("fine", 0)
    deep = current = []
    for _ in range(5000):  # deeper than Python's recursion limit: the walk is iterative
        current.append([])
        current = current[0]
    current.append("\udfff")
    value, n = scrub_json_value({"a\ud800": [deep, {"k": "\udc00"}]})
    assert n == 3 and list(value) == ["a\ufffd"] and value["a\ufffd"][1] == {"k": "\ufffd"}


def test_lone_surrogate_escapes_in_json_text():
    assert lone_surrogate_escapes('{"t": "\\udfff and \\ud800"}') == 2
    assert lone_surrogate_escapes('{"t": "\\ud83d\\ude00 a pair"}') == 0
    assert lone_surrogate_escapes('{"t": "\\\\udfff is a backslash, then text"}') == 0
    assert lone_surrogate_escapes("not json \\udfff") == 0 and lone_surrogate_escapes(None) == 0
