"""Plate grammar: normalisation, position-based corrections, formats, colour and length."""

from __future__ import annotations

import pytest

from edge.plates.grammar import (
    PROVINCES,
    Correction,
    check_colour_length,
    check_plate,
    normalise_plate_text,
)

# (raw read, colour, expected text, expected plate type)
VALID_READS = [
    pytest.param("京A12345", "blue", "京A12345", "standard", id="standard-blue"),
    pytest.param("鲁B6J23K", "yellow", "鲁B6J23K", "standard", id="standard-yellow"),
    pytest.param("鄂EKN359", None, "鄂EKN359", "standard", id="standard-no-colour"),
    pytest.param("苏ED51712", "green", "苏ED51712", "new_energy_small", id="small-ev-d"),
    pytest.param("沪AF71017", "green", "沪AF71017", "new_energy_small", id="small-ev-f"),
    pytest.param("苏BD73215", "green", "苏BD73215", "new_energy_small", id="small-ev-letter-serial"),
    pytest.param("粤BA12345", "green", "粤BA12345", "new_energy_small", id="small-ev-newer-a"),
    pytest.param("浙AKB1234", "green", "浙AKB1234", "new_energy_small", id="small-ev-newer-k"),
    pytest.param("苏E12345D", "yellow", "苏E12345D", "new_energy_large", id="large-ev-yellow"),
    pytest.param("苏E12345F", "green", "苏E12345F", "new_energy_large", id="large-ev-green"),
    pytest.param("鄂F8888警", "white", "鄂F8888警", "police", id="police"),
    pytest.param("京A1234警", None, "京A1234警", "police", id="police-no-colour"),
    pytest.param("粤A1234学", "yellow", "粤A1234学", "coach", id="coach"),
    pytest.param("鲁A1234挂", "yellow", "鲁A1234挂", "trailer", id="trailer"),
    pytest.param("粤Z1234港", "black", "粤Z1234港", "hong_kong", id="hong-kong"),
    pytest.param("粤Z1234澳", "black", "粤Z1234澳", "macau", id="macau"),
    pytest.param("沪A1234领", "black", "沪A1234领", "consulate", id="consulate"),
    pytest.param("使224009", "black", "使224009", "embassy", id="embassy"),
]


@pytest.mark.parametrize(("raw", "colour", "text", "plate_type"), VALID_READS)
def test_valid_plate_accepted(raw, colour, text, plate_type):
    result = check_plate(raw, colour=colour)
    assert result.valid
    assert result.plate_type == plate_type
    assert result.text == text
    assert result.reason is None
    assert result.corrections == ()


def test_provinces_are_31_distinct():
    assert len(PROVINCES) == 31
    assert len(set(PROVINCES)) == 31


@pytest.mark.parametrize("province", list(PROVINCES))
def test_every_province_accepted(province):
    result = check_plate(f"{province}A12345", colour="blue")
    assert result.valid
    assert result.plate_type == "standard"
    assert result.text == f"{province}A12345"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("鄂E KN359", id="space"),
        pytest.param("鄂E·KN359", id="middle-dot"),
        pytest.param("鄂E•KN359", id="bullet"),
        pytest.param("鄂E・KN359", id="katakana-dot"),
        pytest.param("鄂E-KN359", id="hyphen"),
        pytest.param("鄂ＥＫＮ３５９", id="full-width"),
        pytest.param("鄂Ｅ\u3000ＫＮ３５９", id="ideographic-space"),
        pytest.param(" 鄂e·kn359 ", id="lower-case"),
        pytest.param("鄂E\u200bKN359\ufeff", id="zero-width-space"),
    ],
)
def test_separators_normalised(raw):
    assert normalise_plate_text(raw) == "鄂EKN359"
    result = check_plate(raw)
    assert result.valid
    assert result.text == "鄂EKN359"


