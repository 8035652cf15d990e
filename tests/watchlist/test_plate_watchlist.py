"""Plate watchlist: SQLite store with audit log, pattern normalisation, matching, reloading and the CLI."""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.watchlist import (
    InvalidEntryError,
    PlateEntry,
    PlateWatchlist,
    PlateWatchlistReloader,
    WatchlistStore,
    WatchlistStoreError,
    default_database_path,
    normalise_pattern,
    pattern_distance,
)
from edge.watchlist.cli import add_watchlist_parser, main, run_watchlist_command

CSV_HEADER = "pattern,reason,list_name,max_edits\n"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "watchlists.sqlite"


@pytest.fixture
def store(db_path: Path) -> WatchlistStore:
    return WatchlistStore(db_path)


def make_entry(entry_id: int, pattern: str, max_edits: int = 0, list_name: str = "stolen") -> PlateEntry:
    return PlateEntry(entry_id, normalise_pattern(pattern), max_edits, "case 1", list_name, "2024-01-01", "test")


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "EDGE_DATA_DIR"}
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.watchlist.cli", "watchlist", *args],
        capture_output=True, text=True, encoding="utf-8", cwd=cwd, env=env or cli_env(), timeout=60,
    )


# --- normalisation and validation ---------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "苏B 12345", "苏B·12345", "苏B-12345", "苏B・12345", "苏Ｂ１２３４５", "苏b12345", "\u3000苏B\u300012345 ",
])
def test_pattern_normalised_to_plain_form(raw):
    assert normalise_pattern(raw) == "苏B12345"


def test_wildcards_normalised():
    assert normalise_pattern("京a＊＊1？") == "京A*1?"


INVALID_PATTERNS = [
    # (pattern, max_edits, words the message must contain)
    ("苏B#123", 0, "'#' is not allowed"),
    ("东B12345", 0, "'东' is not allowed"),
    ("苏BÄ12345", 0, "'Ä' is not allowed"),
    ("", 0, "empty"),
    (" · - ", 0, "empty"),
    ("苏B1234567890123456", 0, "maximum 16"),
    ("*", 0, "would alert on far too many plates"),
    ("苏?", 1, "would alert on far too many plates"),
    ("苏*", 0, "give at least 4 plate characters"),
    ("*123", 0, "give at least 4 plate characters"),
    ("苏A12*", 1, "give at least 5 plate characters"),
    # Patterns that no published plate can match, because published plates pass the plate grammar.
    ("ABCD", 0, "only plates of 4 characters"),
    ("AB123", 1, "only plates of 5 characters"),
    ("苏B1234567890", 0, "only plates of 12 characters"),
    ("苏B12345????*", 0, "only plates of 11 or more"),
    ("1234567", 0, "not a mainland plate"),
    ("京京京京京京京", 0, "not a mainland plate"),
    ("苏BO1234", 0, "published as '苏B01234'"),
    ("B*123", 0, "plates start with a province"),
]

# Patterns that a published plate can match.
VALID_PATTERNS = [("苏B12345", 0), ("苏BD73215", 0), ("苏B*123", 0), ("*1234", 0), ("?B12345", 0), ("AB1234", 1),
                  ("苏A7777*", 2),
                  ("使123456", 0), ("粤Z1234港", 0), ("京A1234警", 0)]


@pytest.mark.parametrize(("pattern", "max_edits"), VALID_PATTERNS)
def test_matchable_pattern_accepted(store, pattern, max_edits):
    entry = store.add_plate(pattern, "case 1", "stolen", max_edits)
    assert entry.pattern == pattern


@pytest.mark.parametrize(("pattern", "max_edits", "expected"), INVALID_PATTERNS)
def test_invalid_pattern_rejected(store, pattern, max_edits, expected):
    with pytest.raises(InvalidEntryError) as caught:
        store.add_plate(pattern, "case 1", "stolen", max_edits)
    assert expected in str(caught.value)
    assert "pattern" in str(caught.value)


