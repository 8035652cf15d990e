"""The ZeroMQ feed: a PUB socket with sequence-numbered multipart messages, and a subscriber for tools."""
