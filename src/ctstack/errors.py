"""One exception hierarchy for the engine; every message names the file and the problem."""

from __future__ import annotations


class CTStackError(Exception):
    """Base of every error ctstack raises on purpose."""


class Cancelled(CTStackError):
    """A long job stopped because its cancel event was set; nothing partial was left behind."""