@pytest.mark.parametrize("max_edits", [3, -1, True, "1", 1.0])
def test_invalid_max_edits_rejected(store, max_edits):
    with pytest.raises(InvalidEntryError) as caught:
        store.add_plate("苏B12345", "case 1", "stolen", max_edits)
    assert f"invalid max_edits {max_edits!r}" in str(caught.value)
    assert "use 0, 1 or 2" in str(caught.value)


@pytest.mark.parametrize(("reason", "list_name", "expected"), [
    ("", "stolen", "reason is empty"),
    ("   ", "stolen", "reason is empty"),
    ("x" * 201, "stolen", "maximum 200"),
    ("line\nbreak", "stolen", "remove the line breaks"),
    ("case 1", "", "list name is empty"),
    ("case 1", None, "invalid list name None"),
])
def test_invalid_text_field_rejected(store, reason, list_name, expected):
    with pytest.raises(InvalidEntryError) as caught:
        store.add_plate("苏B12345", reason, list_name)
    assert expected in str(caught.value)


def test_rejected_add_changes_nothing(store):
    with pytest.raises(InvalidEntryError):
        store.add_plate("苏B#1", "case 1", "stolen")
    assert store.version() == 0
    assert store.audit_log() == []
    assert store.list_plates() == []


# --- store ----------------------------------------------------------------------------------------

def test_add_list_remove_round_trip(store):
    added = store.add_plate("苏B 12345", " case 1 ", "stolen", 1, actor="li")
    listed = store.list_plates()
    assert listed == [added]
    assert added.pattern == "苏B12345"
    assert added.reason == "case 1"
    assert added.max_edits == 1
    assert added.created_by == "li"
    assert added.created_at.endswith("+00:00")

    assert store.remove_plate(added.id, actor="li") == 1
    assert store.list_plates() == []


def test_remove_by_pattern_every_list(store):
    store.add_plate("苏B12345", "case 1", "stolen")
    store.add_plate("苏B12345", "case 2", "suspects")
    other_plate = store.add_plate("苏B99999", "case 3", "stolen")
    assert store.remove_plate("苏B·12345") == 2
    assert store.list_plates() == [other_plate]


def test_remove_unknown_changes_nothing(store):
    store.add_plate("苏B12345", "case 1", "stolen")
    assert store.remove_plate(99) == 0
    assert store.remove_plate("京A00000") == 0
    assert store.version() == 1
    assert len(store.audit_log()) == 1


def test_duplicate_on_same_list_rejected(store):
    first = store.add_plate("苏B12345", "case 1", "stolen")
    with pytest.raises(InvalidEntryError) as caught:
        store.add_plate("苏B-12345", "case 2", "stolen")
    assert f"already on list 'stolen' as entry {first.id}" in str(caught.value)


def test_same_pattern_other_list_allowed(store):
    store.add_plate("苏B12345", "case 1", "stolen")
    store.add_plate("苏B12345", "case 2", "suspects")
    assert len(store.list_plates()) == 2


def test_audit_rows_record_actor(store):
    entry = store.add_plate("苏B12345", "case 1", "stolen", actor="analyst-li")
    store.remove_plate(entry.id, actor="analyst-wang")
    removal, addition = store.audit_log()

    assert addition.action == "plate.add"
    assert addition.actor == "analyst-li"
    assert addition.detail["pattern"] == "苏B12345"
    assert addition.detail["reason"] == "case 1"
    assert addition.at.endswith("+00:00")

    assert removal.action == "plate.remove"
    assert removal.actor == "analyst-wang"
    assert removal.detail["removed"][0]["id"] == entry.id
    assert removal.detail["removed"][0]["list_name"] == "stolen"


def test_default_actor_is_os_user(store, monkeypatch):
    # getpass.getuser() reads LOGNAME first.
    monkeypatch.setenv("LOGNAME", "analyst-zhao")
    entry = store.add_plate("苏B12345", "case 1", "stolen")
    assert entry.created_by == "analyst-zhao"
    assert store.audit_log()[0].actor == "analyst-zhao"


