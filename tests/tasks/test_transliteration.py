"""Arabic and Devanagari answers: romanisation (anyascii), the consonant skeleton, the glossary of
label words, and how parse_label reads them. The spellings here are constructed (the built-in
models never answered in these forms; their real outputs are in fixtures/real_outputs.yaml)."""

import pytest

from socialens.core.types import Label, LabelSchema
from socialens.tasks.label_parsing import parse_label
from socialens.tasks.transliteration import (
    has_other_script,
    romanise,
    romanise_tokens,
    similarity,
    skeleton,
    skeleton_vocabulary,
    translate_words,
)

SARCASM = LabelSchema([Label("not sarcastic", aliases=("FALSE",)), Label("sarcastic", aliases=("TRUE",))])
HASOC_A = LabelSchema([Label("not offensive", aliases=("NOT",)), Label("offensive", aliases=("HOF",))])
HASOC_B = LabelSchema([Label("hate"), Label("offensive"), Label("profane")])
HASOC_C = LabelSchema([Label("targeted"), Label("untargeted")])
SENTIMENT = LabelSchema([Label("negative"), Label("neutral"), Label("positive")])


def test_romanise_both_scripts():
    assert romanise("سarcastic") == "sarcastic"
    assert romanise("ساركاستيك") == "srkstyk"  # no short vowels written
    assert romanise("टार्गेटेड") == "targeted"  # the final inherent vowel is deleted
    assert romanise("नॉट") == "not"  # ऑ is o
    assert romanise("أوفنسيف") == "wfnsyf"  # the hamza mark is dropped
    assert has_other_script("سarcastic") and has_other_script("हेट")
    assert not has_other_script("sarcastic") and not has_other_script("😂")


@pytest.mark.parametrize(
    ("spelling", "word"),
    [
        ("sarcastic", "sarcastic"),
        ("srkstyk", "sarcastic"),  # ساركاستيك
        ("sarkastik", "sarcastic"),  # सार्कास्टिक
        ("wfnsyf", "offensive"),  # أوفنسيف
        ("ophemsiv", "offensive"),  # ऑफेंसिव: anusvara before s is n
        ("brwfyn", "profane"),  # بروفين: Arabic has no p
        ("prophen", "profane"),  # प्रोफेन
        ("trjtd", "targeted"),  # تارجتد: ج for g
        ("antargeted", "untargeted"),
        ("nygatyf", "negative"),  # نيجاتيف
        ("nyutrl", "neutral"),  # न्यूट्रल
    ],
)
def test_skeleton_matches_spellings_of_english_words(spelling, word):
    assert skeleton(spelling) == skeleton(word)


def test_skeleton_vocabulary_drops_shared_and_keys_short_words_by_spelling():
    vocabulary = skeleton_vocabulary(["sarcastic", "hate", "not", "neutral", "nitrile"])
    assert vocabulary["srkstk"] == "sarcastic"
    assert "ntrl" not in vocabulary  # "neutral" and "nitrile" share it: it stands for neither
    assert vocabulary["hati"] == "hate" and vocabulary["not"] == "not"  # skeletons under 3 letters
    assert "ht" not in vocabulary and "nt" not in vocabulary


def test_romanise_tokens_replaces_only_what_spells_a_word():
    vocabulary = skeleton_vocabulary(["not", "sarcastic"])
    tokens = ["हेलो", "नॉट", "सार्कास्टिक", "tweet", "انت", "ساركاستيك"]
    # انت ("you") has the skeleton of "not": short skeletons match only as spelled, so it stays
    assert romanise_tokens(tokens, vocabulary) == ["हेलो", "not", "sarcastic", "tweet", "انت", "sarcastic"]


def test_translate_words_moves_hindi_negation_before_the_word():
    assert translate_words(["नफरत", "नहीं"]) == ["not", "hate"]
    assert translate_words(["यह", "आपत्तिजनक", "नहीं", "है"]) == ["यह", "not", "offensive", "है"]
    assert translate_words(["आंशिक", "रूप", "से", "गलत"]) == ["partially", "false"]
    assert translate_words(["والساخر"]) == ["sarcastic"]  # clitics و + ال stripped


def test_similarity_is_rapidfuzz_indel_ratio():
    assert similarity("belif", "belief") == pytest.approx(10 / 11)
    assert similarity("debunkd", "debunk", cutoff=0.95) == 0.0
    assert similarity("same", "same") == 1.0


@pytest.mark.parametrize(
    ("schema", "output", "label"),
    [
        (SARCASM, "سarcastic", "sarcastic"),  # the LlamaLens example: an Arabic first letter
        (SARCASM, "ساركاستيك", "sarcastic"),
        (SARCASM, "نوت ساركاستيك", "not sarcastic"),
        (SARCASM, "सार्कास्टिक", "sarcastic"),
        (SARCASM, "नॉट सार्कास्टिक", "not sarcastic"),
        (SARCASM, "Label: सार्कास्टिक", "sarcastic"),
        (HASOC_A, "ऑफेंसिव", "offensive"),
        (HASOC_A, "नॉट ऑफेंसिव", "not offensive"),
        (HASOC_A, "أوفنسيف", "offensive"),
        (HASOC_A, "आपत्तिजनक नहीं", "not offensive"),  # glossary + Hindi negation
        (HASOC_A, "यह पोस्ट आपत्तिजनक है।", "offensive"),
        (HASOC_B, "प्रोफेन", "profane"),
        (HASOC_B, "بروفين", "profane"),
        (HASOC_C, "अनटार्गेटेड", "untargeted"),
        (HASOC_C, "تارجتد", "targeted"),
        (SENTIMENT, "نيجاتيف", "negative"),
        (SENTIMENT, "न्यूट्रल", "neutral"),
        (SENTIMENT, "إيجابي", "positive"),  # glossary
        (SARCASM, "sarcastic या not sarcastic? लेबल: sarcastic", "sarcastic"),  # लेबल romanised: a cue
    ],
)
def test_parse_label_reads_other_scripts(schema, output, label):
    result = parse_label(output, schema)
    assert (result.label, result.status) == (label, "ok"), result
    assert result.method in ("transliteration", "cue")


@pytest.mark.parametrize(
    ("schema", "output"),
    [
        (SARCASM, "انت في البيت"),  # "you are at home": انت has the skeleton of "not"
        (SARCASM, "هذا نص عادي عن الطقس اليوم"),  # Arabic prose: nothing romanises into a label
        (HASOC_A, "पोस्ट के विपृच्य"),
        (HASOC_B, "हाथ हटाओ"),  # हाथ romanises as "hath": no short-word match by skeleton
    ],
)
def test_other_script_prose_names_no_label_by_chance(schema, output):
    result = parse_label(output, schema)
    assert result.status == "invalid", result
