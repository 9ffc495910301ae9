"""Pieces shared by the three HTTP surfaces: error shape, limits, signed requests."""