def test_audit_limit_newest_first(store):
    for number in range(5):
        store.add_plate(f"苏B1234{number}", "case 1", "stolen")
    records = store.audit_log(limit=2)
    assert [record.detail["pattern"] for record in records] == ["苏B12344", "苏B12343"]


def test_version_counts_changes(store):
    entry = store.add_plate("苏B12345", "case 1", "stolen")
    store.add_plate("苏B99999", "case 1", "stolen")
    store.remove_plate(entry.id)
    assert store.version() == 3


def test_audit_log_is_append_only(store, db_path):
    store.add_plate("苏B12345", "case 1", "stolen")
    connection = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute("UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute("DELETE FROM audit_log")
    connection.close()


def test_database_uses_wal_mode(store, db_path):
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_store_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "watchlists.sqlite"
    WatchlistStore(path)
    assert path.is_file()


def test_default_path_uses_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_DATA_DIR", str(tmp_path))
    assert default_database_path() == tmp_path / "watchlists.sqlite"


def test_default_path_without_data_dir(monkeypatch):
    monkeypatch.delenv("EDGE_DATA_DIR", raising=False)
    assert default_database_path() == Path("data") / "watchlists.sqlite"


def test_not_a_database_raises_store_error(tmp_path):
    path = tmp_path / "watchlists.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(WatchlistStoreError) as caught:
        WatchlistStore(path)
    assert str(path) in str(caught.value)


# --- CSV import ----------------------------------------------------------------------------------

def test_csv_import_mixed_rows(store, tmp_path):
    csv_path = tmp_path / "plates.csv"
    csv_path.write_text(
        CSV_HEADER
        + "苏B 12345,case 1,stolen,0\n"          # line 2: loaded
        + "苏B#12345,case 2,stolen,0\n"          # line 3: invalid character
        + "京A00001,case 3,stolen,5\n"           # line 4: max_edits out of range
        + "京A00002,,stolen,0\n"                 # line 5: empty reason
        + '京A00003,"two\nlines",stolen,0\n'      # lines 6-7: line break in the reason
        + "京A00004,case 4\n"                    # line 8: too few fields
        + "\n"                                   # line 9: blank, skipped
        + "京A00005,case 5,suspects,one\n"       # line 10: max_edits not a number
        + "苏B12345,case 6,stolen,1\n"           # line 11: repeats line 2
        + "京A00006,case 7,suspects,\n",         # line 12: loaded with max_edits 0
        encoding="utf-8",
    )
    report = store.import_plates_csv(csv_path, actor="analyst-li")

    assert [row.line for row in report.rejected] == [3, 4, 5, 6, 8, 10, 11]
    messages = {row.line: row.message for row in report.rejected}
    assert "'#' is not allowed" in messages[3]
    assert "invalid max_edits 5" in messages[4]
    assert "reason is empty" in messages[5]
    assert "line breaks" in messages[6]
    assert "2 fields, expected 4" in messages[8]
    assert "invalid max_edits 'one'" in messages[10]
    assert "repeats line 2" in messages[11]

    assert [entry.pattern for entry in store.list_plates()] == ["苏B12345", "京A00006"]
    assert [entry.max_edits for entry in store.list_plates()] == [0, 0]

    audit = store.audit_log()
    assert len(audit) == 1
    assert audit[0].action == "plate.import"
    assert audit[0].actor == "analyst-li"
    assert audit[0].detail["loaded"] == 2
    assert audit[0].detail["rejected_lines"] == [3, 4, 5, 6, 8, 10, 11]
    assert store.version() == 1


def test_csv_pattern_already_stored(store, tmp_path):
    existing = store.add_plate("苏B12345", "case 1", "stolen")
    csv_path = tmp_path / "plates.csv"
    csv_path.write_text(CSV_HEADER + "苏B12345,case 2,stolen,0\n", encoding="utf-8")
    report = store.import_plates_csv(csv_path)
    assert f"already on list 'stolen' as entry {existing.id}" in report.rejected[0].message


def test_csv_with_bom_loads(store, tmp_path):
    csv_path = tmp_path / "plates.csv"
    csv_path.write_bytes(("pattern,reason,list_name\n苏B12345,案件 1,被盗车辆\n").encode("utf-8-sig"))
    report = store.import_plates_csv(csv_path)
    assert report.rejected == []
    assert [entry.list_name for entry in report.loaded] == ["被盗车辆"]


def test_csv_invalid_header_rejected(store, tmp_path):
    csv_path = tmp_path / "plates.csv"
    csv_path.write_text("pattern,reason,list,max_edit\n苏B12345,case 1,stolen,0\n", encoding="utf-8")
    with pytest.raises(InvalidEntryError) as caught:
        store.import_plates_csv(csv_path)
    assert "missing list_name" in str(caught.value)
    assert "unknown 'list', 'max_edit'" in str(caught.value)


def test_csv_not_utf8_rejected(store, tmp_path):
    csv_path = tmp_path / "plates.csv"
    csv_path.write_bytes((CSV_HEADER + "苏B12345,案件,被盗车辆,0\n").encode("gbk"))
    with pytest.raises(InvalidEntryError) as caught:
        store.import_plates_csv(csv_path)
    assert "is not UTF-8" in str(caught.value)
    assert store.list_plates() == []


def test_csv_all_rejected_no_audit(store, tmp_path):
    csv_path = tmp_path / "plates.csv"
    csv_path.write_text(CSV_HEADER + "苏B#1,case 1,stolen,0\n", encoding="utf-8")
    report = store.import_plates_csv(csv_path)
    assert len(report.rejected) == 1
    assert store.audit_log() == []
    assert store.version() == 0


def test_csv_missing_file_rejected(store, tmp_path):
    with pytest.raises(InvalidEntryError, match="cannot read CSV file"):
        store.import_plates_csv(tmp_path / "missing.csv")


# --- matching --------------------------------------------------------------------------------------

MATCH_CASES = [
    # (pattern, max_edits, plate text, expected distance or None for no match)
    ("苏B12345", 0, "苏B12345", 0),
    ("苏B12345", 0, "苏B12346", None),
    ("苏B*123", 0, "苏BA0123", 0),
    ("苏B*123", 0, "苏B123", 0),
    ("苏B*123", 0, "苏B1234", None),
    ("苏B*123", 1, "苏BA0128", 1),
    ("苏B?2345", 0, "苏BX2345", 0),
    ("苏B?2345", 0, "苏B2345", None),
    ("苏B?2345", 0, "苏BXY2345", None),
    ("苏B12345", 1, "苏B12845", 1),
    ("苏B12345", 1, "苏B18845", None),
    ("苏B12345", 2, "苏B18845", 2),
    ("苏B12345", 1, "苏B123456", 1),
    # A green 8-character new-energy plate read with one character missing.
    ("苏AD12345", 1, "苏AD1235", 1),
    ("苏AD12345", 0, "苏AD1235", None),
    ("京*A*8", 0, "京N1A2B8", 0),
    ("京*A*8", 0, "京A8", 0),
    ("京*A*8", 0, "京N12B8", None),
    ("*12*34*", 0, "苏B91234", 0),
    ("*12*34*", 0, "苏B91243", None),
    ("*12*34*", 1, "苏B91243", 1),
    ("?B*5", 0, "苏B12345", 0),
]


@pytest.mark.parametrize(("pattern", "max_edits", "plate", "expected"), MATCH_CASES)
def test_pattern_match_table(pattern, max_edits, plate, expected):
    matches = PlateWatchlist([make_entry(1, pattern, max_edits)]).match(plate)
    assert [match.distance for match in matches] == ([] if expected is None else [expected])


def test_match_best_first():
    watchlist = PlateWatchlist([
        make_entry(1, "苏B12399", 2),
        make_entry(2, "苏B12349", 1),
        make_entry(3, "苏B12345", 0),
        make_entry(4, "苏B*", 0),
    ])
    matches = watchlist.match("苏B12345")
    assert [(match.entry.id, match.distance) for match in matches] == [(3, 0), (4, 0), (2, 1), (1, 2)]


def test_exact_pattern_on_two_lists():
    watchlist = PlateWatchlist([make_entry(1, "苏B12345"), make_entry(2, "苏B12345", list_name="suspects")])
    assert [match.entry.id for match in watchlist.match("苏B12345")] == [1, 2]


def test_match_normalises_plate_text():
    watchlist = PlateWatchlist([make_entry(1, "苏B12345")])
    assert len(watchlist.match("苏b·12345")) == 1
    assert watchlist.match("") == []


def reference_distance(pattern: str, text: str) -> int:
    """Compute the wildcard edit distance by recursion over suffixes, independently of the DP rows."""

    @functools.lru_cache(maxsize=None)
    def distance(i: int, j: int) -> int:
        if i == len(pattern):
            return len(text) - j
        if pattern[i] == "*":
            options = [distance(i + 1, j)]
            if j < len(text):
                options.append(distance(i, j + 1))
            return min(options)
        options = [distance(i + 1, j) + 1]
        if j < len(text):
            options.append(distance(i, j + 1) + 1)
            options.append(distance(i + 1, j + 1) + (0 if pattern[i] in ("?", text[j]) else 1))
        return min(options)

    return distance(0, 0)


def random_pairs(count: int) -> list[tuple[str, str]]:
    rng = random.Random(7)
    pairs = []
    for _ in range(count):
        pattern = "".join(rng.choice("苏AB12**?") for _ in range(rng.randint(1, 7)))
        text = "".join(rng.choice("苏AB12") for _ in range(rng.randint(0, 9)))
        pairs.append((pattern, text))
    return pairs


def test_distance_agrees_with_reference():
    for pattern, text in random_pairs(3000):
        expected = reference_distance(pattern, text)
        for limit in range(3):
            assert pattern_distance(pattern, text, limit) == (expected if expected <= limit else None), (
                pattern, text, limit)


def test_watchlist_agrees_with_brute_force():
    # The length and piece checks in PlateWatchlist.match must never drop a real match.
    rng = random.Random(11)
    entries = []
    for entry_id, (pattern, _) in enumerate(random_pairs(600), start=1):
        pattern = normalise_pattern(pattern)
        plain = sum(1 for c in pattern if c not in "*?")
        if plain == 0:
            continue
        max_edits = rng.randint(0, min(2, plain - 1))
        entries.append(PlateEntry(entry_id, pattern, max_edits, "r", "l", "t", "a"))
    watchlist = PlateWatchlist(entries)
    for _, text in random_pairs(300):
        expected = [
            (entry.id, distance) for entry in entries
            if (distance := pattern_distance(entry.pattern, text, entry.max_edits)) is not None
        ]
        found = [(match.entry.id, match.distance) for match in watchlist.match(text)]
        assert sorted(found) == sorted(expected), text


def test_matching_10k_entries_fast():
    rng = random.Random(3)
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    entries = []
    for entry_id in range(10_000):
        pattern = "苏" + "".join(rng.choice(letters) for _ in range(6))
        if entry_id % 3 == 0:
            pattern = pattern[:3] + "*" + pattern[-2:]
        entries.append(PlateEntry(entry_id, pattern, entry_id % 3, "r", "l", "t", "a"))
    watchlist = PlateWatchlist(entries)
    plates = ["苏" + "".join(rng.choice(letters) for _ in range(6)) for _ in range(20)]
    started = time.perf_counter()
    for plate in plates:
        watchlist.match(plate)
    per_plate_s = (time.perf_counter() - started) / len(plates)
    # This took about 5 ms per plate on one Intel Xeon server core. The bound leaves a wide margin for slower machines.
    assert per_plate_s < 0.1


# --- reloader ------------------------------------------------------------------------------------

def test_reloader_sees_cli_change(store, db_path):
    reloader = PlateWatchlistReloader(store, poll_interval_s=0)
    assert reloader.current().match("苏B12345") == []

    result = run_cli("plates", "add", "苏B12345", "--reason", "case 1", "--list", "stolen", "--db", str(db_path))
    assert result.returncode == 0, result.stderr

    assert reloader.refresh_if_changed() is True
    assert [match.entry.pattern for match in reloader.current().match("苏B12345")] == ["苏B12345"]
    assert reloader.version == 1


def test_reloader_unchanged_returns_false(store):
    store.add_plate("苏B12345", "case 1", "stolen")
    reloader = PlateWatchlistReloader(store, poll_interval_s=0)
    watchlist = reloader.current()
    assert reloader.refresh_if_changed() is False
    assert reloader.current() is watchlist


def test_reloader_waits_poll_interval(store):
    now = [100.0]
    reloader = PlateWatchlistReloader(store, poll_interval_s=5, clock=lambda: now[0])
    store.add_plate("苏B12345", "case 1", "stolen")
    now[0] = 104.0
    assert reloader.refresh_if_changed() is False
    now[0] = 105.0
    assert reloader.refresh_if_changed() is True


def test_reloader_keeps_list_on_error(store, db_path, caplog):
    store.add_plate("苏B12345", "case 1", "stolen")
    reloader = PlateWatchlistReloader(store, poll_interval_s=0)
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_path.write_bytes(b"this is not a database" * 100)

    with caplog.at_level(logging.WARNING, logger="edge.watchlist.plates"):
        assert reloader.refresh_if_changed() is False
    assert len(reloader.current().match("苏B12345")) == 1
    assert "plate watchlist not reloaded" in caplog.text


# --- concurrency -----------------------------------------------------------------------------------

WRITER_SCRIPT = """
import sys
from edge.watchlist.store import WatchlistStore

store = WatchlistStore(sys.argv[1])
for number in range(int(sys.argv[3])):
    store.add_plate(f"{sys.argv[2]}{number:05d}", "load test", "concurrency", actor="writer")
"""


def test_concurrent_reader_and_writers(store, db_path):
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(db_path), prefix, "100"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for prefix in ("苏A", "苏B")
    ]
    reads = 0
    # Any "database is locked" error in these reads fails the test.
    while any(writer.poll() is None for writer in writers):
        store.version()
        store.load_snapshot()
        reads += 1
    errors = [writer.communicate()[1] for writer in writers]

    assert [writer.returncode for writer in writers] == [0, 0], errors
    assert reads > 0
    assert len(store.list_plates()) == 200
    assert store.version() == 200


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_round_trip(db_path):
    db = ["--db", str(db_path)]
    added = run_cli("plates", "add", "苏B·12345", "--reason", "case 1", "--list", "stolen", "--max-edits", "1", *db,
                    "--actor", "analyst-li")
    assert added.returncode == 0, added.stderr
    assert "added entry 1: 苏B12345" in added.stdout

    listed = run_cli("plates", "list", *db)
    assert "苏B12345" in listed.stdout
    assert "analyst-li" in listed.stdout
    assert "case 1" in listed.stdout

    as_json = json.loads(run_cli("plates", "list", "--json", *db).stdout)
    assert as_json[0]["pattern"] == "苏B12345"
    assert as_json[0]["max_edits"] == 1

    removed = run_cli("plates", "remove", "1", *db, "--actor", "analyst-li")
    assert removed.returncode == 0, removed.stderr
    assert "no watchlist entries" in run_cli("plates", "list", *db).stdout


