"""Plate watchlist patterns: normalisation, validation and matching of OCR plate text against them."""

from __future__ import annotations

import logging
import string
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.plates.grammar import EMBASSY_PREFIX, PROVINCES, SUFFIXES, check_plate, normalise_plate_text

if TYPE_CHECKING:
    from edge.watchlist.store import WatchlistStore

log = logging.getLogger(__name__)

# Characters of special plates: driving school, police, trailer, Hong Kong, Macau, consulate and embassy.
SPECIAL_CHARACTERS = SUFFIXES + EMBASSY_PREFIX
PLATE_CHARACTERS = frozenset(PROVINCES + SPECIAL_CHARACTERS + string.ascii_uppercase + string.digits)
ANY_RUN = "*"
ANY_ONE = "?"
MAX_EDITS_LIMIT = 2
# Plain characters (not '*' or '?') that every match must have right, beyond the tolerated edits. 苏B*123
# has 5. An entry with fewer, such as 苏A1*, would alert on thousands of plates.
MIN_MATCHED_CHARACTERS = 4
# Real plates have at most 8 characters (new-energy plates). The margin leaves room for wildcards, and
# the limit keeps the matching cost per entry small.
MAX_PATTERN_LENGTH = 16
# Lengths of every plate the daemon publishes: the reads that pass the plate grammar.
PLATE_LENGTHS = (7, 8)


class WatchlistError(Exception):
    """Base of every error raised by the watchlist. The message names the value and what to do."""


class InvalidEntryError(WatchlistError):
    """A pattern, max_edits, reason, list name, actor or CSV row is invalid.

    `key` names the rule for messages in other languages. It is a catalogue key under `watchlist.` of the web
    page, and `fields` fill its placeholders. It is empty where no translated message exists.
    """

    def __init__(self, message: str, key: str = "", **fields: object):
        super().__init__(message)
        self.key = key
        self.fields = fields


class UnmatchablePatternError(InvalidEntryError):
    """Error for a pattern that no published plate can match; `kind` names the rule that it breaks."""

    def __init__(self, message: str, kind: str, pattern: str, published_as: str = ""):
        super().__init__(message, f"pattern_{kind}", pattern=pattern, published_as=published_as)
        self.kind = kind  # "length", "not_plate", "published_as" or "first_character"
        self.published_as = published_as


@dataclass(frozen=True)
class PlateEntry:
    """One watchlist entry as stored, with the normalised `pattern` and `created_at` as UTC ISO 8601 text."""

    id: int
    pattern: str
    max_edits: int
    reason: str
    list_name: str
    created_at: str
    created_by: str

    @property
    def is_exact(self) -> bool:
        return self.max_edits == 0 and ANY_RUN not in self.pattern and ANY_ONE not in self.pattern


@dataclass(frozen=True)
class PlateMatch:
    """A watchlist entry matched by a plate, with the edit distance between the two."""

    entry: PlateEntry
    distance: int


def normalise_pattern(pattern: str) -> str:
    """Return the normalised form of a watchlist pattern, or raise InvalidEntryError naming the problem.

    Runs of '*' collapse to one '*', because they match the same plates.
    """
    if not isinstance(pattern, str):
        raise InvalidEntryError(f"invalid plate pattern {pattern!r}: expected text such as '苏B12345'")

    normalised = normalise_plate_text(pattern)
    while ANY_RUN + ANY_RUN in normalised:
        normalised = normalised.replace(ANY_RUN + ANY_RUN, ANY_RUN)

    if not normalised:
        raise InvalidEntryError(
            f"invalid plate pattern {pattern!r}: it is empty after removing spaces, '·' and '-'; "
            "give the plate characters, such as '苏B12345'", "reject_pattern_empty"
        )
    invalid = sorted({c for c in normalised if c not in PLATE_CHARACTERS and c not in (ANY_RUN, ANY_ONE)})
    if invalid:
        listed_characters = ", ".join(repr(c) for c in invalid)
        verb = "is" if len(invalid) == 1 else "are"
        raise InvalidEntryError(
            f"invalid plate pattern {pattern!r}: {listed_characters} {verb} not allowed; "
            f"use a province abbreviation such as 京 or 苏, one of {SPECIAL_CHARACTERS}, A-Z, 0-9, "
            "'*' for any run of characters and '?' for exactly one character",
            "reject_characters", characters=" ".join(map(visible_character, invalid))
        )
    if len(normalised) > MAX_PATTERN_LENGTH:
        raise InvalidEntryError(
            f"invalid plate pattern {pattern!r}: {len(normalised)} characters after normalisation, "
            f"maximum {MAX_PATTERN_LENGTH}; a plate has at most 8", "reject_pattern_long", limit=MAX_PATTERN_LENGTH
        )
    return normalised


