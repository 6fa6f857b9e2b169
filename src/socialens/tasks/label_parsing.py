"""Turn a free-text LLM answer into one label of a schema, or say why it cannot.

``parse_label(output, schema)`` returns a :class:`ParseResult` ``(label, status, method)`` with
``status`` in {``ok``, ``refused``, ``invalid``}; ``label`` is set iff ``status == "ok"``. It never
guesses: an answer that names no label, several labels without one clearly being the answer, or a
refusal stays what it is (see DESIGN.md: metrics count it as wrong and report its rate). It never
raises on any input.

Rules, in order (the first that decides wins; ``method`` names it):

1. ``empty``: nothing left after removing ``<think>...</think>`` blocks and whitespace -> invalid.
2. ``exact``: the whole answer, once normalised (case, NFKC/NFKD accents, punctuation, markdown,
   quotes, ``_``/``-``/spaces), is a label name or alias, or its Arabic/Hindi equivalent
   (``transliteration``: Arabic and Hindi label words translated, Arabic- and Devanagari-script
   spellings romanised; see ``socialens.tasks.transliteration``) -> ok. ``description``: the
   answer is a label's description, or starts with it (small models echo them from the prompt).
3. ``json``: a JSON object anywhere (also in a fenced block, with single quotes, trailing commas,
   bare keys, Python literals, or cut off before its closing brace) with a key ``label``, ``answer``,
   ``class``, ``category``, ``prediction`` (and a few variants, also nested) -> the value is
   resolved like a short answer (exact, then mention, then fuzzy: ``json+fuzzy``). A label key whose
   value names no label -> refused if the text is a refusal, else invalid (``json-unknown-label``).
4. Echoes of the prompt: two or more lines each starting with a different label ("- not
   sarcastic: ...\n- sarcastic: ...") -> invalid (``ambiguous``); lines that are label
   descriptions ("1. The post contains no hate speech, ...") -> that label when they all name one
   (``description``), invalid (``ambiguous``) when they name several.
5. ``first-token``: the answer starts with a label followed by a delimiter ("Debunk. The comment
   ..." / "belief\n\nExplanation: ...") -> ok.
6. ``cue``: a label right after an answer cue: "Label: X", "Answer: X", "The answer is X",
   "I would classify this as X", "falls under X", Arabic/Hindi "التصنيف:"/"लेबल:" -> ok when the
   cues name one label; invalid (``ambiguous``) when they name several.
7. ``refusal``: refusal language ("I can't help with", "I cannot classify", "as an AI", "I'm not
   able to", "against my guidelines", "content policy", "I won't", apology + sensitive/harmful
   content; Arabic "لا أستطيع", "عذراً، لا يمكنني"; Hindi "मैं इसमें मदद नहीं कर सकता", ...) ->
   refused. Checked only after the structured answers above, so a refusal that still gives a
   "Label: X" line counts as an answer, and before any loose matching in prose.
8. ``match``: label names/aliases mentioned in the prose, on word boundaries ("other" is not in
   "another", "true" not in "untrue"), the longest mention winning over one it contains ("false"
   inside "partially false", "hate" inside "not hate"), a mention close to a longer label
   ("partly false", "non hate"; not "is sarcastic" for "not sarcastic": the words around the
   mention must be close too) read as that label, negated mentions dropped ("not belief",
   "rather than belief", "neither supports nor refutes"; a "not" inside the previous mention is
   that mention's, so "not sarcastic, sarcastic" names two labels), aliases used as verbs after a
   pronoun ("I believe") and common words after a determiner or before "than" ("the other",
   "other than") ignored. One label left -> ok; several -> invalid (``ambiguous``); only negated
   ones -> invalid (``negated``). When the text names no label, it is read again with Arabic and
   Hindi label words translated and Arabic/Devanagari-script spellings romanised
   (``transliteration``).
9. ``fuzzy``: a word or phrase whose similarity (rapidfuzz's normalised Indel ratio) to a label
   name/alias is at least ``threshold`` (same first letter, forms of 4+ characters): "belif",
   "debunked" -> ok when one label fits; invalid (``ambiguous``) when several do.
10. ``no-match`` -> invalid.

The ``style`` argument only orders rules 2 and 3 (``json`` tries JSON first); both styles accept
both answer forms. Outputs longer than ``MAX_CHARS`` are truncated before parsing.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from socialens.core.types import LabelSchema
from socialens.tasks.transliteration import (
    romanise_tokens,
    similarity,
    skeleton_vocabulary,
    translate_words,
)

Status = Literal["ok", "refused", "invalid"]

MAX_CHARS = 20_000  # longer outputs are truncated: an LLM label answer is never this long
_MAX_JSON_CANDIDATES = 40
_MAX_JSON_CHARS = 5_000
_MAX_FUZZY_TOKENS = 400

LABEL_KEYS = (
    "label",
    "answer",
    "final_answer",
    "class",
    "category",
    "prediction",
    "predicted_label",
    "predicted_class",
    "classification",
    "output",
    "result",
)


@dataclass(frozen=True)
class ParseResult:
    label: str | None
    status: Status
    method: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --------------------------------------------------------------------------- normalisation

_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_LATIN_MARKS = re.compile("[\u0300-\u036f]")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_CHAR_MAP = str.maketrans(
    {
        "\u2019": "'",
        "\u2018": "'",
        "\u02bc": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u0623": "\u0627",  # أ -> ا
        "\u0625": "\u0627",  # إ -> ا
        "\u0622": "\u0627",  # آ -> ا
        "\u0671": "\u0627",  # ٱ -> ا
        "\u0649": "\u064a",  # ى -> ي
        "\u0629": "\u0647",  # ة -> ه
        "\u093c": None,  # Devanagari nukta
    }
)


def _light(text: str) -> str:
    """Case-folded, accent-free text that keeps punctuation (for refusals and JSON-free cues)."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    text = _LATIN_MARKS.sub("", text)
    text = _ARABIC_MARKS.sub("", text).translate(_CHAR_MAP)
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def _tokens(text: str) -> list[str]:
    """Word tokens of ``_light(text)``: letters, digits and combining marks (Devanagari vowel
    signs are marks); apostrophes dropped ("isn't" -> "isnt"); anything else splits words."""
    light = _light(text).replace("'", "")
    return "".join(ch if unicodedata.category(ch)[0] in "LNM" else " " for ch in light).split()