def test_cli_invalid_pattern_exit_1(db_path):
    result = run_cli("plates", "add", "苏B#123", "--reason", "case 1", "--list", "stolen", "--db", str(db_path))
    assert result.returncode == 1
    assert "invalid plate pattern '苏B#123'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_invalid_max_edits_exit_1(db_path):
    result = run_cli("plates", "add", "苏B12345", "--reason", "r", "--list", "l", "--max-edits", "3",
                     "--db", str(db_path))
    assert result.returncode == 1
    assert "invalid max_edits 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_remove_unknown_exit_1(db_path):
    result = run_cli("plates", "remove", "42", "--db", str(db_path))
    assert result.returncode == 1
    assert "no watchlist entry with id 42" in result.stderr


def test_cli_import_reports_lines(db_path, tmp_path):
    csv_path = tmp_path / "plates.csv"
    csv_path.write_text(CSV_HEADER + "苏B12345,case 1,stolen,0\n苏B#1,case 2,stolen,0\n", encoding="utf-8")
    result = run_cli("plates", "import", str(csv_path), "--db", str(db_path))
    assert result.returncode == 1
    assert f"{csv_path}:3: invalid plate pattern '苏B#1'" in result.stderr
    assert "loaded 1 entries" in result.stdout


def test_cli_audit_default_actor(db_path):
    env = cli_env(LOGNAME="analyst-zhao")
    run_cli("plates", "add", "苏B12345", "--reason", "case 1", "--list", "stolen", "--db", str(db_path), env=env)
    result = run_cli("audit", "--db", str(db_path), env=env)
    assert result.returncode == 0, result.stderr
    assert "analyst-zhao" in result.stdout
    assert "plate.add" in result.stdout

    record = json.loads(run_cli("audit", "--json", "--db", str(db_path)).stdout)
    assert record["detail"]["pattern"] == "苏B12345"


