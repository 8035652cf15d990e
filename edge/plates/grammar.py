"""Validate and normalise OCR reads of mainland Chinese licence plates.

A CTC recogniser returns a raw string and one probability per character. `check_plate`
removes separators, fixes the letter/digit confusions that the plate layout makes
unambiguous, and checks the result against the plate formats of GA 36-2018 (the public
security standard for motor-vehicle number plates) and its special-purpose plates.

Reasons in `PlateCheck.reason` count positions from 1, as a person reads the plate.
`Correction.position` counts from 0, as Python indexes the text.

The check does not know which issuing-authority letters each province uses, so a read
such as 京Z12345 passes although Beijing may not issue that letter.

NOTE: military plates and armed-police (WJ) plates are not accepted. Their current
layouts mix unit codes, Chinese characters and letters in ways that this module could
not state precisely enough to validate. Emergency-service plates (suffix 应急) and the
pre-2017 embassy and consulate layouts with six digits are not accepted either.
"""

from __future__ import annotations

import unicodedata

from dataclasses import dataclass
from typing import Sequence

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

PLATE_TYPES = (
    "standard",
    "new_energy_small",
    "new_energy_large",
    "police",
    "coach",
    "trailer",
    "hong_kong",
    "macau",
    "consulate",
    "embassy",
)
COLOURS = ("blue", "yellow", "green", "white", "black")

DIGITS = "0123456789"
# Plates never use I or O because they are too easy to confuse with 1 and 0.
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
SERIAL_CHARACTERS = LETTERS + DIGITS

# The first serial character of a small new-energy plate marks the drive train. GA 36-2018
# defines D (battery electric) and F (plug-in hybrid, range extender or fuel cell). Newer
# allocations also put A, B, C, E (battery electric) and G, H, J, K (the other kinds) in
# this position. Those plates are on the road, so they are accepted.
# NOTE: the extra letters follow allocation practice reported in secondary sources, not
# the text of the standard. Remove them here if a deployment must accept only D and F.
NEW_ENERGY_SMALL_MARKS = "DABCEFGHJK"
# Large new-energy plates still use only D and F, as the last character.
NEW_ENERGY_LARGE_MARKS = "DF"

SUFFIXES = "警学挂港澳领"
EMBASSY_PREFIX = "使"

# Separators that people and some recognisers put between the authority letter and the
# serial. They are never part of the plate number.
MIDDLE_DOTS = (
    "\N{MIDDLE DOT}\N{BULLET}\N{KATAKANA MIDDLE DOT}\N{HALFWIDTH KATAKANA MIDDLE DOT}"
    "\N{HYPHENATION POINT}\N{BULLET OPERATOR}\N{DOT OPERATOR}"
)
DASHES = (
    "-\N{HYPHEN}\N{NON-BREAKING HYPHEN}\N{FIGURE DASH}\N{EN DASH}\N{EM DASH}"
    "\N{HORIZONTAL BAR}\N{MINUS SIGN}"
)
SEPARATORS = MIDDLE_DOTS + DASHES

# Full-width forms U+FF01..U+FF5E sit at a fixed offset from ASCII U+0021..U+007E.
_FULL_WIDTH_FIRST = 0xFF01
_FULL_WIDTH_LAST = 0xFF5E
_FULL_WIDTH_OFFSET = 0xFEE0

# Letters that the plate font draws close to a digit, used where only a digit is valid.
# G and 6 differ only by the short bar and the gap at the top right, which blur away in
# small crops. T and 7 are kept apart because their strokes differ too much.
DIGIT_LOOKALIKES = {"O": "0", "D": "0", "Q": "0", "I": "1", "B": "8", "Z": "2", "S": "5", "G": "6"}
# The reverse of DIGIT_LOOKALIKES, used where only a letter is valid. 0 and O are resolved
# by `_letter_for_round_glyph`. 1 and I get no entry because I never occurs. The other
# one-stroke letters (J, L, T) are too far from 1 to pick one, so such a read is rejected
# and the per-track vote takes the plate from other frames.
LETTER_LOOKALIKES = {"8": "B", "2": "Z", "5": "S", "6": "G"}
# Corrections for positions that allow letters and digits. Only I and O are certain there,
# because plates never use them.
SERIAL_LOOKALIKES = {"I": "1", "O": "0"}

# At or above this probability a 0 or O read in a letter-only position is taken to be Q.
# A confident read of a round glyph fits Q, the only round plate letter, whose short tail
# is easily lost. A hesitant read more likely saw D, which is only round on the right.
# NOTE: 0.9 is an estimate, not tuned on labelled plates.
ROUND_GLYPH_Q_MIN_PROB = 0.9