def visible_character(character: str) -> str:
    """Return `character`, or its code point such as U+200B where it prints as nothing or as a blank."""
    if unicodedata.category(character) in ("Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Co", "Cn"):
        return f"U+{ord(character):04X}"
    return character


def validate_max_edits(max_edits: object, pattern: str) -> int:
    """Return `max_edits` for the normalised `pattern`, or raise InvalidEntryError.

    A pattern needs MIN_MATCHED_CHARACTERS plain characters beyond `max_edits`. With fewer, such as 苏*,
    the entry alerts on a whole province or on every plate of a suitable length.
    """
    if isinstance(max_edits, bool) or not isinstance(max_edits, int) or not 0 <= max_edits <= MAX_EDITS_LIMIT:
        raise InvalidEntryError(
            f"invalid max_edits {max_edits!r} for pattern '{pattern}': use 0, 1 or 2, "
            "the number of OCR character errors to tolerate", "reject_max_edits", value=max_edits
        )
    plain_count = sum(1 for c in pattern if c not in (ANY_RUN, ANY_ONE))
    needed = MIN_MATCHED_CHARACTERS + max_edits
    if plain_count < needed:
        fix = f"give at least {needed} plate characters" + (" or lower max_edits" if max_edits else "")
        raise InvalidEntryError(
            f"invalid plate pattern '{pattern}' with max_edits {max_edits}: it has {plain_count} characters "
            f"other than '*' and '?', so it would alert on far too many plates; {fix}",
            "reject_too_broad_edits" if max_edits else "reject_too_broad", needed=needed, max_edits=max_edits
        )
    return max_edits


def check_pattern_can_match(pattern: str, max_edits: int) -> None:
    """Raise InvalidEntryError when no published plate can ever match the normalised `pattern`.

    Only reads that pass the plate grammar are published, so such an entry would never give a hit, while
    the investigator believes the vehicle is watched.
    """
    fixed = sum(1 for character in pattern if character != ANY_RUN)  # characters that every match needs
    shortest, longest = min(PLATE_LENGTHS) - max_edits, max(PLATE_LENGTHS) + max_edits
    if fixed > longest or (ANY_RUN not in pattern and fixed < shortest):
        needed = f"{fixed} or more" if ANY_RUN in pattern else str(fixed)
        raise UnmatchablePatternError(
            f"invalid plate pattern '{pattern}': it matches only plates of {needed} characters, but plates "
            f"have 7 or 8{f' (with {max_edits} edit(s): {shortest} to {longest})' if max_edits else ''}; "
            "check the characters, or use '*' for an unknown part", "length", pattern
        )
    if max_edits > 0:
        return  # the tolerated edits may change any character
    if ANY_RUN not in pattern and ANY_ONE not in pattern:
        check = check_plate(pattern)
        if not check.valid:
            raise UnmatchablePatternError(
                f"invalid plate pattern '{pattern}': it is not a mainland plate ({check.reason}), so no read "
                "can match it; check the characters, or allow OCR errors with max_edits", "not_plate", pattern
            )
        if check.text != pattern:
            raise UnmatchablePatternError(
                f"invalid plate pattern '{pattern}': reads of this plate are published as '{check.text}', "
                "because the plate format allows only the corrected character at each changed position "
                "(plates never use the letters I and O); enter it as it is published",
                "published_as", pattern, check.text
            )
    elif pattern[0] not in (ANY_RUN, ANY_ONE) and pattern[0] not in PROVINCES + EMBASSY_PREFIX:
        raise UnmatchablePatternError(
            f"invalid plate pattern '{pattern}': plates start with a province abbreviation such as 苏 or with "
            f"{EMBASSY_PREFIX}, not '{pattern[0]}'; add the province, or start the pattern with '*'",
            "first_character", pattern
        )