# (raw read, per-character probabilities, colour, expected text, expected corrections)
CORRECTED_READS = [
    pytest.param(
        "京A1O34I", None, None, "京A10341",
        (Correction(3, "O", "0"), Correction(6, "I", "1")),
        id="serial-o-and-i",
    ),
    pytest.param("京AIO123", None, "blue", "京A10123",
                 (Correction(2, "I", "1"), Correction(3, "O", "0")), id="serial-i-and-o"),
    pytest.param("京012345", None, None, "京D12345", (Correction(1, "0", "D"),), id="authority-zero-to-d"),
    pytest.param("京O12345", None, None, "京D12345", (Correction(1, "O", "D"),), id="authority-o-to-d"),
    pytest.param("京012345", [0.99] * 7, None, "京Q12345", (Correction(1, "0", "Q"),), id="authority-confident-zero"),
    pytest.param("京012345", [0.6] * 7, None, "京D12345", (Correction(1, "0", "D"),), id="authority-hesitant-zero"),
    pytest.param("京812345", None, None, "京B12345", (Correction(1, "8", "B"),), id="authority-eight-to-b"),
    pytest.param("京 O12345", [0.9, 0.5, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9], None, "京Q12345",
                 (Correction(1, "O", "Q"),), id="probs-aligned-after-space"),
    pytest.param("苏E051712", None, "green", "苏ED51712", (Correction(2, "0", "D"),), id="ev-mark-zero-to-d"),
    pytest.param("苏E051712", [0.99] * 8, "green", "苏ED51712", (Correction(2, "0", "D"),),
                 id="ev-mark-never-q"),
    pytest.param("苏BD73Z15", None, "green", "苏BD73215", (Correction(5, "Z", "2"),), id="ev-digit-z-to-2"),
    pytest.param("沪AF7IOB7", None, "green", "沪AF71087",
                 (Correction(4, "I", "1"), Correction(5, "O", "0"), Correction(6, "B", "8")), id="ev-digits-i-o-b"),
    pytest.param("苏BDG3S15", None, "green", "苏BDG3515", (Correction(5, "S", "5"),), id="ev-serial-keeps-g"),
    pytest.param("苏E1234SD", None, "yellow", "苏E12345D", (Correction(6, "S", "5"),), id="large-ev-s-to-5"),
    pytest.param("苏EQ2345F", None, "yellow", "苏E02345F", (Correction(2, "Q", "0"),), id="large-ev-q-to-0"),
    pytest.param("粤21234港", None, "black", "粤Z1234港", (Correction(1, "2", "Z"),), id="hong-kong-2-to-z"),
    pytest.param("沪A12B4领", None, "black", "沪A1284领", (Correction(4, "B", "8"),), id="consulate-b-to-8"),
    pytest.param("使2G4OO9", None, "black", "使264009",
                 (Correction(2, "G", "6"), Correction(4, "O", "0"), Correction(5, "O", "0")), id="embassy-digits"),
]


@pytest.mark.parametrize(("raw", "probs", "colour", "text", "corrections"), CORRECTED_READS)
def test_lookalikes_corrected_by_position(raw, probs, colour, text, corrections):
    result = check_plate(raw, char_probs=probs, colour=colour)
    assert result.valid
    assert result.text == text
    assert result.corrections == corrections


@pytest.mark.parametrize(
    ("raw", "colour", "plate_type"),
    [
        pytest.param("苏ED1234D", None, "new_energy_small", id="tie-default-small"),
        pytest.param("苏ED1234D", "green", "new_energy_small", id="tie-green-small"),
        pytest.param("苏ED1234D", "yellow", "new_energy_large", id="tie-yellow-large"),
    ],
)
def test_colour_breaks_layout_tie(raw, colour, plate_type):
    result = check_plate(raw, colour=colour)
    assert result.valid
    assert result.plate_type == plate_type


# (raw read, colour, expected reason)
INVALID_READS = [
    pytest.param("苏BD7321", "green", "green new-energy plate read with 7 characters; one character is missing",
                 id="green-seven"),
    pytest.param("苏BD73215", "blue", "blue plate read with 8 characters; 7 characters expected", id="blue-eight"),
    pytest.param("京A1234", "blue", "blue plate read with 6 characters; one character is missing", id="blue-six"),
    pytest.param("京A1234", None, "7 characters expected for a standard plate, got 6", id="short-standard"),
    pytest.param("京A", None, "7 characters expected for a standard plate, got 2", id="province-letter-only"),
    pytest.param("京A123456789", None, "8 characters expected for a new-energy plate, got 11", id="too-long"),
    pytest.param("京A123警", None, "7 characters expected for a police plate, got 6", id="short-police"),
    pytest.param("使22400", None, "7 characters expected for an embassy plate, got 6", id="short-embassy"),
    pytest.param("", None, "empty read: no plate characters left after removing separators", id="empty"),
    pytest.param(" · - ", None, "empty read: no plate characters left after removing separators",
                 id="separators-only"),
    pytest.param("台A12345", None, "unknown province '台' at position 1", id="unknown-province"),
    pytest.param("AA12345", None, "unknown province 'A' at position 1", id="latin-province"),
    pytest.param("京A12警34", None, "'警' only allowed as the last character", id="police-suffix-middle"),
    pytest.param("鲁A12挂34", None, "'挂' only allowed as the last character", id="trailer-suffix-middle"),
    pytest.param("警A12345", None, "'警' only allowed as the last character", id="police-suffix-first"),
    pytest.param("京A1234使", None, "'使' only allowed as the first character", id="embassy-mark-last"),
    pytest.param("京Z1234港", "black",
                 "Hong Kong plate needs 粤 (Hong Kong and Macau plates are issued only under 粤Z) at position 1, "
                 "got '京'", id="hong-kong-wrong-province"),
    pytest.param("粤A1234澳", "black",
                 "Macau plate needs Z (Hong Kong and Macau plates are issued only under 粤Z) at position 2, "
                 "got 'A'", id="macau-wrong-authority"),
    pytest.param("京112345", None,
                 "standard plate needs an issuing-authority letter at position 2, got '1'; "
                 "'1' and 'I' are not corrected to a letter because plates never use I", id="authority-one"),
    pytest.param("京I12345", None,
                 "standard plate needs an issuing-authority letter at position 2, got 'I'; "
                 "'1' and 'I' are not corrected to a letter because plates never use I", id="authority-i"),
    pytest.param("苏EP12345", "green",
                 "small new-energy plate needs one of D, A, B, C, E, F, G, H, J, K at position 3, got 'P'",
                 id="ev-mark-p"),
    pytest.param("苏E12A45D", "yellow", "large new-energy plate needs a digit at position 5, got 'A'",
                 id="large-ev-letter-in-digits"),
    pytest.param("京A12#45", None, "standard plate needs a letter or digit at position 5, got '#'", id="symbol"),
    pytest.param("京A京2345", None, "standard plate needs a letter or digit at position 3, got '京'",
                 id="province-in-serial"),
    pytest.param("沪A12X4领", "black", "consulate plate needs a digit at position 5, got 'X'",
                 id="consulate-letter"),
    pytest.param("鄂F8888警", "blue", "police plates are white, but the plate colour is blue", id="police-blue"),
    pytest.param("粤A1234学", "white", "coach plates are yellow, but the plate colour is white", id="coach-white"),
    pytest.param("京A12345", "black", "standard plates are blue or yellow, but the plate colour is black",
                 id="standard-black"),
    pytest.param("苏ED51712", "yellow", "small new-energy plates are green, but the plate colour is yellow",
                 id="small-ev-yellow"),
]


