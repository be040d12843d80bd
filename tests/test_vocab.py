"""The vocabulary: encode/decode round trips on any Unicode text, and its JSON form."""

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from charrnn.vocab import Vocab, index_dtype

# Text decoded from UTF-8 never holds lone surrogates (category Cs).
unicode_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1)


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "naïve café, Übermaß, ñandú",
        "日本語のテキストと中文",
        "emoji 🙂🚀 and a family 👩\u200d👩\u200d👧 with skin tone 👍🏽",
        "tabs\tand\r\nCRLF\x0bvertical",
        "\U0010ffff\U00010000\u0000",
    ],
)
def test_round_trip(text):
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert len(ids) == len(text)
    assert vocab.decode(ids) == text


def test_characters_sorted_by_code_point_with_counts():
    vocab = Vocab.from_text("bab🙂a€")
    assert vocab.index_to_char == ["a", "b", "€", "🙂"]
    assert vocab.counts == [2, 2, 1, 1]
    assert vocab.char_to_index["🙂"] == 3
    assert vocab.encode("ab🙂").tolist() == [0, 1, 3]


@pytest.mark.parametrize("size, dtype", [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.uint32)])
def test_smallest_index_dtype(size, dtype):
    assert index_dtype(size) == dtype


def test_large_vocabulary_uses_wider_indices():
    text = "".join(chr(0x4E00 + i) for i in range(300))
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.uint16
    assert vocab.decode(ids) == text


def test_unknown_characters_are_named():
    vocab = Vocab.from_text("abc")
    with pytest.raises(KeyError) as caught:
        vocab.encode("abxcyx")
    assert caught.value.args[0] == "xy"
    assert vocab.unknown_chars("a€b🙂€") == ["€", "🙂"]


def test_json_round_trip_keeps_order_counts_and_raw_characters():
    vocab = Vocab.from_text("zéa🙂\n")
    text = vocab.to_json()
    assert "🙂" in text and "é" in text  # stored as UTF-8, not \\u escapes
    again = Vocab.from_json(text)
    assert again == vocab
    assert again.counts == vocab.counts
    assert again.decode(again.encode("a🙂z")) == "a🙂z"


@pytest.mark.parametrize(
    "data",
    [
        {"vocab_size": 2, "index_to_char": ["a", "a"]},
        {"vocab_size": 2, "index_to_char": ["a", "bc"]},
        {"vocab_size": 3, "index_to_char": ["a", "b"]},
        {"vocab_size": 0, "index_to_char": []},
        {"vocab_size": 1, "index_to_char": [7]},
        {"vocab_size": 2, "index_to_char": ["a", "b"], "counts": [1]},
    ],
)
def test_json_that_is_not_a_vocabulary_is_refused(data):
    with pytest.raises(ValueError):
        Vocab.from_json(json.dumps(data))


@settings(deadline=None)
@given(unicode_text)
def test_property_round_trip(text):
    vocab = Vocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.index_to_char == sorted(set(text))
    assert sum(vocab.counts) == len(text)


@settings(deadline=None)
@given(unicode_text)
def test_property_json_round_trip(text):
    vocab = Vocab.from_text(text)
    again = Vocab.from_json(vocab.to_json())
    assert again == vocab and again.counts == vocab.counts
    assert again.decode(again.encode(text)) == text


@settings(deadline=None)
@given(unicode_text, unicode_text)
def test_property_encoding_is_per_character(a, b):
    vocab = Vocab.from_text(a + b)
    assert vocab.encode(a + b).tolist() == vocab.encode(a).tolist() + vocab.encode(b).tolist()
    # Text with characters outside the vocabulary names exactly those characters.
    small = Vocab.from_text(a)
    missing = "".join(dict.fromkeys(c for c in b if c not in small.char_to_index))
    if missing:
        with pytest.raises(KeyError) as caught:
            small.encode(b)
        assert caught.value.args[0] == missing
    else:
        assert small.decode(small.encode(b)) == b
