"""Face watchlist: enrolled persons, their photos and embeddings, and matching a probe against them.

Only enrolled persons are stored. The embedding of a face seen by a camera is compared in memory and never
written anywhere by this module.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np

from edge.watchlist.plates import InvalidEntryError, WatchlistError
from edge.watchlist.store import WatchlistStore, resolve_actor, utc_now, validate_text

log = logging.getLogger(__name__)

# The best person must beat the second best by this much cosine similarity, so two look-alike entries
# never produce a hit for the weaker one.
DEFAULT_MARGIN = 0.05


class DuplicateFaceError(InvalidEntryError):
    """Error for a photo that shows the face of an enrolled person; the fields name that person."""

    def __init__(self, message: str, person_id: int, name: str, list_name: str):
        super().__init__(message)
        self.person_id = person_id
        self.name = name
        self.list_name = list_name


class DifferentFacesError(InvalidEntryError):
    """Error for enrolment photos that do not all show one person; the fields name the photos (from 1)."""

    def __init__(self, message: str, first_photo: int, second_photo: int, similarity: float, threshold: float):
        super().__init__(message)
        self.first_photo = first_photo
        self.second_photo = second_photo
        self.similarity = similarity
        self.threshold = threshold


@dataclass(frozen=True)
class FacePerson:
    """An enrolled person."""

    id: int
    name: str
    list_name: str
    reason: str
    created_at: str
    created_by: str
    photos: int


@dataclass(frozen=True)
class EnrolledPhoto:
    """A stored enrolment photo, for re-embedding."""

    id: int
    person_id: int
    jpeg: bytes


@dataclass(frozen=True)
class PhotoEmbedding:
    """The embedding of one enrolment photo for one model, without the photo."""

    photo_id: int
    person_id: int
    sha256: str  # of the stored JPEG
    vector: np.ndarray  # (dimension,) float32


@dataclass(frozen=True)
class FaceExport:
    """The persons and one model's embeddings, read in one transaction, for daemons that pull the watchlist."""

    version: int
    model_id: str
    persons: list[FacePerson]
    embeddings: list[PhotoEmbedding]
    photos_without_embedding: int
    model_ids: list[str]  # every model id with at least one stored embedding


@dataclass(frozen=True)
class FaceMatch:
    person: FacePerson
    similarity: float
    margin: float  # similarity minus the best similarity of any other person (1.0 with one person enrolled)


class FaceGallery:
    """Embeddings of every enrolled photo for one model; matching is one matrix product."""

    def __init__(self, model_id: str, persons: list[FacePerson], embeddings: np.ndarray, row_person: np.ndarray,
                 threshold: float, margin: float = DEFAULT_MARGIN):
        self.model_id = model_id
        self.persons = {person.id: person for person in persons}
        self.embeddings = embeddings.astype(np.float32)  # (rows, D), L2-normalised
        self.row_person = row_person.astype(np.int64)  # person id of each row
        self.threshold = threshold
        self.margin = margin

    def __len__(self) -> int:
        return len(self.persons)

    def match(self, probe: np.ndarray) -> FaceMatch | None:
        """Return the person whose best photo is most similar, if above the threshold and the margin."""
        if not len(self.embeddings):
            return None
        similarities = self.embeddings @ probe.astype(np.float32)
        best_by_person: dict[int, float] = {}
        for person_id, similarity in zip(self.row_person.tolist(), similarities.tolist()):
            best_by_person[person_id] = max(best_by_person.get(person_id, -1.0), similarity)
        ranked = sorted(best_by_person.items(), key=lambda item: item[1], reverse=True)
        person_id, best = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else best - 1.0
        if best < self.threshold or best - runner_up < self.margin:
            return None
        return FaceMatch(self.persons[person_id], float(best), float(best - runner_up))


