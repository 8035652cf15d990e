"""Typed aiohttp application keys for the objects the app factory creates and the routes share."""

from __future__ import annotations

from aiohttp import web

from edge.config.web import WebConfig
from edge.watchlist.store import WatchlistStore
from edge.web.intake import FeedIntake
from edge.web.live import LiveHub
from edge.web.store import HitStore

CONFIG_KEY = web.AppKey("config", WebConfig)
HIT_STORE_KEY = web.AppKey("hit_store", HitStore)
LIVE_HUB_KEY = web.AppKey("live_hub", LiveHub)
INTAKE_KEY = web.AppKey("intake", FeedIntake)
WATCHLIST_KEY = web.AppKey("watchlist", WatchlistStore)
