"""normalise_text: the duplicate key, for Latin, Arabic and Devanagari text."""

import pytest

from socialens.core.errors import ConfigError
from socialens.core.types import Example, Label, LabelSchema
from socialens.data.datasets import DatasetConfig, RawDataset, load_dataset_config
from socialens.data.normalise import NormaliseOptions, normalise_text
from socialens.data.prepare import prepare

FOLD_LETTERS = NormaliseOptions(arabic_letters=True)


def test_latin_text_keeps_todays_key():
    assert normalise_text("  Hello,   WORLD!! ") == "hello world"
    assert normalise_text("snake_case\ttext") == "snake case text"
    assert normalise_text("ＦＵＬＬ width") == "full width"


def test_devanagari_vowel_signs_stay_in_their_word():
    # a \W split would cut the vowel signs out: कितनी and कितने would both become "क त"
    assert normalise_text("किताब") == "किताब"
    assert normalise_text("कितनी") != normalise_text("कितने")


def test_devanagari_nukta_precomposed_or_decomposed_compare_equal():
    precomposed, decomposed = "\u0958\u093f\u0932\u093e", "\u0915\u093c\u093f\u0932\u093e"  # क़िला
    assert normalise_text(precomposed) == normalise_text(decomposed)
    assert normalise_text("ज़रूरी") != normalise_text("जरूरी")  # the nukta is kept by default
    assert normalise_text("ज़रूरी", NormaliseOptions(devanagari_nukta=True)) == normalise_text("जरूरी")


def test_invisible_characters_and_no_break_spaces():
    assert normalise_text("हिन्\u200dदी") == normalise_text("हिन्दी")  # zero-width joiner
    assert normalise_text("क्\u200cष") == normalise_text("क्ष")  # zero-width non-joiner
    assert normalise_text("a\u200bb") == "ab"
    assert normalise_text("\ufeffनमस्ते\u00a0दुनिया") == "नमस्ते दुनिया"
    assert normalise_text("one\u202ftwo\u2003three") == "one two three"


def test_arabic_tatweel_and_harakat_go_by_default():
    assert normalise_text("مـــرحبا") == normalise_text("مرحبا")
    assert normalise_text("كَتَبَ") == normalise_text("كتب") == "كتب"
    assert normalise_text("شُكْراً") == normalise_text("شكرا")
    keep = NormaliseOptions(arabic_diacritics=False)
    assert normalise_text("كَتَبَ", keep) != normalise_text("كتب", keep)


def test_arabic_letter_variants_fold_only_as_an_option():
    pairs = [("أحمد", "احمد"), ("إسلام", "اسلام"), ("آمن", "امن"), ("مدرسة", "مدرسه"), ("على", "علي")]
    for variant, plain in pairs:
        assert normalise_text(variant) != normalise_text(plain)
        assert normalise_text(variant, FOLD_LETTERS) == normalise_text(plain, FOLD_LETTERS)


def test_arabic_punctuation_becomes_space():
    assert normalise_text("نعم، لا؛ ربما؟") == "نعم لا ربما"


def _raw(texts: list[str], options: dict | None = None) -> RawDataset:
    config = DatasetConfig.model_validate(
        {
            "name": "tiny-ar",
            "format": "csv",
            "file": "x.csv",
            "schema": {"labels": ["a", "b"]},
            **({"normalise": options} if options else {}),
        }
    )
    schema = LabelSchema([Label("a"), Label("b")])
    rows = [Example(id=f"r{i}", text=t, label="ab"[i % 2]) for i, t in enumerate(texts)]
    return RawDataset(name="tiny-ar", schema=schema, splits={"all": rows}, config=config)


def test_prepare_uses_the_dataset_options():
    texts = ["أنا في المدرسة اليوم", "انا في المدرسه اليوم", "هذا نص آخر مختلف", "نص ثالث للتجربة"] * 1
    texts += [f"جملة رقم {n} للتقسيم" for n in range(20)]
    by_default = prepare(_raw(texts)).stats["duplicates_dropped"]["all"]
    folded = prepare(_raw(texts, {"arabic_letters": True})).stats["duplicates_dropped"]["all"]
    assert by_default == {"exact": 0, "normalised": 0}
    assert folded == {"exact": 0, "normalised": 1}


def test_unknown_normalise_option_is_a_config_error(tmp_path):
    path = tmp_path / "dataset.yaml"
    path.write_text(
        "name: x\nformat: csv\nfile: x.csv\nnormalise: {arabic_letter: true}\nschema: {labels: [a, b]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"normalise\.arabic_letter: Extra inputs are not permitted"):
        load_dataset_config(path)
