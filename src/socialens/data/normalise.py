"""The text key ``prepare`` finds near-duplicates with (and test texts seen in train).

Two posts are the same post when they differ only in case, punctuation, spacing or in how the
script was typed, as LlamaLens de-duplicated its Arabic, English and Hindi data. The key is
NFKC-normalised and case-folded, then, for the scripts socialens handles beyond Latin:

- invisible characters go: zero-width space, zero-width joiner and non-joiner (U+200B-U+200D,
  typed inside Devanagari conjuncts and between Arabic letters), word joiner, BOM, soft hyphen;
  no-break and other Unicode spaces count as spaces (NFKC already maps U+00A0 to one);
- Devanagari nukta letters compare equal whether typed precomposed (क़ U+0958) or as letter + nukta
  (क U+0915 + ़ U+093C): NFKC decomposes both the same way, since U+0958-U+095F are composition
  exclusions. ``devanagari_nukta: true`` drops the nukta altogether (ज़ = ज), for data where
  writers use it inconsistently;
- Arabic tatweel (ـ) and harakat (fatha, damma, kasra, tanwin, shadda, sukun, dagger alef,
  Quranic marks) go unless ``arabic_diacritics: false``; ``arabic_letters: true`` also folds the
  letter variants writers mix freely: alef with hamza or madda and alef wasla to bare alef
  (أ إ آ ٱ -> ا), alef maqsura to yeh (ى -> ي) and teh marbuta to heh (ة -> ه). Off by default:
  they are different letters, and folding them merges some distinct words.

Punctuation and symbols become spaces, but combining marks stay part of their word: Devanagari
vowel signs are marks (category Mc/Mn), so ``किताब`` and ``कताब`` keep different keys (a plain
``\\W`` split would cut the vowel signs out and merge them).

A dataset YAML sets the options under ``normalise:`` (``normalise: {arabic_letters: true}``).
"""

from __future__ import annotations

import unicodedata

import regex
from pydantic import BaseModel, ConfigDict

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
ARABIC_TATWEEL = "\u0640"
# harakat and tanwin, superscript (dagger) alef, Quranic annotation marks
ARABIC_DIACRITICS = regex.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed]")
ARABIC_LETTER_VARIANTS = str.maketrans(
    {
        "\u0623": "\u0627",
        "\u0625": "\u0627",
        "\u0622": "\u0627",
        "\u0671": "\u0627",
        "\u0649": "\u064a",
        "\u0629": "\u0647",
    }
)
DEVANAGARI_NUKTA = "\u093c"
_REMOVE_ZERO_WIDTH = str.maketrans(dict.fromkeys(ZERO_WIDTH))
_NOT_WORD = regex.compile(r"[^\p{L}\p{M}\p{N}]+")


class NormaliseOptions(BaseModel):
    """How a dataset's duplicate key treats its script (the ``normalise:`` block of a dataset YAML)."""

    model_config = ConfigDict(extra="forbid")

    arabic_diacritics: bool = True  # drop tatweel and harakat
    arabic_letters: bool = False  # fold alef / yeh / teh marbuta variants
    devanagari_nukta: bool = False  # drop the nukta (ज़ = ज)


DEFAULT_OPTIONS = NormaliseOptions()


def normalise_text(text: str, options: NormaliseOptions | None = None) -> str:
    """Key for near-duplicate detection: NFKC, casefold, invisible characters and (by default)
    Arabic diacritics removed, punctuation and symbols turned into spaces, whitespace collapsed."""
    options = options or DEFAULT_OPTIONS
    text = unicodedata.normalize("NFKC", text).casefold().translate(_REMOVE_ZERO_WIDTH)
    if options.arabic_diacritics:
        text = ARABIC_DIACRITICS.sub("", text.replace(ARABIC_TATWEEL, ""))
    if options.arabic_letters:
        text = text.translate(ARABIC_LETTER_VARIANTS)
    if options.devanagari_nukta:
        text = text.replace(DEVANAGARI_NUKTA, "")
    return _NOT_WORD.sub(" ", text).strip()