_EXPECTED_LENGTHS = {"blue": (7,), "green": (8,), "yellow": (7, 8), "white": (7,), "black": (7,)}

_DISPLAY_NAMES = {
    "standard": "standard",
    "new_energy_small": "small new-energy",
    "new_energy_large": "large new-energy",
    "police": "police",
    "coach": "coach",
    "trailer": "trailer",
    "hong_kong": "Hong Kong",
    "macau": "Macau",
    "consulate": "consulate",
    "embassy": "embassy",
}


@dataclass(frozen=True)
class Correction:
    """One character that was replaced because the plate layout rules it out."""

    position: int  # 0-based index into the normalised text
    read: str
    corrected: str


@dataclass(frozen=True)
class PlateCheck:
    """Outcome of checking one OCR read against the plate grammar."""

    text: str  # normalised and corrected, also when invalid, for logging
    valid: bool
    plate_type: str | None  # one of PLATE_TYPES when valid, else None
    reason: str | None  # why the read is invalid, None when valid
    corrections: tuple[Correction, ...]


@dataclass(frozen=True)
class _Slot:
    """One character position of a plate layout."""

    allowed: str
    description: str  # noun phrase for error messages, e.g. "a digit"


@dataclass(frozen=True)
class _Layout:
    plate_type: str
    slots: tuple[_Slot, ...]
    colours: tuple[str, ...]


@dataclass(frozen=True)
class _Fit:
    """A read matched slot by slot against one layout."""

    layout: _Layout
    text: str
    corrections: tuple[Correction, ...]
    problems: tuple[str, ...]


_PROVINCE = _Slot(PROVINCES, "a province abbreviation")
_AUTHORITY = _Slot(LETTERS, "an issuing-authority letter")
_SERIAL = _Slot(SERIAL_CHARACTERS, "a letter or digit")
_DIGIT = _Slot(DIGITS, "a digit")


def _fixed(character: str, description: str | None = None) -> _Slot:
    return _Slot(character, description or character)


# Standard plates (blue for small vehicles, yellow for large ones): province, authority
# letter and five serial characters.
STANDARD = _Layout("standard", (_PROVINCE, _AUTHORITY) + (_SERIAL,) * 5, ("blue", "yellow"))

# Small new-energy plates (green): province, authority letter, drive-train mark, one letter
# or digit, then four digits, e.g. 苏ED51712.
NEW_ENERGY_SMALL = _Layout(
    "new_energy_small",
    (_PROVINCE, _AUTHORITY, _Slot(NEW_ENERGY_SMALL_MARKS, f"one of {', '.join(NEW_ENERGY_SMALL_MARKS)}"), _SERIAL)
    + (_DIGIT,) * 4,
    ("green",),
)

# Large new-energy plates are yellow and green, so a colour classifier may return either.
# Layout: province, authority letter, five digits, then D or F, e.g. 苏E12345D.
NEW_ENERGY_LARGE = _Layout(
    "new_energy_large",
    (_PROVINCE, _AUTHORITY) + (_DIGIT,) * 5 + (_Slot(NEW_ENERGY_LARGE_MARKS, "D or F"),),
    ("green", "yellow"),
)


def _suffix_layout(plate_type: str, suffix: str, colour: str) -> _Layout:
    """Province, authority letter, four letters or digits, then the suffix character."""
    return _Layout(plate_type, (_PROVINCE, _AUTHORITY) + (_SERIAL,) * 4 + (_fixed(suffix),), (colour,))


# Hong Kong and Macau cross-border vehicles get their mainland plate only from 粤Z.
_GUANGDONG = _fixed("粤", "粤 (Hong Kong and Macau plates are issued only under 粤Z)")
_CROSS_BORDER_AUTHORITY = _fixed("Z", "Z (Hong Kong and Macau plates are issued only under 粤Z)")


def _cross_border_layout(plate_type: str, suffix: str) -> _Layout:
    return _Layout(plate_type, (_GUANGDONG, _CROSS_BORDER_AUTHORITY) + (_SERIAL,) * 4 + (_fixed(suffix),), ("black",))


SUFFIX_LAYOUTS = {
    "警": _suffix_layout("police", "警", "white"),
    "学": _suffix_layout("coach", "学", "yellow"),
    "挂": _suffix_layout("trailer", "挂", "yellow"),
    "港": _cross_border_layout("hong_kong", "港"),
    "澳": _cross_border_layout("macau", "澳"),
    # Consulate plates carry the city's province and authority letter and a four-digit
    # serial, e.g. 沪A1234领.
    "领": _Layout("consulate", (_PROVINCE, _AUTHORITY) + (_DIGIT,) * 4 + (_fixed("领"),), ("black",)),
}

