"""Entity answers of a prompted LLM: written, read, and aligned back to the sentence's tokens.

The two output formats of the published comparison (Yu et al. 2023, *Open, closed or small
language models for text classification*): ``serial``, one entity per line as
``entity text -> TYPE`` (``none`` for a sentence without entities), and ``json``, a list of
``{"text": ..., "type": ...}`` objects (``[]`` for none).

Reading (``read_answer``) never guesses. It accepts, in either format, the other format's form
too, and for ``serial`` also the inline forms ``[John Smith](PER)`` and ``John Smith (PER)`` (the
latter only when the parenthesised word is one of the schema's types or aliases). An answer in
which no entity can be read and that does not say "none" is unreadable (``invalid``); a refusal is
told apart by the task (``label_parsing.is_refusal``).

Aligning (``align_entities``) maps each listed entity text onto token spans of the sentence:
exact token sequence first, then whitespace-insensitive, then case-insensitive (NFKC, case-folded,
curly quotes straightened; spacing around punctuation ignored, so "U.S ." matches "U.S."), then with
quotes and punctuation at the entity's edges removed, then, as a last resort, the tokens that
contain the text when it starts or ends at a token's edge and covers at least half of those tokens
("Smith" inside the token "Smith's", never "an" inside "Germany"). Among the occurrences the leftmost unused
one wins, so a mention listed twice maps to the sentence's first and second occurrences. Entities
are placed longest first (then in answer order), so of two overlapping ones the longer is kept; an
entity whose every occurrence overlaps a kept one is dropped and counted (``overlapping``). An
entity whose text is nowhere in the sentence is a hallucination: counted, never tagged.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from socialens.core.types import LabelSchema
from socialens.tasks.tags import Span

FORMATS = ("serial", "json")
NONE_ANSWER = "none"
MAX_CHARS = 20_000  # longer answers are cut before reading: no sentence has this many entities
ALIGN_STAGES = ("exact", "spacing", "case", "trimmed", "partial")

_TEXT_KEYS = ("text", "entity", "name", "span", "mention", "word", "value")
_TYPE_KEYS = ("type", "label", "entity_type", "category", "tag", "class", "ner")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*[a-zA-Z]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_ARROW = re.compile(r"\s*(?:->|=>|→|⇒|—>|-->)\s*")
_BULLET = re.compile(r"^\s*(?:[-*•·+]\s+|\d{1,3}[.)]\s+)")
_INLINE = re.compile(r"\[([^\[\]\n]+)\]\s*[({]\s*([^(){}\n]{1,40}?)\s*[)}]")
_PAREN = re.compile(r"^([^()]+?)\s*\(\s*([^()]{1,40}?)\s*\)\s*[.,;]?$")
_TYPE_FIRST = re.compile(r"^\**([^:*]{1,30}?)\**\s*:\s*(.*)$")
_NONE = re.compile(
    r"^\W*(?:none|nothing|n/?a|no(?:ne)?\s*(?:named\s+)?entit(?:y|ies)(?:\s+(?:found|detected|present))?"
    r"|there\s+are\s+no\s+(?:named\s+)?entities|the\s+sentence\s+(?:has|contains)\s+no\s+(?:named\s+)?"
    r"entit(?:y|ies))\b",
    re.IGNORECASE,
)
_EDGE = "\"'`“”‘’«»*_()[]{}<>.,;:!?"
_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "“": '"', "”": '"', "«": '"', "»": '"'})


@dataclass(frozen=True)
class Listed:
    """One entity as the answer lists it: its text and its type as written."""

    text: str
    type: str


@dataclass
class Answer:
    """What an answer lists. ``readable`` is False when nothing in it reads as the format (and it
    does not say "none"); ``form`` is how it was read: serial, inline, json or none."""

    entities: list[Listed] = field(default_factory=list)
    readable: bool = True
    form: str = "none"
    reason: str | None = None
    skipped_lines: int = 0  # non-empty lines that read as no entity (headers, prose)
    truncated: bool = False  # a JSON list cut off (token budget): its complete items were read


@dataclass
class Alignment:
    """Listed entities placed on the sentence: kept spans, and what was dropped and why."""

    spans: list[Span] = field(default_factory=list)
    hallucinated: list[Listed] = field(default_factory=list)
    overlapping: list[Listed] = field(default_factory=list)
    invalid_type: list[Listed] = field(default_factory=list)
    stages: dict[str, int] = field(default_factory=dict)  # how each kept span was found


# --------------------------------------------------------------------------- writing


def format_answer(entities: Sequence[tuple[str, str]], output_format: str) -> str:
    """``(text, type)`` pairs written as the answer ``output_format`` asks for."""
    if output_format == "json":
        return json.dumps([{"text": text, "type": kind} for text, kind in entities], ensure_ascii=False)
    if not entities:
        return NONE_ANSWER
    return "\n".join(f"{text} -> {kind}" for text, kind in entities)


def answer_schema(types: Sequence[str]) -> str:
    """The JSON schema of a ``json`` answer (an array of ``{"text", "type"}`` objects, the type one
    of ``types``) as JSON text: backends that constrain decoding take it."""
    schema = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "type": {"type": "string", "enum": list(types)}},
            "required": ["text", "type"],
            "additionalProperties": False,
        },
    }
    return json.dumps(schema, ensure_ascii=False)


# --------------------------------------------------------------------------- reading


def clean_answer(raw: Any) -> str:
    """The answer as text: ``<think>`` blocks and code fences removed, cut at MAX_CHARS."""
    if raw is None:
        return ""
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8", errors="replace")
    text = _THINK.sub(" ", str(raw)[:MAX_CHARS])
    if "</think>" in text.casefold():  # the opening tag was in the prompt
        text = text[text.casefold().rindex("</think>") + len("</think>") :]
    fenced = [m.group(1) for m in _FENCE.finditer(text)]
    if fenced and any(part.strip() for part in fenced):
        text = "\n".join(fenced)
    return text.strip()


def read_answer(raw: Any, output_format: str, schema: LabelSchema) -> Answer:
    """The entities ``raw`` lists (see the module docstring). ``output_format`` decides which form
    is tried first (and whether an empty answer means "none": in ``serial`` it does); the schema
    tells the ``text (TYPE)`` and ``TYPE: text`` forms from prose."""
    text = clean_answer(raw)

    def serial(t: str) -> Answer:
        return _read_serial(t, schema, empty_ok=output_format != "json")

    json_first = output_format == "json" or text[:1] in ("[", "{")
    first, second = (_read_json, serial) if json_first else (serial, _read_json)
    answer = first(text)
    if answer is not None and answer.readable:
        return answer
    other = second(text)
    if other is not None and other.readable:
        return other
    return answer or other or Answer(readable=False, reason="the answer cannot be read")


def _read_serial(text: str, schema: LabelSchema, *, empty_ok: bool) -> Answer:
    if not text:
        if empty_ok:
            return Answer(form="none")
        return Answer(readable=False, form="none", reason="the answer is empty")
    entities: list[Listed] = []
    forms: set[str] = set()
    skipped = 0
    said_none = False
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        found, form = _read_line(line, schema)
        if found:
            entities.extend(found)
            forms.add(form)
        elif _NONE.match(line.strip("*_`#> ")):
            said_none = True
        else:
            skipped += 1
    if entities:
        return Answer(entities, form="+".join(sorted(forms)), skipped_lines=skipped)
    if said_none:
        return Answer(form="none", skipped_lines=skipped)
    return Answer(
        readable=False,
        form="none",
        reason="no line of the answer reads as `entity text -> TYPE` (and it does not say none)",
        skipped_lines=skipped,
    )


def _read_line(line: str, schema: LabelSchema) -> tuple[list[Listed], str]:
    """The entities one line of a serial answer lists, and the form it uses ([] when none)."""
    inline = [Listed(m.group(1), m.group(2)) for m in _INLINE.finditer(line)]
    if inline:
        return inline, "inline"
    body = _BULLET.sub("", line).strip()
    parts = _ARROW.split(body)
    if len(parts) >= 2:
        found = []
        text = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            # "John -> PER, Paris -> LOC": between two arrows come a type, then the next text
            kind, following = _split_type_and_next(part) if i < len(parts) - 1 else (part, "")
            if text.strip() and kind.strip():
                found.append(Listed(text, kind))
            text = following
        return found, "serial"
    if ")" in body:  # "John Smith (PER)", "John Smith (PER), Paris (LOC)"
        for items in ([body], re.split(r"\s*[;,]\s+", body)):
            matches = [_PAREN.match(item) for item in items]
            if all(m and resolve_type(m.group(2), schema) for m in matches):
                return [Listed(m.group(1), m.group(2)) for m in matches], "inline"
    typed = _TYPE_FIRST.match(body)  # "PER: John Smith; Mary" when PER is one of the schema's types
    if typed and resolve_type(typed.group(1), schema) is not None:
        rest = typed.group(2).strip()
        if _NONE.match(rest) or not rest.strip(_EDGE + " -"):
            return [], ""
        return [
            Listed(text, typed.group(1)) for text in re.split(r"\s*[;,]\s+", rest) if text.strip()
        ], "typed"
    return [], ""


def _split_type_and_next(part: str) -> tuple[str, str]:
    match = re.match(r"\s*([^,;]*)[,;]\s*(.*)$", part)
    if match:
        return match.group(1), match.group(2)
    words = part.split(None, 1)  # "PER Paris" without a comma
    return (words[0], words[1]) if len(words) == 2 else (part, "")


_MISSING = object()
_MAX_JSON_CANDIDATES = 50


def _read_json(text: str) -> Answer | None:
    """Entities of the first JSON value in ``text`` that holds entity objects (or is an empty
    list); None when the text holds no JSON. A list cut off (token budget) keeps its complete
    items (``truncated``)."""
    if "[" not in text and "{" not in text:
        return None
    decoder = json.JSONDecoder()
    decoded = False
    for n, match in enumerate(re.finditer(r"[\[{]", text)):
        if n >= _MAX_JSON_CANDIDATES:
            break
        value = _decode(decoder, text, match.start())
        if value is _MISSING:
            if match.group(0) == "[":  # a list cut off before its end: its complete objects
                objects = [
                    _decode(decoder, text, match.start() + m.start(), lenient=False)
                    for m in re.finditer(r"\{", text[match.start() :])
                ]
                objects = [value for value in objects if isinstance(value, dict)]
                if objects:
                    answer = _json_answer(objects)
                    answer.truncated = True
                    return answer
            continue
        decoded = True
        items = _entity_items(value)
        if items is not None:
            return _json_answer(items)
    if decoded:
        return Answer(
            readable=False, form="json", reason='the answer\'s JSON holds no list of {"text", "type"} objects'
        )
    if text[:1] in ("[", "{"):
        return Answer(
            readable=False, form="json", reason="the answer's JSON cannot be read (cut off or malformed)"
        )
    return None


def _decode(decoder: json.JSONDecoder, text: str, start: int, *, lenient: bool = True) -> Any:
    """The JSON value starting at ``text[start]``; ``lenient``: else as a Python literal up to the
    last matching bracket (single quotes, True/None); _MISSING when neither reads."""
    try:
        return decoder.raw_decode(text, start)[0]
    except ValueError:
        if not lenient:
            return _MISSING
    closing = "]" if text[start] == "[" else "}"
    end = text.rfind(closing)
    if end <= start:
        return _MISSING
    try:  # single quotes, Python literals
        return ast.literal_eval(text[start : end + 1])
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return _MISSING


def _entity_items(value: Any) -> list[Any] | None:
    """The list of entity items in a decoded JSON value, or None when it is not one."""
    if isinstance(value, list):
        if not value or any(isinstance(item, dict | list | tuple) for item in value):
            return value
        return None
    if isinstance(value, dict):
        lowered = {str(k).casefold(): v for k, v in value.items()}
        for key in ("entities", "named_entities", "ner", "result", "results", "answer", "output"):
            if isinstance(lowered.get(key), list):
                return lowered[key]
        if _item(value) is not None:
            return [value]
    return None


def _item(item: Any) -> Listed | None:
    if isinstance(item, dict):
        lowered = {str(k).casefold(): v for k, v in item.items()}
        text = next((lowered[k] for k in _TEXT_KEYS if k in lowered), None)
        kind = next((lowered[k] for k in _TYPE_KEYS if k in lowered), None)
        if isinstance(text, str | int | float) and not isinstance(text, bool) and isinstance(kind, str):
            return Listed(str(text), kind)
        return None
    if isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return Listed(item[0], item[1])
    return None


def _json_answer(items: list[Any]) -> Answer:
    entities = [listed for listed in map(_item, items) if listed is not None]
    if items and not entities:
        return Answer(
            readable=False, form="json", reason='no item of the answer\'s JSON list has "text" and "type"'
        )
    return Answer(entities, form="json", skipped_lines=len(items) - len(entities))


# --------------------------------------------------------------------------- types


def resolve_type(written: str, schema: LabelSchema) -> str | None:
    """The schema type a written type names (case, aliases, a ``B-``/``I-`` prefix, surrounding
    quotes and markdown, or the first word of "PER (a person)"); None when it names none."""
    cleaned = written.strip().strip(_EDGE + " ")
    for candidate in (cleaned, re.sub(r"^[BIES]-", "", cleaned), *cleaned.split()[:1]):
        name = schema.normalise(candidate.strip(_EDGE + " "))
        if name is not None:
            return name
    return None


# --------------------------------------------------------------------------- alignment


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()


class _Sentence:
    """Views of one sentence's tokens for each alignment stage."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self.compact = {"spacing": self._compact(lambda t: t), "case": self._compact(_fold)}

    def _compact(self, norm):
        pieces = ["".join(norm(token).split()) for token in self.tokens]
        starts, ends, text = {}, {}, []
        position = 0
        for i, piece in enumerate(pieces):
            if piece:
                starts.setdefault(position, i)
                ends[position + len(piece)] = i + 1
            text.append(piece)
            position += len(piece)
        owners = [i for i, piece in enumerate(pieces) for _ in piece]
        return "".join(text), starts, ends, owners, pieces

    def candidates(self, text: str, stage: str) -> list[tuple[int, int]]:
        if stage == "exact":
            words = text.split()
            n = len(words)
            return [
                (i, i + n) for i in range(len(self.tokens) - n + 1) if n and self.tokens[i : i + n] == words
            ]
        if stage == "trimmed":
            trimmed = text.strip(_EDGE + " \t")
            return self._find(trimmed, "case") if trimmed and trimmed != text.strip() else []
        if stage == "partial":
            return self._find(text.strip(_EDGE + " \t") or text, "case", partial=True)
        return self._find(text, stage)

    def _find(self, text: str, stage: str, *, partial: bool = False) -> list[tuple[int, int]]:
        compact, starts, ends, owners, pieces = self.compact[stage]
        needle = "".join((_fold(text) if stage == "case" else text).split())
        if not needle:
            return []
        found = []
        at = compact.find(needle)
        while at >= 0:
            end = at + len(needle)
            if partial:
                span = (owners[at], owners[end - 1] + 1)
                covered = sum(len(piece) for piece in pieces[span[0] : span[1]])
                at_edge = at in starts or end in ends
                if at_edge and 2 * len(needle) >= covered and span not in found:
                    found.append(span)
            elif at in starts and end in ends:
                found.append((starts[at], ends[end]))
            at = compact.find(needle, at + 1)
        return found