# --------------------------------------------------------------------------- refusals

_EN_REFUSALS = [
    r"\bas an? (?:ai|a\.i\.|artificial intelligence|language model|llm|ai language model|ai assistant)\b",
    r"\bas a (?:large )?language model\b",
    r"\bi (?:can ?not|can't|cant|won't|wont|will not|am unable to|'m unable to|m unable to|am not able to"
    r"|'m not able to|am not in a position to|'m not in a position to|must decline to|must refuse to"
    r"|refuse to|am not comfortable|'m not comfortable|don't feel comfortable|do not feel comfortable)"
    r"\s+(?:[\w']+\s+){0,3}?(?:help|assist|provide|classify|categori[sz]e|label|comply|fulfil|fulfill"
    r"|engage|answer|respond|complete|support|generate|process|participate|create|do (?:that|this)"
    r"|perform|make|analy[sz]e|evaluate|assess|moderate|continue|with)",
    r"\bi (?:must|have to|need to|will have to) (?:respectfully )?(?:decline|refuse)\b",
    r"\bi (?:won't|will not) be able to\b",
    r"\bi(?:'m| am) not able to\b",
    r"\bagainst (?:my|the|our|openai's|openai|company) (?:[\w-]+ )?(?:guidelines|policies|policy"
    r"|programming|principles|rules|terms|values)\b",
    r"\bcontent (?:polic(?:y|ies)|guidelines|filters?)\b",
    r"\bviolat(?:e|es|ing) (?:[\w']+ ){0,3}(?:polic(?:y|ies)|guidelines|terms)\b",
    r"\bnot (?:appropriate|comfortable) for me to\b",
    r"\bi(?:'m| am) (?:sorry|afraid),? but\b",
    r"\bi apologi[sz]e,? but\b",
    r"\bsorry,? (?:but )?i (?:can ?not|can't|cant|won't|am unable|'m unable)\b",
]
_EN_APOLOGY = (
    r"\b(?:sorry|apologi[sz]e|unfortunately|unable|can't|cannot|won't|decline|refrain|not comfortable)\b"
)
_EN_SENSITIVE = (
    r"\b(?:sensitive|harmful|hateful|offensive|inappropriate|explicit|dangerous|controversial|violent)"
    r" (?:content|material|topics?|subjects?|nature|language|requests?|information|themes?)\b"
)
_AR_REFUSALS = [
    r"لا استطيع",
    r"لا يمكنني",
    r"لا يسعني",
    r"لن اتمكن",
    r"لا اتمكن",
    r"لن استطيع",
    r"اعتذر",
    r"كذكاء اصطناعي",
    r"بصفتي (?:نموذج|مساعد|ذكاء)",
    r"سياسه المحتوي",
    r"محتوي حساس",
    r"ينتهك",
]
_HI_REFUSALS = [
    r"(?:मदद|सहायता) नहीं कर (?:सकता|सकती|सकते|पाऊंगा|पाऊंगी)",
    r"मैं .{0,60}?नहीं कर (?:सकता|सकती|सकते)",
    r"असमर्थ (?:हूँ|हूं|हैं)",
    r"(?:एआई|ai) (?:के रूप में|होने के नाते)",
    r"भाषा मॉडल (?:के रूप में|होने के नाते)",
    r"सामग्री नीति",
    r"संवेदनशील सामग्री",
    r"(?:क्षमा|माफ) (?:करें|कीजिए|कीजिये).{0,80}?नहीं",
]
_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in _EN_REFUSALS + _AR_REFUSALS + _HI_REFUSALS))
_APOLOGY_RE = re.compile(_EN_APOLOGY)
_SENSITIVE_RE = re.compile(_EN_SENSITIVE)