# Embassy plates (2017 layout): 使, a three-digit country code, a three-digit serial,
# e.g. 使224009 for a car of the United States embassy.
EMBASSY = _Layout("embassy", (_fixed(EMBASSY_PREFIX),) + (_DIGIT,) * 6, ("black",))


def normalise_plate_text(raw: str) -> str:
    """Remove spaces and separators, convert full-width ASCII to half-width and upper-case Latin letters."""
    return "".join(character for _, character in _normalise_indexed(raw))


def _normalise_indexed(raw: str) -> list[tuple[int, str]]:
    """Normalise `raw` and keep each remaining character's index in `raw` to align probabilities."""
    kept = []
    for index, character in enumerate(raw):
        character = _to_half_width(character)
        # Format characters such as the zero-width space and the byte order mark are invisible and come
        # with text pasted from documents and chat messages.
        if character.isspace() or character in SEPARATORS or unicodedata.category(character) == "Cf":
            continue
        # Only ASCII letters are upper-cased, because str.upper turns some letters (ß) into
        # two characters, which would break the alignment with the probabilities.
        if "a" <= character <= "z":
            character = character.upper()
        kept.append((index, character))
    return kept


def _to_half_width(character: str) -> str:
    code = ord(character)
    if _FULL_WIDTH_FIRST <= code <= _FULL_WIDTH_LAST:
        return chr(code - _FULL_WIDTH_OFFSET)
    return character


def check_colour_length(length: int, colour: str | None) -> str | None:
    """Return why a read of `length` characters cannot be a plate of `colour`, or None if it can.

    Green plates are new-energy plates with 8 characters. Blue, white and black plates have
    7. Yellow plates have 7, except large new-energy plates, which are yellow and green
    and have 8. A colour of None matches any length.
    """
    if colour is None:
        return None
    _validate_colour(colour)
    expected = _EXPECTED_LENGTHS[colour]
    if length in expected:
        return None

    plate = "green new-energy plate" if colour == "green" else f"{colour} plate"
    if len(expected) > 1:
        return f"{plate} read with {length} characters; {' or '.join(map(str, expected))} expected"
    missing = expected[0] - length
    if missing == 1:
        detail = "one character is missing"
    elif missing > 1:
        detail = f"{missing} characters are missing"
    else:
        detail = f"{expected[0]} characters expected"
    return f"{plate} read with {length} characters; {detail}"


def _validate_colour(colour: str) -> None:
    if colour not in COLOURS:
        raise ValueError(f"unknown plate colour {colour!r}; expected one of {', '.join(COLOURS)} or None")


def check_plate(
    raw: str, char_probs: Sequence[float] | None = None, colour: str | None = None
) -> PlateCheck:
    """Normalise one OCR read, correct letter/digit confusions and check it against the plate formats.

    `char_probs` has one probability per character of `raw`, separators included. It only
    decides whether a 0 or O in a letter-only position becomes Q or D. `colour` is one of
    COLOURS or None. A colour that contradicts the length or the plate type makes the read
    invalid. Between two layouts that fit equally well, yellow selects the large
    new-energy plate.

    Raises ValueError when `char_probs` does not match `raw` in length or `colour` is unknown.
    """
    if char_probs is not None and len(char_probs) != len(raw):
        raise ValueError(
            f"char_probs has {len(char_probs)} values but the raw read {raw!r} has {len(raw)} characters; "
            "pass one probability per character of raw"
        )
    if colour is not None:
        _validate_colour(colour)

    indexed = _normalise_indexed(raw)
    text = "".join(character for _, character in indexed)
    probs = [char_probs[index] for index, _ in indexed] if char_probs is not None else None

    reason = _check_shape(text, colour)
    if reason is not None:
        return PlateCheck(text, False, None, reason, ())

    fit = _best_fit([_fit_layout(layout, text, probs) for layout in _candidate_layouts(text)], colour)
    if fit.problems:
        return PlateCheck(fit.text, False, None, fit.problems[0], fit.corrections)

    reason = _check_colour_type(fit.layout, colour)
    if reason is not None:
        return PlateCheck(fit.text, False, None, reason, fit.corrections)
    return PlateCheck(fit.text, True, fit.layout.plate_type, None, fit.corrections)


def _check_shape(text: str, colour: str | None) -> str | None:
    """Return why `text` fits no layout by its length, colour or special characters, else None."""
    if not text:
        return "empty read: no plate characters left after removing separators"

    reason = check_colour_length(len(text), colour)
    if reason is not None:
        return reason

    reason = _check_special_positions(text)
    if reason is not None:
        return reason

    if text[0] != EMBASSY_PREFIX and text[0] not in PROVINCES:
        return f"unknown province '{text[0]}' at position 1"

    layout_name, expected = _expected_length(text)
    if len(text) != expected:
        return f"{expected} characters expected for {_with_article(layout_name)} plate, got {len(text)}"
    return None


