import pytest

from writemate import alphabet


def test_alphabet_covers_iam_characters():
    assert alphabet.SIZE == 84
    for c in "QXZ0123456789.,;:!?'\"()-#&+/*@[]_":
        assert alphabet.encode(c)[0] > 0


def test_encode_decode_round_trip():
    text = "Hello, World! 1984 - Quiz?"
    assert alphabet.decode(alphabet.encode(text)) == text


def test_error_names_each_bad_character_and_position():
    with pytest.raises(alphabet.AlphabetError) as err:
        alphabet.encode("café ½")
    message = str(err.value)
    assert "'é'" in message and "position 4" in message
    assert "'½'" in message and "position 6" in message
    assert [b.position for b in err.value.bad] == [3, 5]


def test_to_plain():
    assert alphabet.to_plain("Café “déjà” — naïve’s…") == 'Cafe "deja" - naive\'s...'
    assert alphabet.unknown_characters(alphabet.to_plain("Ωmega ½ €")) == []


def test_newlines_are_not_unknown():
    assert alphabet.unknown_characters("a\nb") == []