def is_refusal(text: str) -> bool:
    """Whether ``text`` (raw model output) reads as a refusal, in English, Arabic or Hindi."""
    light = _light(text)
    if _REFUSAL_RE.search(light):
        return True
    return bool(_SENSITIVE_RE.search(light) and _APOLOGY_RE.search(light))


# --------------------------------------------------------------------------- JSON extraction

_FENCE = re.compile(r"```[ \t]*(?:json|javascript|js|python)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL | re.I)


def _balanced(text: str, start: int) -> str:
    """The object starting at ``text[start] == '{'`` up to its matching brace; if cut off, the
    rest of the text with the missing quote and braces added."""
    depth, quote, escaped = 0, "", False
    end = min(len(text), start + _MAX_JSON_CHARS)
    for pos in range(start, end):
        char = text[pos]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : pos + 1]
    return text[start:end].rstrip().rstrip(",") + quote + "}" * max(depth, 0)


_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SINGLE_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][\w \-]*?)\s*:")
_PY_LITERALS = re.compile(r"\b(True|False|None)\b")


def _loads(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except Exception:
        pass
    fixed = _TRAILING_COMMA.sub(r"\1", candidate)
    fixed = _SINGLE_QUOTED.sub(lambda m: json.dumps(m.group(1).replace("\\'", "'")), fixed)
    fixed = _BARE_KEY.sub(lambda m: f'{m.group(1)}"{m.group(2).strip()}":', fixed)
    fixed = _PY_LITERALS.sub(lambda m: {"True": "true", "False": "false", "None": "null"}[m.group(1)], fixed)
    try:
        return json.loads(fixed)
    except Exception:
        pass
    try:
        return ast.literal_eval(candidate)
    except Exception:
        return None


def _key(name: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().casefold())


def _label_values(obj: Any, depth: int = 0) -> list[Any] | None:
    """Values under label-like keys in a parsed object (first key found by priority), or None."""
    if not isinstance(obj, dict) or depth > 3:
        return None
    keys = {_key(k): v for k, v in obj.items()}
    for name in LABEL_KEYS:
        if name in keys:
            value = keys[name]
            if isinstance(value, dict):
                nested = _label_values(value, depth + 1)
                return nested if nested is not None else [None]
            return value if isinstance(value, list) else [value]
    for value in obj.values():
        nested = _label_values(value, depth + 1)
        if nested is not None:
            return nested
    return None


def json_objects(text: str) -> list[Any]:
    """The outermost JSON objects in ``text``, read as the label parser reads them (fenced blocks
    first, then the whole text; single quotes, trailing commas, bare keys, Python literals and a
    missing closing brace are forgiven): those of the first source that holds any, in order; an
    object inside another is part of it, not one more. For tasks whose answer is not one label."""
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    seen = 0
    for source in sources:
        found: list[Any] = []
        end = 0
        for match in re.finditer(r"\{", source):
            if match.start() < end:
                continue
            seen += 1
            if seen > _MAX_JSON_CANDIDATES:
                return found
            candidate = _balanced(source, match.start())
            obj = _loads(candidate)
            if isinstance(obj, dict):
                found.append(obj)
                end = match.start() + len(candidate)
        if found:
            return found
    return []


def loads_lenient(candidate: str) -> Any:
    """``candidate`` parsed as JSON, forgiving what LLMs get wrong (single quotes, trailing commas,
    bare keys, Python literals); None when it still does not parse."""
    return _loads(candidate)


def clean_output(output: Any) -> str:
    """A raw model output as every parser reads it: text (bytes decoded), at most ``MAX_CHARS``,
    ``<think>...</think>`` reasoning removed, outer whitespace stripped."""
    return _strip_think(_as_text(output)[:MAX_CHARS]).strip()


def extract_json_values(text: str) -> list[Any] | None:
    """The label-like values of every JSON object in ``text`` (None when no object has one)."""
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    found: list[Any] | None = None
    seen = 0
    for source in sources:
        for match in re.finditer(r"\{", source):
            seen += 1
            if seen > _MAX_JSON_CANDIDATES:
                return found
            obj = _loads(_balanced(source, match.start()))
            values = _label_values(obj)
            if values is not None:
                found = (found or []) + values
        if found is not None:
            return found
    return found


# --------------------------------------------------------------------------- label matching

_NEGATIONS = {
    "not",
    "no",
    "non",
    "never",
    "neither",
    "nor",
    "isnt",
    "arent",
    "wasnt",
    "doesnt",
    "dont",
    "didnt",
    "without",
    "than",
    "hardly",
}
_COORDINATORS = {"or", "nor", "and"}
_PRONOUNS = {"i", "we", "you", "they", "he", "she", "people", "many", "some"}
_DETERMINERS = {"the", "each", "any", "some", "every", "an", "no", "all", "one"}
_COMMON_WORDS = {"other", "others", "none", "neither", "either", "both", "all", "some", "any", "yes", "no"}
_CUE = re.compile(
    r"(?:\b(?:final |predicted |correct |my )?(?:label|answer|category|class|classification|prediction"
    r"|verdict|output|response|result|tag)(?: is| would be| should be| be| here is| of the text is)?"
    r"(?: likely| probably| clearly| definitely| most likely| therefore| thus)?"
    r"|\b(?:classif(?:y|ied|ies)|label(?:l?ed|s)?|categori[sz]e[sd]?|mark(?:ed)?|tag(?:ged)?|rate[sd]?)"
    r"(?: (?:it|this|that|the \w+|this \w+))? as(?: an?)?"
    r"|\b(?:i would|id|i will|ill) (?:say|go with|choose|pick|select|answer)"
    r"|\bbest (?:described|categori[sz]ed|classified) as(?: an?)?"
    r"|\bfalls? (?:under|into)(?: the)?(?: category)?(?: of)?)$"
)


@dataclass
class _Mention:
    start: int
    end: int
    label: str
    alias: bool
    score: float = 1.0


class _Matcher:
    """Per-schema lookup tables (built once per schema)."""

    def __init__(self, schema: LabelSchema):
        self.names = schema.names
        forms: dict[tuple[str, ...], tuple[str, bool]] = {}
        clashes: set[tuple[str, ...]] = set()
        for label in schema.labels:
            for i, surface in enumerate((label.name, *label.aliases)):
                toks = tuple(_tokens(surface))
                variants = [toks] + ([("".join(toks),)] if len(toks) > 1 else [])
                for variant in variants:
                    if not variant:
                        continue
                    owner = forms.get(variant)
                    if owner is not None and owner[0] != label.name:
                        clashes.add(variant)
                    elif owner is None or (owner[1] and i == 0):
                        forms[variant] = (label.name, i > 0)
        for clash in clashes:
            forms.pop(clash, None)
        self.forms = forms
        self.lengths = sorted({len(f) for f in forms}, reverse=True)
        self.fuzzy_forms = [
            (" ".join(f), len(f), lab) for f, (lab, _) in forms.items() if len(" ".join(f)) >= 4
        ]
        # the words an Arabic- or Devanagari-script spelling may stand for: the labels' own, "not"
        # for the mention filter ("नॉट सार्कास्टिक" = "not sarcastic") and the cue "label" (लेबल)
        words = {word for form in forms for word in form} | {"not", "label"}
        self.script_vocabulary = skeleton_vocabulary(sorted(words))
        # small models often answer with a label's description, echoed from the prompt
        self.descriptions = [
            (tuple(_tokens(label.description)), label.name)
            for label in schema.labels
            if len(_tokens(label.description)) >= _MIN_DESCRIPTION_TOKENS
        ]

    def to_latin(self, tokens: list[str]) -> list[str]:
        """Arabic and Hindi label words translated, then tokens in those scripts romanised."""
        return romanise_tokens(translate_words(tokens), self.script_vocabulary)

    # -- whole short answers

    def lookup(self, tokens: list[str]) -> str | None:
        hit = self.forms.get(tuple(tokens))
        return hit[0] if hit else None

    def described(self, tokens: list[str]) -> str | None:
        """The one label whose description the answer is, or starts with ("The post contains
        no hate speech, offensive language or profanity" for a description that goes on)."""
        if len(tokens) < _MIN_DESCRIPTION_TOKENS:
            return None
        size = len(tokens)
        labels = {label for words, label in self.descriptions if list(words[:size]) == tokens}
        return labels.pop() if len(labels) == 1 else None

    def resolve(self, text: str) -> tuple[str | None, str]:
        tokens = _tokens(text)
        label = self.lookup(tokens)
        if label:
            return label, "exact"
        label = self.described(tokens)
        if label:
            return label, "description"
        native = self.to_latin(tokens)
        if native != tokens:
            label = self.lookup(native)
            if label:
                return label, "transliteration"
        return None, ""

    # -- mentions in prose

    def mentions(self, tokens: list[str]) -> list[_Mention]:
        found: list[_Mention] = []
        for i in range(len(tokens)):
            for length in self.lengths:
                if i + length > len(tokens):
                    continue
                hit = self.forms.get(tuple(tokens[i : i + length]))
                if hit:
                    found.append(_Mention(i, i + length, hit[0], hit[1]))
        return found

    def fuzzy_mentions(self, tokens: list[str], threshold: float) -> list[_Mention]:
        found: list[_Mention] = []
        tokens = tokens[:_MAX_FUZZY_TOKENS]
        for form, length, label in self.fuzzy_forms:
            for i in range(len(tokens) - length + 1):
                gram = " ".join(tokens[i : i + length])
                if gram[0] != form[0]:
                    continue
                ratio = similarity(gram, form, cutoff=threshold)
                if ratio and ratio >= threshold:
                    found.append(_Mention(i, i + length, label, False, ratio))
        return found

    def extend_to_longer(self, mentions: list[_Mention], tokens: list[str], threshold: float) -> None:
        """A mention inside a phrase close to a longer label form ("partly false" ~ "partially
        false", "non hate" ~ "not hate") is read as that longer label. The words around the
        mention must themselves be close to the form's other words: "is sarcastic" is as close
        to "not sarcastic" as "non hate" is to "not hate", but "is" is not "not"."""
        bar = max(threshold, 0.8)
        for mention in mentions:
            span = mention.end - mention.start
            best: tuple[float, str, int, int] | None = None
            for form, (label, _) in self.forms.items():
                if len(form) <= span or label == mention.label:
                    continue
                mention_toks = tokens[mention.start : mention.end]
                for offset in range(len(form) - span + 1):
                    if list(form[offset : offset + span]) != mention_toks:
                        continue
                    start = mention.start - offset
                    end = start + len(form)
                    if start < 0 or end > len(tokens):
                        continue
                    ratio = similarity(" ".join(tokens[start:end]), " ".join(form))
                    extra = tokens[start : mention.start] + tokens[mention.end : end]
                    form_extra = [*form[:offset], *form[offset + span :]]
                    if similarity(" ".join(extra), " ".join(form_extra)) < _EXTRA_WORDS_SIMILARITY:
                        continue
                    if ratio >= bar and (best is None or ratio > best[0]):
                        best = (ratio, label, start, end)
            if best:
                mention.label, mention.start, mention.end, mention.alias = best[1], best[2], best[3], False


_MIN_DESCRIPTION_TOKENS = 5
# a list item's start: bullets, markdown, and a number "1." / "2)" followed by a space
_ITEM_START = r"^[\s>*#•\-–—`\"']*(?:\(?\d{1,2}[.)]\s+)?"
_LIST_ITEM = re.compile(_ITEM_START + r"([^:\n]{1,60}?)\s*(?::|$)", re.MULTILINE)
_LINE_START = re.compile(_ITEM_START)
_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]{0,9}\s*/?>")  # <strong>, </b>, <br/>
_MAX_DESCRIBED_LINES = 20
_MAX_LIST_ITEMS = 40
_EXTRA_WORDS_SIMILARITY = 0.6  # "non" ~ "not" (0.67), "partly" ~ "partially" (0.8); "is" ~ "not" is 0.4


