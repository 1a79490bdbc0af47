"""Peer servers: each runs inside its peer's own environment and imports only that peer."""