class FaceWatchlist:
    """Face tables of a watchlist store."""

    def __init__(self, store: WatchlistStore):
        self.store = store

    def add_person(self, name: str, list_name: str, reason: str, photos: list[tuple[bytes, np.ndarray]],
                   model_id: str, actor: str | None = None, match_threshold: float | None = None) -> FacePerson:
        """Enrol a person from JPEG photos and their embeddings, all in one transaction.

        With `match_threshold`, a photo whose face matches an enrolled person at that similarity is rejected,
        and so are photos that do not all show one person (see reject_different_faces).
        """
        name = validate_text("name", name, "give the person's name")
        list_name = validate_text("list name", list_name, "give a list such as wanted or missing")
        reason = validate_text("reason", reason, "give a case number or why the person is enrolled")
        if not photos:
            raise InvalidEntryError("no usable photo; enrol a person with at least one photo that passes the gate")
        actor = resolve_actor(actor)
        created_at = utc_now()
        with self.store.transaction(write=True) as connection:
            existing = connection.execute("SELECT id FROM face_persons WHERE name = ? AND list_name = ?",
                                          (name, list_name)).fetchone()
            if existing:
                # Two entries for one person would only compete with each other for the match margin.
                raise InvalidEntryError(
                    f"'{name}' is already on list '{list_name}' as person {existing[0]}; remove person "
                    f"{existing[0]} and enrol again with all photos, or use another name",
                    "reject_name_taken", name=name, list_name=list_name, person_id=existing[0]
                )
            if match_threshold is not None:
                reject_different_faces([embedding for _, embedding in photos], match_threshold)
                self._reject_enrolled_face(connection, model_id, [embedding for _, embedding in photos],
                                           match_threshold)
            person_id = connection.execute(
                "INSERT INTO face_persons (name, list_name, reason, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                (name, list_name, reason, created_at, actor),
            ).lastrowid
            hashes = []
            for jpeg, embedding in photos:
                digest = hashlib.sha256(jpeg).hexdigest()
                hashes.append(digest)
                photo_id = connection.execute(
                    "INSERT INTO face_photos (person_id, photo, sha256, added_at) VALUES (?, ?, ?, ?)",
                    (person_id, jpeg, digest, created_at),
                ).lastrowid
                self._insert_embedding(connection, photo_id, model_id, embedding)
            # The audit row names the photos by hash and never contains an embedding.
            self.store.append_audit(connection, actor, "face.add", {
                "person_id": person_id, "name": name, "list_name": list_name, "reason": reason,
                "photo_sha256": hashes, "model_id": model_id,
            })
        return FacePerson(person_id, name, list_name, reason, created_at, actor, len(photos))

    def _reject_enrolled_face(self, connection, model_id: str, embeddings: list[np.ndarray], threshold: float) -> None:
        """Raise InvalidEntryError when a new photo shows a face that an enrolled person's photo matches.

        The same face under two persons would make a hit name either of them, and because a match needs a
        margin over the runner-up, it usually makes the face match neither.
        """
        stored = self._embeddings(connection, model_id)
        if not stored:
            return
        matrix = np.stack([row.vector for row in stored])
        for number, embedding in enumerate(embeddings, start=1):
            similarities = matrix @ np.asarray(embedding, dtype=np.float32)
            best = int(np.argmax(similarities))
            if similarities[best] >= threshold:
                person_id = stored[best].person_id
                name, list_name = connection.execute(
                    "SELECT name, list_name FROM face_persons WHERE id = ?", (person_id,)).fetchone()
                raise DuplicateFaceError(
                    f"photo {number} matches person {person_id} '{name}' on list '{list_name}' (similarity "
                    f"{similarities[best]:.2f}, match threshold {threshold:.2f}); one face under two persons would "
                    f"match neither, so add the photos to person {person_id} (remove and enrol again with all "
                    "photos) or check that the photo shows the right person", person_id, name, list_name)

    @staticmethod
    def _insert_embedding(connection, photo_id: int, model_id: str, embedding: np.ndarray) -> None:
        vector = np.asarray(embedding, dtype=np.float32)
        connection.execute(
            "INSERT OR REPLACE INTO face_embeddings (photo_id, model_id, dimension, vector) VALUES (?, ?, ?, ?)",
            (photo_id, model_id, int(vector.shape[0]), vector.tobytes()),
        )

    def remove_person(self, person_id: int, actor: str | None = None) -> int:
        actor = resolve_actor(actor)
        with self.store.transaction(write=True) as connection:
            row = connection.execute("SELECT name, list_name FROM face_persons WHERE id = ?", (person_id,)).fetchone()
            if row is None:
                return 0
            photo_ids = [r[0] for r in connection.execute("SELECT id FROM face_photos WHERE person_id = ?",
                                                          (person_id,))]
            connection.executemany("DELETE FROM face_embeddings WHERE photo_id = ?", [(p,) for p in photo_ids])
            connection.execute("DELETE FROM face_photos WHERE person_id = ?", (person_id,))
            connection.execute("DELETE FROM face_persons WHERE id = ?", (person_id,))
            self.store.append_audit(connection, actor, "face.remove",
                                     {"person_id": person_id, "name": row[0], "list_name": row[1]})
        return 1

    def list_persons(self) -> list[FacePerson]:
        with self.store.transaction(write=False) as connection:
            return self._persons(connection)

    @staticmethod
    def _persons(connection, person_id: int | None = None) -> list[FacePerson]:
        """Return every enrolled person, or only the one with `person_id`."""
        where, parameters = ("WHERE p.id = ? ", (person_id,)) if person_id is not None else ("", ())
        rows = connection.execute(
            "SELECT p.id, p.name, p.list_name, p.reason, p.created_at, p.created_by, COUNT(f.id) "
            f"FROM face_persons p LEFT JOIN face_photos f ON f.person_id = p.id {where}GROUP BY p.id ORDER BY p.id",
            parameters,
        ).fetchall()
        return [FacePerson(*row) for row in rows]

    def photos(self) -> list[EnrolledPhoto]:
        with self.store.transaction(write=False) as connection:
            rows = connection.execute("SELECT id, person_id, photo FROM face_photos ORDER BY id").fetchall()
        return [EnrolledPhoto(row[0], row[1], bytes(row[2])) for row in rows]

    def photo(self, photo_id: int) -> EnrolledPhoto | None:
        with self.store.transaction(write=False) as connection:
            row = connection.execute("SELECT id, person_id, photo FROM face_photos WHERE id = ?",
                                     (photo_id,)).fetchone()
        return EnrolledPhoto(row[0], row[1], bytes(row[2])) if row else None

    def person(self, person_id: int) -> FacePerson | None:
        with self.store.transaction(write=False) as connection:
            found = self._persons(connection, person_id)
        return found[0] if found else None

    def photo_ids(self, person_id: int | None = None) -> dict[int, list[int]]:
        """Return the photo ids of each enrolled person, keyed by person id, in the order they were added.

        With `person_id`, only that person's photos are read.
        """
        where, parameters = ("WHERE person_id = ? ", (person_id,)) if person_id is not None else ("", ())
        with self.store.transaction(write=False) as connection:
            rows = connection.execute(f"SELECT person_id, id FROM face_photos {where}ORDER BY id", parameters).fetchall()
        ids: dict[int, list[int]] = {}
        for person_id, photo_id in rows:
            ids.setdefault(person_id, []).append(photo_id)
        return ids

    def store_embeddings(self, model_id: str, embeddings: dict[int, np.ndarray], actor: str | None = None) -> None:
        """Write embeddings of one model for the given photo ids, as one audited change."""
        actor = resolve_actor(actor)
        with self.store.transaction(write=True) as connection:
            for photo_id, embedding in embeddings.items():
                self._insert_embedding(connection, photo_id, model_id, embedding)
            self.store.append_audit(connection, actor, "face.reembed",
                                     {"model_id": model_id, "photos": len(embeddings)})

    def export_embeddings(self, model_id: str) -> FaceExport:
        """Return every person and the embeddings of `model_id`, with the store version they belong to."""
        with self.store.transaction(write=False) as connection:
            version = connection.execute("SELECT version FROM watchlist_version WHERE id = 1").fetchone()[0]
            persons = self._persons(connection)
            embeddings = self._embeddings(connection, model_id)
            total_photos = connection.execute("SELECT COUNT(*) FROM face_photos").fetchone()[0]
            model_ids = [row[0] for row in connection.execute(
                "SELECT DISTINCT model_id FROM face_embeddings ORDER BY model_id")]
        return FaceExport(version, model_id, persons, embeddings, total_photos - len(embeddings), model_ids)

    @staticmethod
    def _embeddings(connection, model_id: str) -> list[PhotoEmbedding]:
        rows = connection.execute(
            "SELECT f.id, f.person_id, f.sha256, e.dimension, e.vector FROM face_photos f JOIN face_embeddings e "
            "ON e.photo_id = f.id AND e.model_id = ? ORDER BY f.id", (model_id,)
        ).fetchall()
        return [PhotoEmbedding(row[0], row[1], row[2], np.frombuffer(row[4], dtype=np.float32, count=row[3]))
                for row in rows]

    def replace_all(self, connection, persons: list[FacePerson], embeddings: list[PhotoEmbedding],
                    model_id: str) -> bool:
        """Replace every person, photo and embedding inside the caller's write transaction, keeping the ids.

        The photos are stored empty, because a daemon's copy needs only the embeddings of its own model.
        Return False and write nothing when the stored persons and embeddings already equal the new ones.
        The caller appends the audit row.
        """
        def person_key(person: FacePerson) -> tuple:
            return person.id, person.name, person.list_name, person.reason

        def embedding_key(embedding: PhotoEmbedding) -> tuple:
            return (embedding.photo_id, embedding.person_id, embedding.sha256,
                    np.asarray(embedding.vector, dtype=np.float32).tobytes())

        stored_photos = connection.execute("SELECT COUNT(*) FROM face_photos").fetchone()[0]
        stored_persons = [person_key(person) for person in self._persons(connection)]
        stored_embeddings = [embedding_key(embedding) for embedding in self._embeddings(connection, model_id)]
        # Both lists are read ordered by their unique ids, so the sorted new keys line up with them.
        unchanged = (
            stored_persons == sorted(map(person_key, persons))
            and stored_embeddings == sorted(map(embedding_key, embeddings))
            and stored_photos == len(embeddings)
        )
        if unchanged:
            return False
        connection.execute("DELETE FROM face_embeddings")
        connection.execute("DELETE FROM face_photos")
        connection.execute("DELETE FROM face_persons")
        connection.executemany(
            "INSERT INTO face_persons (id, name, list_name, reason, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
            [(p.id, p.name, p.list_name, p.reason, p.created_at, p.created_by) for p in persons],
        )
        added_at = utc_now()
        for embedding in embeddings:
            connection.execute(
                "INSERT INTO face_photos (id, person_id, photo, sha256, added_at) VALUES (?, ?, ?, ?, ?)",
                (embedding.photo_id, embedding.person_id, b"", embedding.sha256, added_at),
            )
            self._insert_embedding(connection, embedding.photo_id, model_id, embedding.vector)
        return True

    def load_gallery(self, model_id: str, threshold: float, margin: float = DEFAULT_MARGIN
                     ) -> tuple[int, FaceGallery, int]:
        """Return (store version, gallery, photos without an embedding of `model_id`)."""
        with self.store.transaction(write=False) as connection:
            version = connection.execute("SELECT version FROM watchlist_version WHERE id = 1").fetchone()[0]
            persons = self._persons(connection)
            rows = connection.execute(
                "SELECT f.person_id, e.dimension, e.vector FROM face_photos f JOIN face_embeddings e "
                "ON e.photo_id = f.id AND e.model_id = ? ORDER BY f.id", (model_id,)
            ).fetchall()
            total_photos = connection.execute("SELECT COUNT(*) FROM face_photos").fetchone()[0]
        vectors = [np.frombuffer(row[2], dtype=np.float32, count=row[1]) for row in rows]
        dimension = vectors[0].shape[0] if vectors else 0
        embeddings = np.stack(vectors) if vectors else np.zeros((0, dimension), dtype=np.float32)
        row_person = np.array([row[0] for row in rows], dtype=np.int64)
        with_embeddings = {row[0] for row in rows}
        persons = [p for p in persons if p.id in with_embeddings]
        gallery = FaceGallery(model_id, persons, embeddings, row_person, threshold, margin)
        return version, gallery, total_photos - len(rows)