def test_cli_default_db_in_data_dir(tmp_path):
    data_dir = tmp_path / "data-dir"
    result = run_cli("plates", "add", "苏B12345", "--reason", "r", "--list", "l",
                     env=cli_env(EDGE_DATA_DIR=str(data_dir)))
    assert result.returncode == 0, result.stderr
    assert (data_dir / "watchlists.sqlite").is_file()


def test_cli_default_db_in_cwd(tmp_path):
    added = run_cli("plates", "add", "苏B12345", "--reason", "case 1", "--list", "stolen", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "data" / "watchlists.sqlite").is_file()
    listed = run_cli("plates", "list", cwd=tmp_path)
    assert "苏B12345" in listed.stdout


def test_cli_broken_database_exit_2(tmp_path):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    result = run_cli("plates", "list", "--db", str(path))
    assert result.returncode == 2
    assert f"watchlist database {path} failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_main_in_process(db_path, capsys):
    code = main(["watchlist", "plates", "add", "京A*88", "--reason", "r", "--list", "l", "--db", str(db_path)])
    assert code == 0
    assert "京A*88" in capsys.readouterr().out


def test_parser_sets_handler():
    import argparse

    parser = argparse.ArgumentParser(prog="edge")
    add_watchlist_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["watchlist", "audit", "--limit", "5"])
    assert args.handler is run_watchlist_command
    assert args.limit == 5