def pattern_distance(pattern: str, text: str, limit: int) -> int | None:
    """Return the edit distance between `pattern` and `text`, or None when it is above `limit`.

    '?' matches exactly one character and '*' any run of characters, possibly empty, both at no cost.
    Every other pattern character costs 1 per substitution, insertion or deletion (Levenshtein).
    """
    # Dynamic programming over the pattern, one row per pattern character. After the row for
    # pattern[:i], row[j] is the cheapest cost of matching pattern[:i] against text[:j].
    # Before the first row, text[:j] against the empty pattern costs j insertions.
    previous = list(range(len(text) + 1))
    for symbol in pattern:
        if symbol == ANY_RUN:
            # The star matches text[k:j] for some k <= j at no cost, so each cell is the
            # minimum of the previous row up to j: a running minimum.
            current = [previous[0]]
            for j in range(1, len(text) + 1):
                current.append(min(previous[j], current[j - 1]))
        else:
            # Column 0: the text has ended, so this pattern character counts as a deletion.
            current = [previous[0] + 1]
            for j, character in enumerate(text, start=1):
                substitution = previous[j - 1] + (0 if symbol == ANY_ONE or symbol == character else 1)
                deletion = previous[j] + 1
                insertion = current[j - 1] + 1
                current.append(min(substitution, deletion, insertion))
        # Costs never decrease along a path, and every path to a later row crosses this one,
        # so once the whole row is above the limit no alignment can come back under it.
        if min(current) > limit:
            return None
        previous = current
    distance = previous[-1]
    return distance if distance <= limit else None


class PlateWatchlist:
    """An immutable set of watchlist entries, prepared for matching many plates per second.

    Exact entries (max_edits 0, no wildcard) sit in a dict keyed by pattern. The other entries go
    through `pattern_distance` only after two cheap checks that rule out most of them: the text
    length, and the pieces of the pattern that must appear in the text (see `_split_pieces`).
    """

    def __init__(self, entries: Iterable[PlateEntry]):
        self._exact: dict[str, list[PlateEntry]] = {}
        self._fuzzy: list[_FuzzyEntry] = []
        self._count = 0
        for entry in entries:
            self._count += 1
            if entry.is_exact:
                self._exact.setdefault(entry.pattern, []).append(entry)
            else:
                self._fuzzy.append(_FuzzyEntry.from_entry(entry))

    def __len__(self) -> int:
        return self._count

    def match(self, plate_text: str) -> list[PlateMatch]:
        """Return the entries that `plate_text` matches, best first: lowest distance, then lowest id."""
        text = normalise_plate_text(plate_text)
        if not text:
            return []
        matches = [PlateMatch(entry, 0) for entry in self._exact.get(text, ())]
        length = len(text)
        for fuzzy in self._fuzzy:
            if length < fuzzy.min_length or (fuzzy.max_length is not None and length > fuzzy.max_length):
                continue
            if sum(piece in text for piece in fuzzy.pieces) < fuzzy.min_pieces_present:
                continue
            distance = pattern_distance(fuzzy.entry.pattern, text, fuzzy.entry.max_edits)
            if distance is not None:
                matches.append(PlateMatch(fuzzy.entry, distance))
        matches.sort(key=lambda match: (match.distance, match.entry.id))
        return matches


