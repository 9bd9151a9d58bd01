"""The pluggy markers for flowkernel hooks.

Kept apart from the plugin manager so that a plugin module can import
``hookimpl`` without pulling in discovery code.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "flowkernel"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks a function in :mod:`flowkernel.hookspecs` as a hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin function as a hook implementation (``@hookimpl(trylast=True)`` etc.)."""
