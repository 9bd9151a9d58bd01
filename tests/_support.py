"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

WAIT = 30.0
"""Every wait in the suite is bounded by this, so a bug shows up as a failure, not a hang."""
