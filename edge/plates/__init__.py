"""Licence plates: detect, rectify, read, validate and vote per vehicle track."""
