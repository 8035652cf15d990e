"""Event builders: turn per-frame results into feed messages, one per track for the plate and face topics."""