def _check_special_positions(text: str) -> str | None:
    """Reject a suffix character anywhere but last, and 使 anywhere but first."""
    for index, character in enumerate(text):
        if character in SUFFIXES and index != len(text) - 1:
            return f"'{character}' only allowed as the last character"
        if character == EMBASSY_PREFIX and index != 0:
            return f"'{character}' only allowed as the first character"
    return None


def _expected_length(text: str) -> tuple[str, int]:
    """Return the display name of the layout family that `text` belongs to and its length."""
    if text[0] == EMBASSY_PREFIX:
        return _DISPLAY_NAMES["embassy"], 7
    if text[-1] in SUFFIXES:
        return _DISPLAY_NAMES[SUFFIX_LAYOUTS[text[-1]].plate_type], 7
    if len(text) <= 7:
        return _DISPLAY_NAMES["standard"], 7
    return "new-energy", 8


def _with_article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiouAEIOU" else f"a {name}"


def _candidate_layouts(text: str) -> list[_Layout]:
    """Return the layouts that a read of this length and these special characters can have."""
    if text[0] == EMBASSY_PREFIX:
        return [EMBASSY]
    if text[-1] in SUFFIXES:
        return [SUFFIX_LAYOUTS[text[-1]]]
    if len(text) == 8:
        return [NEW_ENERGY_SMALL, NEW_ENERGY_LARGE]
    return [STANDARD]


def _best_fit(fits: list[_Fit], colour: str | None) -> _Fit:
    """Prefer the fit with the fewest problems, then the fewest corrections.

    Ties keep the list order, which puts small new-energy plates before large ones because
    small ones are far more common. A yellow plate moves the yellow layouts first, because
    among 8-character plates only large new-energy ones are yellow.
    """
    if colour == "yellow":
        # sorted() is stable, so the other layouts keep their order.
        fits = sorted(fits, key=lambda fit: "yellow" not in fit.layout.colours)
    return min(fits, key=lambda fit: (len(fit.problems), len(fit.corrections)))


def _fit_layout(layout: _Layout, text: str, probs: Sequence[float] | None) -> _Fit:
    """Match `text` against `layout`, correcting lookalike characters slot by slot."""
    characters = list(text)
    corrections = []
    problems = []
    for index, (slot, character) in enumerate(zip(layout.slots, text)):
        if character in slot.allowed:
            continue
        prob = probs[index] if probs is not None else None
        replacement = _correct(character, slot, prob)
        if replacement is None:
            problems.append(_describe_problem(layout, index, slot, character))
            continue
        characters[index] = replacement
        corrections.append(Correction(index, character, replacement))
    return _Fit(layout, "".join(characters), tuple(corrections), tuple(problems))


def _correct(character: str, slot: _Slot, prob: float | None) -> str | None:
    """Return the character that `character` was most likely misread from, if the slot allows it."""
    if set(slot.allowed) <= set(DIGITS):
        candidates = DIGIT_LOOKALIKES.get(character, "")
    elif set(slot.allowed) <= set(LETTERS):
        if character in "0O":
            candidates = _letter_for_round_glyph(prob)
        else:
            candidates = LETTER_LOOKALIKES.get(character, "")
    else:
        candidates = SERIAL_LOOKALIKES.get(character, "")

    for candidate in candidates:
        if candidate in slot.allowed:
            return candidate
    return None


def _letter_for_round_glyph(prob: float | None) -> str:
    """Return the letters that a 0 or O may stand for, most likely first."""
    if prob is not None and prob >= ROUND_GLYPH_Q_MIN_PROB:
        return "QD"
    return "DQ"


def _describe_problem(layout: _Layout, index: int, slot: _Slot, character: str) -> str:
    problem = (
        f"{_DISPLAY_NAMES[layout.plate_type]} plate needs {slot.description} at position {index + 1}, "
        f"got '{character}'"
    )
    if character in "1I" and set(slot.allowed) <= set(LETTERS):
        problem += "; '1' and 'I' are not corrected to a letter because plates never use I"
    return problem


def _check_colour_type(layout: _Layout, colour: str | None) -> str | None:
    if colour is None or colour in layout.colours:
        return None
    expected = " or ".join(layout.colours)
    return f"{_DISPLAY_NAMES[layout.plate_type]} plates are {expected}, but the plate colour is {colour}"
