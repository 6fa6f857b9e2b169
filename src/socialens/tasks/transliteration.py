"""Reading a label an LLM wrote in Arabic or Devanagari script, or in Arabic or Hindi words.

LlamaLens post-processed model answers by lower-casing them, stripping special characters and
mapping non-Latin output to the Latin labels. ``label_parsing`` does the first two; this module
does the mapping, in two ways:

- **Script** (a library): a token holding Arabic or Devanagari letters is romanised with
  ``anyascii`` (``سarcastic`` -> ``sarcastic``, ``टार्गेटेड`` -> ``targeted``, ``ساركاستيك`` ->
  ``srkstyk``) and compared with the schema's words through a consonant skeleton (below); it is
  then read as the word it matches. ``anyascii`` (ISC licence, pure Python, no dependencies,
  2.6 MB) covers both scripts with one call; it deletes Hindi's final inherent vowel and maps ऑ
  (the vowel of "not", "offensive") to ``o``. Measured on 30 Devanagari spellings of English label
  words, it matched 19 through the skeleton, ``indic-transliteration`` 18 (its Sanskrit-oriented
  ITRANS/IAST keep the inherent vowel, टार्गेटेड -> ``TArgeTeDa``, and leave ऑ as it is, so नॉट
  never reads as "not"); the misses of both are short words (हेट "hate", फेक "fake"), which no
  skeleton can match safely. ``camel-tools`` only transliterates Arabic, to Buckwalter-family
  schemes made to round-trip rather than to read (ش -> ``$``/``c``, ث -> ``v``, ة -> ``p``), and
  it is a large install (``camel-kenlm``, a native build, and more) for one character table.
- **Meaning** (a glossary): no transliteration library maps ساخر to "sarcastic" or नफरत to
  "hate": those are translations. ``NATIVE_WORDS`` holds the Arabic and Hindi words for common
  labels and answer cues, ``NATIVE_PHRASES`` the few phrases that are not word for word. Hindi
  negation follows the word it negates ("नफरत नहीं" = "not hate") and is moved before it; Arabic
  clitics (``ال``, ``و``, ``ب``...) and endings are stripped before the look-up.

The consonant skeleton is the one other hand-written part, because no library compares a
romanised loanword with the English word it spells: Arabic script writes no short vowels and uses
ا و ي for long ones, and has no p, v or g; Devanagari writes the nasal before a consonant as
anusvara (romanised ``m``). So both sides are reduced to their consonants, with c/k/q, p/b, v/f
and g/j folded, ``m`` before another consonant read as ``n``, and doubled letters once:
"sarcastic", ``srkstyk`` and ``sarkastik`` all become ``srkstk``. A skeleton shared by two words
of a schema matches neither.

Fuzzy matching of Latin words (``belif`` -> "belief") is ``similarity``: rapidfuzz's normalised
Indel similarity (the ratio difflib computes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from anyascii import anyascii
from rapidfuzz import fuzz

# Common label words in Arabic and Hindi -> the English word(s) a schema would use. Keys are
# normalised like the parser's text (alef forms unified, ة -> ه, diacritics and nukta removed).
NATIVE_WORDS: dict[str, str] = {
    # Arabic
    "نعم": "yes",
    "لا": "no",
    "ليس": "not",
    "ليست": "not",
    "غير": "not",
    "ساخر": "sarcastic",
    "ساخره": "sarcastic",
    "سخريه": "sarcasm",
    "تهكم": "sarcasm",
    "كاذب": "false",
    "كاذبه": "false",
    "خاطي": "false",
    "خاطيء": "false",
    "خاطئ": "false",
    "خطا": "false",
    "مزيف": "fake",
    "زائف": "fake",
    "صحيح": "true",
    "صحيحه": "true",
    "حقيقي": "real",
    "صادق": "true",
    "جزييا": "partially",
    "جزئيا": "partially",
    "كراهيه": "hate",
    "مسيء": "offensive",
    "مسيي": "offensive",
    "ايجابي": "positive",
    "سلبي": "negative",
    "محايد": "neutral",
    "اخري": "other",
    "اخر": "other",
    "اعتقاد": "belief",
    "تصديق": "belief",
    "دحض": "debunk",
    "تفنيد": "debunk",
    "التصنيف": "label",
    "تصنيف": "label",
    "الاجابه": "answer",
    "اجابه": "answer",
    "الفيه": "category",
    "فيه": "category",
    # Hindi
    "हाँ": "yes",
    "हां": "yes",
    "नहीं": "no",
    "नही": "no",
    "व्यंग्य": "sarcasm",
    "व्यंग्यात्मक": "sarcastic",
    "झूठा": "false",
    "झूठ": "false",
    "गलत": "false",
    "असत्य": "false",
    "सच": "true",
    "सत्य": "true",
    "सही": "true",
    "आंशिक": "partially",
    "नफरत": "hate",
    "घृणा": "hate",
    "अपमानजनक": "offensive",
    "आपत्तिजनक": "offensive",
    "सकारात्मक": "positive",
    "नकारात्मक": "negative",
    "तटस्थ": "neutral",
    "अन्य": "other",
    "विश्वास": "belief",
    "खंडन": "debunk",
    "उत्तर": "answer",
    "जवाब": "answer",
    "श्रेणी": "category",
}
NATIVE_PHRASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("आंशिक", "रूप", "से"): ("partially",),
    ("व्यंग्य", "नहीं"): ("not", "sarcastic"),  # "not sarcasm" is how a schema says it
}
# Hindi negation follows the word it negates: "नफरत नहीं" = "not hate".
HINDI_NEGATIONS = frozenset({"नहीं", "नही"})
_AR_PREFIXES = ("وال", "بال", "فال", "لل", "ال", "و", "ب", "ف", "ل")
_AR_SUFFIXES = ("ا", "ه")
_LONGEST_PHRASE = max(len(phrase) for phrase in NATIVE_PHRASES)


@lru_cache(maxsize=8192)
def _native_key(token: str) -> str | None:
    if token in NATIVE_WORDS:
        return token
    if not has_other_script(token):  # every key is Arabic or Devanagari
        return None
    stems = [token]
    for prefix in _AR_PREFIXES:
        if token.startswith(prefix) and len(token) - len(prefix) >= 3:
            stems.append(token[len(prefix) :])
    for stem in list(stems):
        for suffix in _AR_SUFFIXES:
            if stem.endswith(suffix) and len(stem) - len(suffix) >= 3:
                stems.append(stem[: -len(suffix)])
    return next((s for s in stems if s in NATIVE_WORDS), None)


def translate_words(tokens: list[str]) -> list[str]:
    """``tokens`` with the Arabic and Hindi label words of the glossary replaced by English ones."""
    if not any(has_other_script(token) for token in tokens):
        return list(tokens)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for length in range(_LONGEST_PHRASE, 1, -1):
            phrase = tuple(tokens[i : i + length])
            if phrase in NATIVE_PHRASES:
                out.extend(NATIVE_PHRASES[phrase])
                i += length
                break
        else:
            key = _native_key(tokens[i])
            words = NATIVE_WORDS[key].split() if key else [tokens[i]]
            negated = key is not None and i + 1 < len(tokens) and tokens[i + 1] in HINDI_NEGATIONS
            out.extend(["not", *words] if negated else words)
            i += 2 if negated else 1
    return out


# --------------------------------------------------------------------------- script

_OTHER_SCRIPT = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff\u0900-\u097f]")
_NOT_LETTER = re.compile(r"[^a-z]+")
_DIGRAPHS = (("ph", "f"), ("ch", "c"), ("ck", "k"), ("th", "t"), ("dh", "d"), ("kh", "k"), ("gh", "g"))
_FOLD = str.maketrans({"c": "k", "q": "k", "p": "b", "v": "f", "g": "j", "x": "k"})
_NASAL = re.compile(r"m(?=[^aeiouywbm])")
_VOWELS = re.compile(r"[aeiouyw]+")
_REPEATS = re.compile(r"(.)\1+")
# A shorter skeleton is too common to stand for a word: Arabic انت ("you") and نت ("net") have the
# skeleton of "not". Such a word matches only when its romanisation is spelled the same, the
# Arabic long-vowel letters read as vowels (नॉट -> not, نوت -> nwt -> not).
MIN_SKELETON = 3
_VOWEL_LETTERS = str.maketrans({"w": "o", "u": "o", "y": "i", "e": "i"})


def has_other_script(token: str) -> bool:
    """Whether ``token`` holds an Arabic or Devanagari letter."""
    return bool(_OTHER_SCRIPT.search(token))


@lru_cache(maxsize=8192)
def romanise(token: str) -> str:
    """``token`` in lower-case Latin letters only (anyascii; hamza and ain marks dropped)."""
    return _NOT_LETTER.sub("", anyascii(token).lower())


def skeleton(word: str) -> str:
    """The consonants of a Latin word, folded so that an Arabic- or Devanagari-script spelling of
    an English word, once romanised, gives the same key as the word itself (module docstring)."""
    word = _NOT_LETTER.sub("", word.lower())
    for digraph, single in _DIGRAPHS:
        word = word.replace(digraph, single)
    word = _NASAL.sub("n", word.translate(_FOLD))
    return _REPEATS.sub(r"\1", _VOWELS.sub("", word))


def skeleton_vocabulary(words: Iterable[str]) -> dict[str, str]:
    """key -> word for ``words``: the word's skeleton, or its spelling (long-vowel letters read as
    vowels) where the skeleton is shorter than ``MIN_SKELETON``; a key two different words share
    is left out."""
    found: dict[str, str] = {}
    shared: set[str] = set()
    for word in words:
        key = skeleton(word)
        if len(key) < MIN_SKELETON:
            key = word.translate(_VOWEL_LETTERS)
        if found.get(key, word) != word:
            shared.add(key)
        found.setdefault(key, word)
    return {key: word for key, word in found.items() if key not in shared}


def romanise_tokens(tokens: list[str], vocabulary: dict[str, str]) -> list[str]:
    """``tokens`` with each Arabic- or Devanagari-script token that spells a vocabulary word
    replaced by it (``ساركاستيك`` -> ``srkstyk`` -> "sarcastic"); other tokens stay as they are, so
    romanised Arabic prose never comes close to a label by chance."""
    out = []
    for token in tokens:
        latin = romanise(token) if has_other_script(token) else ""
        if not latin:
            out.append(token)
            continue
        key = skeleton(latin)
        if len(key) < MIN_SKELETON:
            key = latin.translate(_VOWEL_LETTERS)
        out.append(vocabulary.get(key) or token)
    return out


def similarity(a: str, b: str, cutoff: float = 0.0) -> float:
    """Normalised Indel similarity of two strings in [0, 1] (0 below ``cutoff``), by rapidfuzz."""
    return fuzz.ratio(a, b, score_cutoff=cutoff * 100) / 100