@pytest.mark.parametrize("command", [("plates", "list"), ("audit",), ("faces", "list")])
def test_listing_missing_database_creates_nothing(tmp_path, command):
    db = tmp_path / "typo" / "watchlists.sqlite"
    result = run_cli(*command, "--db", str(db))
    assert result.returncode == 2
    assert "not found" in result.stderr
    assert not db.parent.exists()


def test_foreign_sqlite_file_left_unchanged(tmp_path):
    other = tmp_path / "outbox.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE messages (sequence INTEGER PRIMARY KEY, body BLOB)")
    result = run_cli("plates", "list", "--db", str(other))
    assert result.returncode == 2
    assert "not a watchlist database" in result.stderr
    with sqlite3.connect(other) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["messages"]


def test_cli_remove_from_one_list(tmp_path):
    db = str(tmp_path / "watchlists.sqlite")
    for list_name in ("stolen", "missing"):
        assert run_cli("plates", "add", "苏B12345", "--reason", "case 1", "--list", list_name, "--db", db).returncode == 0
    assert run_cli("plates", "add", "苏B12346", "--reason", "case 2", "--list", "stolen", "--db", db).returncode == 0

    narrowed = run_cli("plates", "remove", "苏B12345", "--list", "stolen", "--db", db)
    assert narrowed.returncode == 0, narrowed.stderr
    assert "removed 1 entry" in narrowed.stdout
    whole = run_cli("plates", "remove", "--list", "stolen", "--db", db)
    assert "removed 1 entry" in whole.stdout

    remaining = WatchlistStore(db).list_plates()
    assert [(entry.pattern, entry.list_name) for entry in remaining] == [("苏B12345", "missing")]
    nothing = run_cli("plates", "remove", "--db", db)
    assert nothing.returncode == 1
    assert "--list NAME" in nothing.stderr


