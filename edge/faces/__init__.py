"""Faces: detect, align, embed, gate on quality, and match against an explicit watchlist gallery."""