@dataclass(frozen=True)
class _FuzzyEntry:
    """An entry with wildcards or max_edits above 0, with the bounds that `PlateWatchlist.match` checks first."""

    entry: PlateEntry
    min_length: int
    max_length: int | None  # None when a '*' allows any length
    pieces: tuple[str, ...]
    min_pieces_present: int

    @classmethod
    def from_entry(cls, entry: PlateEntry) -> _FuzzyEntry:
        # Each pattern character other than '*' takes one text character or costs one deletion.
        fixed_length = len(entry.pattern.replace(ANY_RUN, ""))
        max_length = None if ANY_RUN in entry.pattern else fixed_length + entry.max_edits
        pieces = _split_pieces(entry.pattern, entry.max_edits + 1)
        return cls(entry, fixed_length - entry.max_edits, max_length, pieces, len(pieces) - entry.max_edits)


def _split_pieces(pattern: str, min_count: int) -> tuple[str, ...]:
    """Split the plain characters of `pattern` into at least `min_count` runs, where possible.

    Each edit changes at most one run, so a text within max_edits of the pattern contains at least
    len(pieces) - max_edits of them unchanged (the pigeonhole principle). The runs are cut at the
    wildcards, and the longest run is halved until there are `min_count` of them.
    """
    pieces = [piece for piece in pattern.replace(ANY_ONE, ANY_RUN).split(ANY_RUN) if piece]
    while len(pieces) < min_count:
        longest = max(pieces, key=len, default="")
        if len(longest) < 2:
            # Too few plain characters to split further. `validate_max_edits` rejects such patterns,
            # and an entry without pieces skips the piece check.
            return ()
        index = pieces.index(longest)
        middle = len(longest) // 2
        pieces[index:index + 1] = [longest[:middle], longest[middle:]]
    return tuple(pieces)


class PlateWatchlistReloader:
    """The current PlateWatchlist of a store, reloaded when the store's version changes.

    Call `refresh_if_changed` from the daemon's main loop. It queries the store's version at most
    once per `poll_interval_s` and otherwise only reads the clock, so calling it for every frame is cheap.
    """

    def __init__(
        self,
        store: WatchlistStore,
        poll_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if poll_interval_s < 0:
            raise ValueError(f"poll_interval_s must be 0 or more seconds, got {poll_interval_s}")
        self._store = store
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        # Errors here propagate, because a daemon that cannot read its watchlist at start should not run.
        self._version, entries = store.load_snapshot()
        self._watchlist = PlateWatchlist(entries)
        self._next_check = clock() + poll_interval_s
        self._failed_checks = 0
        log.info("plate watchlist loaded from %s: %d entries, version %d", store.path, len(entries), self._version)

    @property
    def version(self) -> int:
        return self._version

    def current(self) -> PlateWatchlist:
        return self._watchlist

    def refresh_if_changed(self) -> bool:
        """Reload the watchlist if the store's version changed; return whether it was reloaded.

        A store error is logged and the current watchlist kept, so the daemon keeps matching.
        """
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self._poll_interval_s

        try:
            version = self._store.version()
            if version == self._version:
                self._log_recovery()
                return False
            version, entries = self._store.load_snapshot()
        except WatchlistError as error:
            self._failed_checks += 1
            # Log the first failure and then every 100th, because a broken database fails on every poll.
            if self._failed_checks % 100 == 1:
                log.warning("plate watchlist not reloaded (failed check %d), keeping version %d: %s",
                            self._failed_checks, self._version, error)
            return False

        self._log_recovery()
        self._watchlist = PlateWatchlist(entries)
        log.info("plate watchlist reloaded: %d entries, version %d (was %d)", len(entries), version, self._version)
        self._version = version
        return True

    def _log_recovery(self) -> None:
        if self._failed_checks:
            log.info("plate watchlist store readable again after %d failed checks", self._failed_checks)
            self._failed_checks = 0
