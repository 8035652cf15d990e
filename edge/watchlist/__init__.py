"""Plate watchlist: investigators' plate patterns in SQLite, with an audit log, and matching of OCR plate text."""

from edge.watchlist.plates import (
    InvalidEntryError,
    PlateEntry,
    PlateMatch,
    PlateWatchlist,
    PlateWatchlistReloader,
    WatchlistError,
    normalise_pattern,
    normalise_plate_text,
    pattern_distance,
)
from edge.watchlist.store import (
    AuditRecord,
    ImportReport,
    RejectedRow,
    WatchlistStore,
    WatchlistStoreError,
    default_database_path,
)

__all__ = [
    "AuditRecord",
    "ImportReport",
    "InvalidEntryError",
    "PlateEntry",
    "PlateMatch",
    "PlateWatchlist",
    "PlateWatchlistReloader",
    "RejectedRow",
    "WatchlistError",
    "WatchlistStore",
    "WatchlistStoreError",
    "default_database_path",
    "normalise_pattern",
    "normalise_plate_text",
    "pattern_distance",
]