def _drop_contained(mentions: list[_Mention]) -> list[_Mention]:
    kept = []
    for m in mentions:
        inside = any(
            o is not m and o.start <= m.start and m.end <= o.end and (o.end - o.start) > (m.end - m.start)
            for o in mentions
        )
        if not inside:
            kept.append(m)
    # identical spans (e.g. after extension) once
    unique: dict[tuple[int, int], _Mention] = {}
    for m in kept:
        unique.setdefault((m.start, m.end), m)
    return sorted(unique.values(), key=lambda m: m.start)


def _filter(mentions: list[_Mention], tokens: list[str]) -> tuple[list[_Mention], bool]:
    """Drop negated, verb-use and common-word mentions; returns (kept, any_negated)."""
    kept: list[_Mention] = []
    negated_any = False
    previous: tuple[_Mention, bool] | None = None
    for m in mentions:
        # a negation inside the previous mention is that label's ("not sarcastic, sarcastic")
        window_start = max(0, m.start - 2, previous[0].end if previous is not None else 0)
        before = tokens[window_start : m.start]
        after = tokens[m.end : m.end + 1]
        word = " ".join(tokens[m.start : m.end])
        negated = any(t in _NEGATIONS for t in before)
        if (
            not negated
            and previous is not None
            and previous[1]
            and m.start - previous[0].end == 1
            and tokens[m.start - 1] in _COORDINATORS
        ):
            negated = True  # "not belief or debunk"
        if negated:
            negated_any = True
            previous = (m, True)
            continue
        previous = (m, False)
        if m.alias and before and before[-1] in _PRONOUNS:
            continue  # "I believe ...", "they support ..."
        if m.alias and word in _NEGATIONS and after:
            continue  # HASOC's alias NOT is "not" in "I am not a political activist"
        if word in _COMMON_WORDS and ((before and before[-1] in _DETERMINERS) or after == ["than"]):
            continue  # "the other", "each other", "other than"
        kept.append(m)
    return kept, negated_any