def test_audit_summary_of_bulk_remove_capped(store, db_path, capsys):
    """Removing a whole list of many entries prints one short DETAIL cell; `audit --json` keeps every entry."""
    for number in range(12):
        store.add_plate(f"苏B{10000 + number}", "case 1", "bulk", actor="li")
    assert store.remove_list("bulk", actor="li") == 12

    assert main(["watchlist", "audit", "--limit", "1", "--db", str(db_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2
    assert "entry 5 苏B10004 on 'bulk' and 7 more" in table[1]
    assert "苏B10005" not in table[1]

    assert main(["watchlist", "audit", "--limit", "1", "--json", "--db", str(db_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(record["detail"]["removed"]) == 12


def test_cli_success_lines_name_database(tmp_path):
    """add and import print the absolute database path, so a run from the wrong folder shows."""
    added = run_cli("plates", "add", "苏B12345", "--reason", "case 1", "--list", "stolen", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    database = tmp_path / "data" / "watchlists.sqlite"
    assert f"on list 'stolen' in {database}" in added.stdout

    csv_path = tmp_path / "plates.csv"
    csv_path.write_text(CSV_HEADER + "苏B12346,case 2,stolen,0\n", encoding="utf-8")
    imported = run_cli("plates", "import", "plates.csv", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert f"into {database}" in imported.stdout


def test_cli_new_database_notice(tmp_path):
    db = tmp_path / "new" / "watchlists.sqlite"
    first = run_cli("plates", "add", "苏B12345", "--reason", "case 1", "--list", "stolen", "--db", str(db))
    assert first.returncode == 0, first.stderr
    assert f"created a new watchlist database at {db}" in first.stderr
    assert "--db PATH" in first.stderr
    assert db.is_file()

    second = run_cli("plates", "add", "苏B12346", "--reason", "case 2", "--list", "stolen", "--db", str(db))
    assert second.returncode == 0, second.stderr
    assert "created a new" not in second.stderr


@pytest.mark.parametrize("command", [("plates", "add", "苏*", "--reason", "r", "--list", "l"),
                                     ("faces", "add", "", "photo.jpg", "--reason", "r", "--list", "l")])
def test_rejected_change_leaves_no_database(tmp_path, command):
    db = tmp_path / "watchlists.sqlite"

    result = run_cli(*command, "--db", str(db))

    assert result.returncode == 1
    assert "created a new" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [("plates", "list"), ("audit",), ("faces", "list")])
def test_read_only_commands_take_no_actor(db_path, command):
    WatchlistStore(db_path)
    result = run_cli(*command, "--db", str(db_path), "--actor", "li")
    assert result.returncode == 2
    assert "unrecognized arguments: --actor li" in result.stderr


def test_remove_help_has_description():
    result = run_cli("plates", "remove", "--help")
    assert result.returncode == 0
    assert "Stop watching an entry given by its id" in result.stdout
