"""The mock's exceptions."""

from __future__ import annotations

from surgebench.options import OptionError

SettingsError = OptionError
"""A setting has a bad value; the message names the flag, the value and what is allowed.

The shared options error, so one `except` catches the options table's and the profile loader's."""
