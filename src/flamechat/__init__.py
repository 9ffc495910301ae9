"""Flame Chat: a peer-to-peer, end-to-end encrypted chat for one organisation."""

__version__ = "0.1.0"
