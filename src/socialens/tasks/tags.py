"""Entity tags over tokens: tagging schemes normalised to IOB2, spans, character offsets.

socialens keeps token tags in strict IOB2 (``B-TYPE`` opens an entity, ``I-TYPE`` continues it,
``O`` is outside). Files come in IOB1 (``I-`` opens an entity unless it follows the same type;
``B-`` only between two adjacent entities of one type), IOB2 or BIOES (``S-`` single, ``E-`` end);
``normalise_tags`` turns each into IOB2. An ``I-X`` that does not continue an ``X`` entity in IOB2
is repaired into ``B-X`` (what seqeval's default mode does when it reads one) and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import regex

OUTSIDE = "O"
SCHEMES = ("auto", "iob1", "iob2", "bioes")


class TagError(ValueError):
    """A tag that is not ``O`` or ``<prefix>-<TYPE>`` with a prefix of the scheme."""


@dataclass(frozen=True)
class Span:
    """An entity over tokens ``[start, end)`` of one sentence."""

    start: int
    end: int
    type: str


def split_tag(tag: str) -> tuple[str, str | None]:
    """``("B", "PER")`` for ``B-PER``, ``("O", None)`` for ``O``; a TagError otherwise."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or prefix not in ("B", "I", "E", "S"):
        raise TagError(f"tag {tag!r}: expected O or B-/I-/E-/S- followed by an entity type")
    return prefix, kind


def detect_scheme(tags: Sequence[str]) -> str:
    """``bioes`` if any tag starts with E- or S-; else ``iob2``. (IOB1 cannot be told from IOB2
    with orphan ``I-`` tags, so it is never guessed: name it in the dataset YAML.)"""
    for tag in tags:
        if tag[:2] in ("E-", "S-"):
            return "bioes"
    return "iob2"


def normalise_tags(tags: Sequence[str], scheme: str = "auto") -> tuple[list[str], int]:
    """``tags`` in IOB2 and how many ``I-`` tags had to be repaired into ``B-`` (IOB2 input only:
    in IOB1 an opening ``I-`` is the scheme, not an error). A TagError for a malformed tag or a
    prefix the scheme does not have."""
    if scheme not in SCHEMES:
        raise TagError(f"tag scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    if scheme == "auto":
        scheme = detect_scheme(tags)
    out: list[str] = []
    repaired = 0
    previous: str | None = None  # the type of the entity the previous token is inside, if any
    for tag in tags:
        prefix, kind = split_tag(tag)
        if scheme != "bioes" and prefix in ("E", "S"):
            raise TagError(f"tag {tag!r}: E- and S- are BIOES prefixes, but the scheme is {scheme}")
        if prefix == OUTSIDE:
            out.append(OUTSIDE)
            previous = None
            continue
        if prefix in ("B", "S"):
            out.append(f"B-{kind}")
        elif previous == kind:  # I- or E- continuing the same type
            out.append(f"I-{kind}")
        else:  # an I- (or E-) that opens an entity
            out.append(f"B-{kind}")
            if scheme == "iob2" or (scheme == "bioes" and prefix in ("I", "E")):
                repaired += 1
        previous = None if prefix in ("E", "S") else kind
    return out, repaired


def spans(tags: Sequence[str]) -> list[Span]:
    """Entities of IOB2 ``tags`` (a stray ``I-`` opens an entity, as in seqeval's default mode)."""
    found: list[Span] = []
    start: int | None = None
    kind: str | None = None
    for i, tag in enumerate([*tags, OUTSIDE]):
        prefix, this = split_tag(tag) if tag != OUTSIDE else (OUTSIDE, None)
        continues = prefix == "I" and this == kind and start is not None
        if start is not None and not continues:
            found.append(Span(start, i, kind))
            start, kind = None, None
        if prefix in ("B", "I", "S", "E") and not continues:
            start, kind = i, this
    return found


def tags_from_spans(n_tokens: int, entity_spans: Sequence[Span]) -> list[str]:
    """IOB2 tags for ``n_tokens`` tokens with these (non-overlapping) spans."""
    tags = [OUTSIDE] * n_tokens
    for span in entity_spans:
        tags[span.start] = f"B-{span.type}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.type}"
    return tags


def entity_types(tags: Sequence[str]) -> list[str]:
    """The entity types in ``tags``, sorted, each once."""
    return sorted({tag[2:] for tag in tags if tag != OUTSIDE})


# Word characters include combining marks (\p{M}): Devanagari vowel signs and viramas, Arabic
# harakat, which Python's ``re`` does not count as \w and would cut words at.
_WORD = r"[\p{L}\p{M}\p{N}_]"
_TOKEN = regex.compile(rf"(?:\p{{L}}\.){{2,}}|{_WORD}+(?:[-'’]{_WORD}+)*|[^\p{{L}}\p{{M}}\p{{N}}_\s]")


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Tokens of a raw text with character offsets ``(token, start, end)``: words (with inner
    hyphens and apostrophes) and single punctuation marks, as CoNLL-style corpora cut them."""
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def token_offsets(text: str, tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character offsets of ``tokens`` found in order in ``text`` (an example's tokens joined by
    spaces, or a raw text they were cut from). A token not found where expected gets the empty
    span at the current position, so offsets stay monotonic."""
    offsets = []
    position = 0
    for token in tokens:
        at = text.find(token, position) if token else -1
        if at < 0:
            offsets.append((position, position))
            continue
        offsets.append((at, at + len(token)))
        position = at + len(token)
    return offsets


def entities(text: str, tokens: Sequence[str], tags: Sequence[str]) -> list[dict]:
    """Entities of one sentence as ``{"text", "type", "start", "end", "token_start", "token_end"}``,
    ``start``/``end`` character offsets into ``text``, ``token_end`` exclusive."""
    offsets = token_offsets(text, tokens)
    found = []
    for span in spans(tags):
        start, end = offsets[span.start][0], offsets[span.end - 1][1]
        found.append(
            {
                "text": text[start:end],
                "type": span.type,
                "start": start,
                "end": end,
                "token_start": span.start,
                "token_end": span.end,
            }
        )
    return found