class FaceGalleryReloader:
    """The current FaceGallery of a store, reloaded when the store's version changes (checked at most every
    `poll_interval_s`)."""

    def __init__(self, watchlist: FaceWatchlist, model_id: str, threshold: float, margin: float = DEFAULT_MARGIN,
                 poll_interval_s: float = 2.0):
        self.watchlist = watchlist
        self.model_id = model_id
        self.threshold = threshold
        self.margin = margin
        self.poll_interval_s = poll_interval_s
        self.version, self._gallery, missing = watchlist.load_gallery(model_id, threshold, margin)
        self._next_check = time.monotonic() + poll_interval_s
        self._log_loaded(missing)

    def _log_loaded(self, missing: int) -> None:
        log.info("face gallery loaded: %d persons for model %s, version %d", len(self._gallery), self.model_id,
                 self.version)
        if missing:
            log.warning("face gallery: %d enrolment photos have no embedding from %s; run `edge watchlist faces "
                        "reembed` so they can match", missing, self.model_id)

    def current(self) -> FaceGallery:
        return self._gallery

    def refresh_if_changed(self) -> bool:
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.poll_interval_s
        try:
            if self.watchlist.store.version() == self.version:
                return False
            self.version, self._gallery, missing = self.watchlist.load_gallery(self.model_id, self.threshold,
                                                                               self.margin)
        except WatchlistError as error:
            log.warning("face gallery not reloaded, keeping version %d: %s", self.version, error)
            return False
        self._log_loaded(missing)
        return True


def reject_different_faces(embeddings: list[np.ndarray], threshold: float) -> None:
    """Raise DifferentFacesError unless the photos' faces form one person at `threshold` similarity.

    Photos form one person when every photo is linked to the first by a chain of pairs at or above
    the threshold, so a side view that matches only a front view still counts. Two people under one
    name would make every hit for the second name the first.
    """
    if len(embeddings) < 2:
        return
    unit = np.stack([embedding / np.linalg.norm(embedding) for embedding in embeddings])
    similarity = unit @ unit.T
    linked = {0}
    frontier = [0]
    while frontier:
        current = frontier.pop()
        for other in np.flatnonzero(similarity[current] >= threshold):
            if int(other) not in linked:
                linked.add(int(other))
                frontier.append(int(other))
    apart = [index for index in range(len(embeddings)) if index not in linked]
    if not apart:
        return
    second = apart[0]
    first = max(linked, key=lambda index: similarity[index, second])
    best = float(similarity[first, second])
    raise DifferentFacesError(
        f"photos {first + 1} and {second + 1} show different people: their faces match at {best:.2f}, below "
        f"the match threshold {threshold:.2f}; enrol each person on their own, or leave out the unclear photo",
        first + 1, second + 1, best, threshold)

