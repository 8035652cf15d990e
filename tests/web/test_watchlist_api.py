"""Watchlist API for daemons: token check, ETag and 304, the plate and face bodies, and the API switched off."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from aiohttp import web

from edge.watchlist.faces import FaceWatchlist
from edge.watchlist.store import WatchlistStore
from edge.web.watchlist_api import FACES_PATH, PLATES_PATH, add_watchlist_api_routes

TOKEN = "daemon-token-0123456789abcdef-0123456789"
OTHER_TOKEN = "second-token-0123456789abcdef-012345678"
MODEL_ID = "mobilefacenet_128d:0123456789ab"


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def store(tmp_path) -> WatchlistStore:
    store = WatchlistStore(tmp_path / "watchlists.sqlite")
    store.add_plate("苏B*123", "case 2026-118", "stolen-vehicles", actor="admin")
    store.add_plate("苏ED51712", "missing person's car", "missing", max_edits=1, actor="admin")
    FaceWatchlist(store).add_person("张三", "wanted", "case 2026-207",
                                    [(b"jpeg-1", unit(1, 0, 0)), (b"jpeg-2", unit(0, 1, 0))], MODEL_ID, actor="admin")
    return store


async def client_for(aiohttp_client, store: WatchlistStore, tokens: list[str]):
    app = web.Application()
    add_watchlist_api_routes(app, store, tokens)
    return await aiohttp_client(app)


@pytest.mark.parametrize("headers", [
    {},
    bearer("wrong-token-0123456789abcdef-0123456789"),
    bearer(TOKEN[:-1]),
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
], ids=["no header", "wrong token", "token prefix", "basic scheme", "no scheme"])
@pytest.mark.parametrize("path", [PLATES_PATH, f"{FACES_PATH}?model={MODEL_ID}"], ids=["plates", "faces"])
async def test_bad_token_rejected(aiohttp_client, store, headers, path):
    client = await client_for(aiohttp_client, store, [TOKEN])
    response = await client.get(path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = await response.json()
    assert "Authorization: Bearer TOKEN" in body["error"]
    assert TOKEN not in body["error"]


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
async def test_every_configured_token_accepted(aiohttp_client, store, token):
    client = await client_for(aiohttp_client, store, [TOKEN, OTHER_TOKEN])
    response = await client.get(PLATES_PATH, headers=bearer(token))
    assert response.status == 200


async def test_plates_body(aiohttp_client, store):
    client = await client_for(aiohttp_client, store, [TOKEN])
    response = await client.get(PLATES_PATH, headers=bearer(TOKEN))
    assert response.status == 200
    body = await response.json()
    assert body["version"] == store.version()
    assert body["plates"] == [
        {"id": 1, "pattern": "苏B*123", "list_name": "stolen-vehicles", "reason": "case 2026-118", "max_edits": 0},
        {"id": 2, "pattern": "苏ED51712", "list_name": "missing", "reason": "missing person's car", "max_edits": 1},
    ]


async def test_faces_body_has_embeddings_not_photos(aiohttp_client, store):
    client = await client_for(aiohttp_client, store, [TOKEN])
    response = await client.get(FACES_PATH, params={"model": MODEL_ID}, headers=bearer(TOKEN))
    assert response.status == 200
    text = await response.text()
    body = await response.json()
    assert body["version"] == store.version()
    assert body["model_id"] == MODEL_ID
    assert body["photos_without_embedding"] == 0
    [person] = body["persons"]
    assert (person["name"], person["list_name"], person["reason"]) == ("张三", "wanted", "case 2026-207")
    assert [photo["dimension"] for photo in person["photos"]] == [3, 3]
    first = np.frombuffer(base64.b64decode(person["photos"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(first, unit(1, 0, 0))
    assert "photo" not in person["photos"][0]
    assert base64.b64encode(b"jpeg-1").decode() not in text


async def test_etag_then_not_modified(aiohttp_client, store):
    client = await client_for(aiohttp_client, store, [TOKEN])
    for path in (PLATES_PATH, f"{FACES_PATH}?model={MODEL_ID}"):
        first = await client.get(path, headers=bearer(TOKEN))
        etag = first.headers["ETag"]
        assert etag.startswith('"')
        assert not etag.startswith("W/")

        again = await client.get(path, headers={**bearer(TOKEN), "If-None-Match": etag})
        assert again.status == 304
        assert await again.read() == b""
        assert again.headers["ETag"] == etag


async def test_not_modified_still_needs_token(aiohttp_client, store):
    client = await client_for(aiohttp_client, store, [TOKEN])
    etag = (await client.get(PLATES_PATH, headers=bearer(TOKEN))).headers["ETag"]
    response = await client.get(PLATES_PATH, headers={"If-None-Match": etag})
    assert response.status == 401


async def test_version_change_gives_new_etag(aiohttp_client, store):
    client = await client_for(aiohttp_client, store, [TOKEN])
    plates_etag = (await client.get(PLATES_PATH, headers=bearer(TOKEN))).headers["ETag"]
    faces_path = f"{FACES_PATH}?model={MODEL_ID}"
    faces_etag = (await client.get(faces_path, headers=bearer(TOKEN))).headers["ETag"]

    store.add_plate("京A12345", "case 9", "stolen-vehicles", actor="admin")

    plates = await client.get(PLATES_PATH, headers={**bearer(TOKEN), "If-None-Match": plates_etag})
    assert plates.status == 200
    assert plates.headers["ETag"] != plates_etag
    assert len((await plates.json())["plates"]) == 3
    faces = await client.get(faces_path, headers={**bearer(TOKEN), "If-None-Match": faces_etag})
    assert faces.status == 200
    assert faces.headers["ETag"] != faces_etag


async def test_faces_etag_differs_per_model(aiohttp_client, store):
    FaceWatchlist(store).store_embeddings("other-model:abcdef012345", {1: unit(0, 0, 1)}, actor="admin")
    client = await client_for(aiohttp_client, store, [TOKEN])
    first = await client.get(FACES_PATH, params={"model": MODEL_ID}, headers=bearer(TOKEN))
    other = await client.get(FACES_PATH, params={"model": "other-model:abcdef012345"}, headers=bearer(TOKEN))
    assert first.headers["ETag"] != other.headers["ETag"]
    assert (await other.json())["photos_without_embedding"] == 1


async def test_faces_unknown_model_conflict(aiohttp_client, store):
    client = await client_for(aiohttp_client, store, [TOKEN])
    response = await client.get(FACES_PATH, params={"model": "arcface_512d:ffffffffffff"}, headers=bearer(TOKEN))
    assert response.status == 409
    message = (await response.json())["error"]
    assert "'arcface_512d:ffffffffffff'" in message
    assert MODEL_ID in message


async def test_faces_empty_store_not_conflict(aiohttp_client, tmp_path):
    """A new install with no enrolled persons serves an empty list, so daemons can start before enrolment."""
    client = await client_for(aiohttp_client, WatchlistStore(tmp_path / "empty.sqlite"), [TOKEN])
    response = await client.get(FACES_PATH, params={"model": MODEL_ID}, headers=bearer(TOKEN))
    assert response.status == 200
    assert (await response.json())["persons"] == []


@pytest.mark.parametrize("query", ["", "?model=", f"?model={'x' * 201}"], ids=["missing", "empty", "too long"])
async def test_faces_model_parameter_required(aiohttp_client, store, query):
    client = await client_for(aiohttp_client, store, [TOKEN])
    response = await client.get(FACES_PATH + query, headers=bearer(TOKEN))
    assert response.status == 400
    assert "'model'" in (await response.json())["error"]


@pytest.mark.parametrize("path", [PLATES_PATH, f"{FACES_PATH}?model={MODEL_ID}"], ids=["plates", "faces"])
async def test_api_off_without_tokens(aiohttp_client, store, path):
    client = await client_for(aiohttp_client, store, [])
    response = await client.get(path, headers=bearer(TOKEN))
    assert response.status == 404
    message = (await response.json())["error"]
    assert "off" in message
    assert "api_tokens" in message


async def test_rejection_log_has_no_token(aiohttp_client, store, caplog):
    client = await client_for(aiohttp_client, store, [TOKEN])
    wrong = "wrong-token-0123456789abcdef-0123456789"
    with caplog.at_level("DEBUG"):
        await client.get(PLATES_PATH, headers=bearer(wrong))
        await client.get(PLATES_PATH, headers=bearer(TOKEN))
    assert "rejected" in caplog.text
    assert wrong not in caplog.text
    assert TOKEN not in caplog.text