def align_entities(tokens: Sequence[str], listed: Sequence[Listed], schema: LabelSchema) -> Alignment:
    """Place ``listed`` entities on ``tokens`` (see the module docstring for the rules)."""
    result = Alignment()
    sentence = _Sentence(tokens)
    placed: list[tuple[int, int, Listed, list[tuple[str, list[tuple[int, int]]]]]] = []
    for index, entity in enumerate(listed):
        kind = resolve_type(entity.type, schema)
        if kind is None:
            result.invalid_type.append(entity)
            continue
        found = []
        for stage in ALIGN_STAGES:
            spans = sentence.candidates(entity.text, stage)
            if spans:
                found.append((stage, spans))
                if stage != "exact":
                    break  # later stages only loosen the match further
        if not found:
            result.hallucinated.append(entity)
            continue
        first = found[0][1][0]
        placed.append((first[1] - first[0], index, Listed(entity.text, kind), found))
    taken = [False] * len(tokens)
    for _, _, entity, found in sorted(placed, key=lambda item: (-item[0], item[1])):
        for stage, spans in found:
            free = next((s for s in spans if not any(taken[s[0] : s[1]])), None)
            if free is not None:
                for i in range(*free):
                    taken[i] = True
                result.spans.append(Span(free[0], free[1], entity.type))
                result.stages[stage] = result.stages.get(stage, 0) + 1
                break
        else:
            result.overlapping.append(entity)
    result.spans.sort(key=lambda span: span.start)
    return result