@pytest.mark.parametrize(("raw", "colour", "reason"), INVALID_READS)
def test_invalid_read_rejected(raw, colour, reason):
    result = check_plate(raw, colour=colour)
    assert not result.valid
    assert result.plate_type is None
    assert result.reason == reason


@pytest.mark.parametrize("lost", range(8), ids=lambda lost: f"lost-{lost}")
def test_green_lost_character_rejected(lost):
    full = "苏BD73215"
    result = check_plate(full[:lost] + full[lost + 1:], colour="green")
    assert not result.valid
    assert result.reason == "green new-energy plate read with 7 characters; one character is missing"


def test_misplaced_suffix_skips_corrections():
    result = check_plate("京1O警34")
    assert not result.valid
    assert result.text == "京1O警34"
    assert result.corrections == ()


def test_invalid_read_keeps_corrections():
    result = check_plate("京112O45")
    assert not result.valid
    assert result.text == "京112045"
    assert result.corrections == (Correction(4, "O", "0"),)


# Every accepted read above, as (raw read, probabilities, colour).
ACCEPTED_INPUTS = [pytest.param(row.values[0], None, row.values[1], id=row.id) for row in VALID_READS] + [
    pytest.param(*row.values[:3], id=row.id) for row in CORRECTED_READS
]


@pytest.mark.parametrize(("raw", "probs", "colour"), ACCEPTED_INPUTS)
def test_valid_output_never_has_i_or_o(raw, probs, colour):
    result = check_plate(raw, char_probs=probs, colour=colour)
    assert result.valid
    assert "I" not in result.text
    assert "O" not in result.text


@pytest.mark.parametrize(
    ("length", "colour", "reason"),
    [
        pytest.param(8, "green", None, id="green-8"),
        pytest.param(7, "green", "green new-energy plate read with 7 characters; one character is missing",
                     id="green-7"),
        pytest.param(6, "green", "green new-energy plate read with 6 characters; 2 characters are missing",
                     id="green-6"),
        pytest.param(7, "blue", None, id="blue-7"),
        pytest.param(8, "blue", "blue plate read with 8 characters; 7 characters expected", id="blue-8"),
        pytest.param(7, "yellow", None, id="yellow-7"),
        pytest.param(8, "yellow", None, id="yellow-8"),
        pytest.param(9, "yellow", "yellow plate read with 9 characters; 7 or 8 expected", id="yellow-9"),
        pytest.param(7, "white", None, id="white-7"),
        pytest.param(7, "black", None, id="black-7"),
        pytest.param(5, None, None, id="no-colour"),
    ],
)
def test_colour_length_rule(length, colour, reason):
    assert check_colour_length(length, colour) == reason


def test_probs_length_mismatch_raises():
    with pytest.raises(ValueError, match="one probability per character"):
        check_plate("京A12345", char_probs=[0.9] * 6)


def test_unknown_colour_raises():
    with pytest.raises(ValueError, match="unknown plate colour 'red'"):
        check_plate("京A12345", colour="red")
