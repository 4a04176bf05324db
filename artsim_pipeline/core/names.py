"""Artist-name normalisation shared by pair mining and its checks (pure Python, no Dagster).

:func:`normalise_artist` turns a museum's maker string into a key that is equal for the same
person across museums, or ``None`` for placeholders that name no maker and must never match
(anonymous, unknown, unidentified, "Anonymous, French, 18th century", "Painting by Unknown",
"Unknown, American", "Ubekendt", and a culture, place or period with a role: "Edo artist",
"Netherlandish Painter"; but "Berlin Painter" and "Amasis Painter" are the conventional names
of one hand, and "Paulus Potter" a person). :func:`is_anonymous` is that test: normalisation
keeps such names out of ``artworks.artists`` (they go to ``attribution_note``):

* HTML entities are decoded (``Tiffany &amp; Co.``), case is folded, accents and Nordic
  letters are transliterated (``Hammershøi`` -> ``hammershoi``, ``æ`` -> ``ae``);
* ``Surname, Forename`` is flipped to ``Forename Surname`` (``Hammershøi, Vilhelm`` and
  ``Vilhelm Hammershøi`` are one key; ``Haarlem, Cornelis Cornelisz. van`` ->
  ``cornelis cornelisz van haarlem``);
* generational suffixes are kept (father and son are different people) but moved to one
  canonical place at the end: ``Jr.``/``Junior``/``the Younger``/``d.y.`` -> ``jr``,
  ``Sr.``/``Senior``/``the Elder``/``d.æ.`` -> ``sr``, roman numerals ``I``..``IV`` as
  written (``Velde, Willem I van de`` == ``Willem van de Velde I``);
* role and attribution prefixes are dropped (``Designed by``, ``Cast by``, ``Manufactured
  by``, ``Attributed to``, ``Workshop of``, ``After``, ``Follower of``, Danish ``Tilskrevet``,
  ``Efter``...): for weak similarity labels, a work from a master's workshop or after his
  model is evidence enough;
* parenthetical asides (``Rembrandt (Rembrandt van Rijn)`` -> ``rembrandt``), dates and
  punctuation are removed, whitespace is collapsed.

The function is deterministic and cheap (a few microseconds); callers normalise the unique
names of a table and join the keys back (see :func:`normalise_artists`).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

__all__ = ["normalise_artist", "normalise_artists", "is_anonymous", "placeholder_makers", "artist_keys"]

# Letters that NFKD does not decompose into base letter + combining mark.
_TRANSLIT = str.maketrans(
    {
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "ß": "ss",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ı": "i",
        "ħ": "h",
    }
)

_DROP_APOSTROPHES = str.maketrans("", "", "'’ʼ`´")
_PUNCT = re.compile(r"[^\w\s]|_")
_HAS_DIGIT = re.compile(r"\d")
# cheap guard before the suffix-phrase patterns below
_SUFFIX_HINT = re.compile(r"\b(?:the|den|der|d)\b")
_BRACKETS = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT_TOKEN = re.compile(r"\S*\d\S*")

# Qualifiers at the start of a maker string (applied repeatedly, on the folded string).
_PREFIX = re.compile(
    r"^(?:"
    r"and|&|the"
    r"|(?:attributed|attrib\.?|ascribed)\s+to"
    r"|(?:possibly|probably|perhaps)(?:\s+by)?"
    r"|(?:workshop|studio|atelier|circle|followers?|school|manner|style|entourage|shop)\s+of"
    r"|(?:copy|probably|possibly)\s+after"
    r"|after(?:\s+an?\s+(?:\w+\s+){0,2}by)?"
    r"|(?:\w+\s+){0,4}by"  # Designed by, Cast by, Painting by, Based on a woodcut by
    r"|tilskrevet|efter|kopi\s+efter|vaerksted(?:\s+af)?|kreds\s+af|skole\s+af|elev\s+af"
    r")[\s:]+"
)
# Qualifiers at the end (", workshop of", "and workshop", "(?)").
_TRAILER = re.compile(
    r"(?:,?\s*(?:and|&)\s+(?:his\s+)?(?:workshop|studio|assistants))$"
    r"|(?:,\s*(?:workshop|studio|circle|school|follower|manner|style)\s+of)$"
)

# Makers that must never match anything.  Checked on the folded string, after prefixes.
_ANONYMOUS = re.compile(
    r"^(?:anonymous|anonym|anonyme|anon\.?|anonimo|anoniem|unknown|unidentified|unattributed|unrecorded"
    r"|not\s+identified|no\s+artist|artist\s+unknown|maker\s+unknown|ubekendt|ukendt|unbekannt"
    r"|inconnu|onbekend|sconosciuto|desconocido|ignoto|various|diverse|n/?a|none|null)\b"
)
_CENTURY = re.compile(
    r"\b\d{1,2}(?:st|nd|rd|th)\s*(?:-|–|to)?\s*(?:\d{1,2}(?:st|nd|rd|th)\s*)?c(?:entury|\.)"
)
# Placeholders that name a culture, place or period and a role, not a person: the Met's "Edo
# artist", "Toba Batak artist(s)", "Netherlandish Painter", "North Italian School". A role noun
# after other words is a person or a conventional name of one hand ("Berlin Painter", "Amasis
# Painter", "Hirschfeld Workshop", "Paulus Potter", "Hans Maler"), so the words before it must all
# say where or when: a word of _PLACE_OR_PERIOD or an adjective ending in -ian or -ese.
# "artist" is a role noun the museums write in lower case ("Edo artist"): lower case, it makes a
# placeholder whatever comes before it; capitalised ("John Artist"), only after such words.
_ROLE_NOUNS = frozenset(
    "artist painter sculptor carver school workshop engraver potter weaver silversmith goldsmith craftsman"
    " hand master maker designer artisan maler kunstner billedhugger".split()
)
_PLACE_OR_PERIOD = frozenset(
    """
    north northern south southern east eastern west western central upper lower new old early late
    french dutch greek swiss thai welsh czech german roman american mexican korean african tibetan cuban catalan
    neapolitan paduan lombard florentine mycenaean sumerian etruscan attic islamic gothic celtic coptic arabic
    byzantine hellenistic archaic classical medieval renaissance baroque colonial provincial continental
    edo meiji ming qing song tang yuan heian nara kamakura muromachi momoyama joseon goryeo mughal safavid
    ottoman timurid qajar mamluk fatimid abbasid seljuq nasrid rajput pahari deccani maya aztec inca moche
    olmec nazca paracas chimu wari yoruba asante kongo kuba luba hemba songye dogon bamana baule senufo igbo
    benin batak toba asmat iatmul maori inuit navajo hopi lakota kiowa cheyenne haida tlingit
    english british irish scottish cornish flemish netherlandish danish swedish finnish polish spanish
    turkish kurdish moorish frankish
    """.split()
)
# (-ish is listed word by word above: "Parrish Painter" is a conventional name)
_DEMONYM = re.compile(r"\w{2,}(?:ian|ese)$")
_FORENAMES_LIKE_DEMONYMS = frozenset(
    "christian julian adrian brian vivian lillian gillian sebastian damian fabian maximilian florian cyprian"
    " lucian marian kilian valerian dorian hadrian cassian therese"
    # Nordic and German forms (SMK, the Met's German makers)
    " kristian krestian bastian zacharian emilian aurelian cornelian killian".split()
)
_LOWER_CASE_ARTIST = re.compile(r"\bartists?\b")  # case-sensitive: the role, not a surname

# Generational suffixes -> canonical token.
_SUFFIX_PHRASES = (
    (
        re.compile(
            r"\bthe\s+younger\b|\bden\s+yngre\b|\bd\.?\s*y\.(?=\s|,|$)|\bder\s+j(?:u|ü)ngere\b"
        ),
        "jr",
    ),
    (
        re.compile(
            r"\bthe\s+elder\b|\bden\s+aeldre\b|\bd\.?\s*ae\.(?=\s|,|$)|\bder\s+(?:a|ä)ltere\b"
        ),
        "sr",
    ),
)
_SUFFIX_TOKENS = {
    "jr": "jr",
    "jnr": "jr",
    "junior": "jr",
    "sr": "sr",
    "snr": "sr",
    "senior": "sr",
    "ii": "ii",
    "iii": "iii",
    "iv": "iv",
}
_COMPANY_PARTS = {"inc", "ltd", "llc", "corp", "gmbh", "ag", "sa", "plc", "a/s"}


def _fold(text: str) -> str:
    if "&" in text:
        text = html.unescape(text)
    if text.isascii():
        return _SPACES.sub(" ", text.lower()).strip()
    text = unicodedata.normalize("NFKC", text).casefold().translate(_TRANSLIT)
    if not text.isascii():
        text = "".join(
            ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
        )
    return _SPACES.sub(" ", text).strip()


def _strip_qualifiers(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = _PREFIX.sub("", text).strip(" ,;:")
        text = _TRAILER.sub("", text).strip(" ,;:")
    return text


def is_anonymous(name: str | None) -> bool:
    """True if ``name`` is missing or a placeholder that names no one (see :func:`normalise_artist`)."""
    return normalise_artist(name) is None


def placeholder_makers(names: Iterable[str | None]) -> set[str]:
    """The distinct non-null names in ``names`` that are placeholders (:func:`is_anonymous`)."""
    return {n for n in set(names) if n is not None and is_anonymous(n)}


def normalise_artist(name: str | None) -> str | None:
    """A cross-museum key for one maker string, or ``None`` if it names no identifiable maker.

    >>> normalise_artist("Hammershøi, Vilhelm") == normalise_artist("Vilhelm Hammershøi")
    True
    >>> normalise_artist("Anonymous, French, 18th century") is None
    True
    """
    if name is None:
        return None
    text = _fold(str(name))
    if not text:
        return None
    if "(" in text or "[" in text:
        text = _SPACES.sub(" ", _BRACKETS.sub(" ", text))
    text = text.translate(_DROP_APOSTROPHES).strip(" ,;:?")
    text = _strip_qualifiers(text)
    if not text or _ANONYMOUS.match(text) or (_HAS_DIGIT.search(text) and _CENTURY.search(text)):
        return None

    suffixes: list[str] = []
    if _SUFFIX_HINT.search(text):
        for pattern, token in _SUFFIX_PHRASES:
            text, hits = pattern.subn(" ", text)
            if hits:
                suffixes.append(token)

    # "Surname, Forename[, Jr.]": pull out suffix-only and company parts, flip the rest.
    parts = [p.strip() for p in text.split(",")]
    kept: list[str] = []
    for part in parts:
        bare = part.replace(".", "").strip()
        if not _LETTER.search(bare):  # empty, or a date such as "1881-1973"
            continue
        if bare in _SUFFIX_TOKENS or bare == "i":
            suffixes.append(_SUFFIX_TOKENS.get(bare, bare))
        elif bare in _COMPANY_PARTS:
            continue
        else:
            kept.append(part)
    if not kept:
        return None
    ordered = f"{kept[1]} {kept[0]}" if len(kept) >= 2 else kept[0]

    ordered = ordered.replace("&", " and ")
    ordered = _PUNCT.sub(" ", ordered)
    if _HAS_DIGIT.search(ordered):
        ordered = _DIGIT_TOKEN.sub(" ", ordered)
    tokens = ordered.split()
    if not tokens:
        return None
    words: list[str] = []
    for position, token in enumerate(tokens):
        if position > 0 and (token in _SUFFIX_TOKENS or token == "i"):
            suffixes.append(_SUFFIX_TOKENS.get(token, token))
        else:
            words.append(token)
    if not words:
        return None
    key = " ".join(words)
    if _ANONYMOUS.match(key) or _names_a_role_only(words, str(name)):
        return None
    if suffixes:
        key = " ".join([key, *sorted(set(suffixes))])
    return key


def _names_a_role_only(words: list[str], name: str) -> bool:
    """Whether the key's ``words`` are a placeholder: a role noun after words that only say
    where or when ("edo artist", "netherlandish painter"), or "artist" alone (see _ROLE_NOUNS)."""
    if len(words) > 4:
        return False
    *before, noun = words
    if noun not in _ROLE_NOUNS and not (noun.endswith("s") and noun[:-1] in _ROLE_NOUNS):
        return False
    if noun.startswith("artist") and (not before or _LOWER_CASE_ARTIST.search(name)):
        return True
    return bool(before) and all(
        w in _PLACE_OR_PERIOD or (_DEMONYM.match(w) is not None and w not in _FORENAMES_LIKE_DEMONYMS) for w in before
    )


# "Rembrandt (Rembrandt van Rijn)", "Titian (Tiziano Vecellio)": a short name, then the full one
_TRAILING_ALIAS = re.compile(r"^(?P<short>[^()]+?)\s*\((?P<full>[^()\d,;:]+)\)\s*$")


def artist_keys(name: str | None) -> tuple[str, ...]:
    """Every key one maker string matches under: :func:`normalise_artist`'s, plus, for the Met's
    "Short (Full Name)" form, the key of the full name, so that "Rembrandt (Rembrandt van Rijn)"
    meets another museum's "Rembrandt van Rijn" (and "Titian (Tiziano Vecellio)" a "Tiziano
    Vecellio"). A full name of one word ("Andrea di Cione (Orcagna)" has "orcagna") is no alias.

    >>> artist_keys("Rembrandt (Rembrandt van Rijn)")
    ('rembrandt', 'rembrandt van rijn')
    """
    key = normalise_artist(name)
    if key is None or name is None or "(" not in name:
        return () if key is None else (key,)
    match = _TRAILING_ALIAS.match(html.unescape(str(name)).strip())
    alias = normalise_artist(match.group("full")) if match else None
    if alias is None or alias == key or len(alias.split()) < 2:
        return (key,)
    return (key, alias)


def normalise_artists(names: Iterable[str | None]) -> dict[str, str | None]:
    """``{name: normalise_artist(name)}`` for the distinct non-null names in ``names``."""
    return {n: normalise_artist(n) for n in set(names) if n is not None}
