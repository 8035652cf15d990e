"""Event builders: turn per-frame results into feed messages, one per track where the topic asks for it."""