def _cue_labels(mentions: list[_Mention], tokens: list[str]) -> set[str]:
    labels = set()
    for m in mentions:
        window = " ".join(tokens[max(0, m.start - 7) : m.start])
        if window and _CUE.search(window):
            labels.add(m.label)
    return labels


@lru_cache(maxsize=64)
def _matcher_for(key: str) -> _Matcher:
    return _Matcher(LabelSchema.from_dict(json.loads(key)))


def _matcher(schema: LabelSchema) -> _Matcher:
    return _matcher_for(json.dumps(schema.to_dict(), sort_keys=True, ensure_ascii=False))


# --------------------------------------------------------------------------- the parser

_FIRST_SEGMENT = re.compile(r"[\n.:;,!?()\[\]،؛؟।|]|\s[-–—]\s|\s[-–—]$")


def _as_text(output: Any) -> str:
    if output is None:
        return ""
    if isinstance(output, bytes | bytearray):
        return bytes(output).decode("utf-8", errors="replace")
    return output if isinstance(output, str) else str(output)


def _strip_think(text: str) -> str:
    text = _THINK.sub(" ", text)
    if "</think>" in text.casefold():  # an opening tag the template put in the prompt
        text = text[text.casefold().rindex("</think>") + len("</think>") :]
    return text


def _resolve_value(value: Any, matcher: _Matcher, threshold: float) -> tuple[str | None, str]:
    """A JSON value (a short answer) -> label."""
    if value is None or isinstance(value, dict | list | bool):
        return None, ""
    text = str(value)[:1000]
    label, how = matcher.resolve(text)
    if label:
        return label, "json" if how == "exact" else "json+" + how
    label, how = _prose(text, matcher, threshold)
    if label:
        return label, "json+" + how
    return None, how


