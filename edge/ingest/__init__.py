"""Camera ingest: one PyAV reader thread per camera feeding a latest-frame slot."""
