"""Shared pytest configuration. Area-specific fixtures live next to their tests."""