def _prose(text: str, matcher: _Matcher, threshold: float) -> tuple[str | None, str]:
    """Rules 7-8 on a text: returns (label, method) or (None, reason)."""
    tokens = _tokens(text)
    for how, toks in (("match", tokens), ("transliteration", None)):
        if toks is None:
            toks = matcher.to_latin(tokens)
            if toks == tokens:
                continue
        found = matcher.mentions(toks)
        if not found:
            continue
        matcher.extend_to_longer(found, toks, threshold)
        kept, negated = _filter(_drop_contained(found), toks)
        labels = {m.label for m in kept}
        if len(labels) == 1:
            return labels.pop(), how
        if len(labels) > 1:
            return None, "ambiguous"
        if negated:
            return None, "negated"
        break  # only ignored mentions ("the other"): look for near-misses
    tokens = matcher.to_latin(tokens)  # "سخرية" -> "sarcasm" ~ "sarcastic"
    fuzzy = matcher.fuzzy_mentions(tokens, threshold)
    kept, negated = _filter(_drop_contained(fuzzy), tokens)
    labels = {m.label for m in kept}
    if len(labels) == 1:
        return labels.pop(), "fuzzy"
    if len(labels) > 1:
        return None, "ambiguous"
    return None, "negated" if negated else "no-match"


