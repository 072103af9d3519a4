"""The mock's exceptions."""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting has a bad value; the message names the flag, the value and what is allowed."""