def _parse(text: str, schema: LabelSchema, style: str, threshold: float) -> ParseResult:
    text = _HTML_TAG.sub("", _strip_think(text[:MAX_CHARS])).strip()
    if not text.strip("\x00 \t\r\n\"'`*"):
        return ParseResult(None, "invalid", "empty")
    matcher = _matcher(schema)

    def exact() -> ParseResult | None:
        label, how = matcher.resolve(text) if len(text) <= 200 else (None, "")
        return ParseResult(label, "ok", how) if label else None

    def from_json() -> ParseResult | None:
        if "{" not in text:
            return None
        values = extract_json_values(text)
        if values is None:
            return None
        resolved = {_resolve_value(v, matcher, threshold) for v in values}
        labels = {label for label, _ in resolved if label}
        if len(labels) == 1 and all(label for label, _ in resolved):
            label = labels.pop()
            return ParseResult(label, "ok", next(how for lab, how in resolved if lab == label))
        if len(labels) > 1:
            return ParseResult(None, "invalid", "json-ambiguous")
        if is_refusal(text):
            return ParseResult(None, "refused", "refusal")
        return ParseResult(None, "invalid", "json-unknown-label")

    for step in (from_json, exact) if style == "json" else (exact, from_json):
        result = step()
        if result is not None:
            return result

    listed_labels = {matcher.resolve(item)[0] for item in _LIST_ITEM.findall(text)[:_MAX_LIST_ITEMS]} - {None}
    if len(listed_labels) > 1:  # "- not sarcastic: ...\n- sarcastic: ...": the prompt's list echoed
        return ParseResult(None, "invalid", "ambiguous")
    lines = [_tokens(_LINE_START.sub("", line)) for line in text.splitlines()[:_MAX_DESCRIBED_LINES]]
    described = {matcher.described(line) for line in lines} - {None}
    if len(described) == 1:  # "1. The post contains no hate speech, ...": one label's description
        return ParseResult(described.pop(), "ok", "description")
    if len(described) > 1:
        return ParseResult(None, "invalid", "ambiguous")

    parts = _FIRST_SEGMENT.split(_LINE_START.sub("", text.lstrip("*#>`\"' \t\n-")), maxsplit=1)
    if parts[0] and len(parts[0]) <= 100:
        label, how = matcher.resolve(parts[0])
        rest = _tokens(parts[1][:80]) if len(parts) > 1 else []
        listed = [m for m in matcher.mentions(rest) if m.start <= 1 and m.label != label]
        if label and not listed:  # "belief, debunk, other" is an echoed label list, not an answer
            return ParseResult(label, "ok", "first-token" if how == "exact" else how)

    tokens = _tokens(text)
    latin = matcher.to_latin(tokens)  # "التصنيف: ..." / "लेबल: ..." are cues once read
    for toks in (tokens, latin) if latin != tokens else (tokens,):
        found = matcher.mentions(toks)
        matcher.extend_to_longer(found, toks, threshold)
        kept, _ = _filter(_drop_contained(found), toks)
        cued = _cue_labels(kept, toks)
        if len(cued) == 1:
            return ParseResult(cued.pop(), "ok", "cue")
        if len(cued) > 1:
            return ParseResult(None, "invalid", "ambiguous")

    if is_refusal(text):
        return ParseResult(None, "refused", "refusal")

    label, how = _prose(text, matcher, threshold)
    if label:
        return ParseResult(label, "ok", how)
    return ParseResult(None, "invalid", how)


def parse_label(
    output: str,
    schema: LabelSchema,
    *,
    style: str = "serial",
    threshold: float = 0.8,
) -> ParseResult:
    """Parse one LLM answer into a label of ``schema`` (see the module docstring for the rules).

    ``style`` is the prompt style ("serial" or "json"; anything else reads as "serial");
    ``threshold`` the least similarity (rapidfuzz's normalised Indel ratio) for a fuzzy match. Never raises on any input.
    """
    try:
        return _parse(_as_text(output), schema, str(style), float(threshold))
    except Exception as exc:  # a parser bug must not crash a benchmark run
        return ParseResult(None, "invalid", f"parser-error: {type(exc).__name__}")


_REASONS = {
    "empty": "the answer is empty",
    "json-ambiguous": "the answer's JSON names several labels",
    "json-unknown-label": "the answer's JSON label is none of {labels}",
    "ambiguous": "the answer names several labels and none of them is clearly the answer",
    "negated": "the answer mentions labels only to negate them",
    "no-match": "the answer names none of {labels}",
    "refusal": "the model refused to answer",
}


def failure_reason(result: ParseResult, labels: list[str]) -> str | None:
    """Why an answer gave no label (``refused`` or ``invalid``), in words for a record's
    ``error``, so a user reading the output sees why next to the raw answer; None when it is ok."""
    if result.ok:
        return None
    reason = _REASONS.get(result.method, f"the answer could not be parsed ({result.method})")
    return f"{result.status}: " + reason.format(labels=", ".join(labels))


class LabelParser:
    """``parse_label`` bound to a schema and style: ``LabelParser(schema, style="json")(text)``."""

    def __init__(self, schema: LabelSchema, *, style: str = "serial", threshold: float = 0.8):
        self.schema, self.style, self.threshold = schema, style, threshold

    def __call__(self, output: str) -> ParseResult:
        return parse_label(output, self.schema, style=self.style, threshold=self.threshold)
