"""Typed options for a component's settings: one table, four layers, one error format.

A component (the mock, the service) declares its settings as a frozen dataclass whose fields are
made with `option(...)`: a default, a help text, and what is allowed (`lo`/`hi` bounds for
numbers, `choices` for a fixed set). From that one table come the CLI flags (`add_arguments`), the
environment variables, the conversion and checking of every raw value (`convert`), the layered
resolution defaults < profile < environment < flags (`resolve`), the `--help` text and the view
with secrets hidden (`public_settings`).

A bad value raises `OptionError` with one line naming where it came from (the flag, or the
variable and its flag), the value, and what is allowed; the CLIs print it and exit 2.

Neutral on purpose: imports only the standard library (argparse lazily), so the mock and the
service share it without importing each other, and importing it stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import argparse

T = TypeVar("T")

REDACTED = "***"
"""What a set secret is shown as (an unset one is shown as the empty string)."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class OptionError(ValueError):
    """A bad value: the message names its source, the value and what is allowed."""


def option(
    default: Any,
    help: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: Iterable[Any] | None = None,
    flag: bool = True,
    env: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    """A dataclass field carrying its help text and allowed values.

    Numbers (int or float defaults) need both bounds: every count, size and time has a
    documented upper limit. `env` replaces the default variable name (`PREFIX` + NAME) with
    these variables, the first one set and non-empty wins. `flag=False`: environment only.
    A `secret` is kept out of `repr` and shown as "***" by `public_settings`.
    """
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if (
        numeric
        and choices is None
        and (lo is None or hi is None or not math.isfinite(hi) or not lo <= default <= hi)
    ):
        raise TypeError(f"a number needs finite bounds lo <= default <= hi (default {default!r})")
    meta = {
        "help": help,
        "lo": lo,
        "hi": hi,
        "choices": tuple(choices) if choices is not None else None,
        "flag": flag,
        "env": env,
        "secret": secret,
    }
    return dataclasses.field(default=default, metadata=meta, repr=not secret)


def fields_of(cls: type[Any]) -> dict[str, dataclasses.Field[Any]]:
    """The option fields of a settings class, by name, in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls)}


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_names(f: dataclasses.Field[Any], prefix: str) -> tuple[str, ...]:
    """The environment variables that set this option, in order of precedence."""
    return tuple(f.metadata.get("env") or ()) or (prefix + f.name.upper(),)


def _kind(f: dataclasses.Field[Any]) -> type[Any]:
    return type(f.default)


def _num(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def describe_allowed(f: dataclasses.Field[Any]) -> str:
    """What an option accepts, in words (used in errors, `--help` and docs)."""
    meta = f.metadata
    kind = _kind(f)
    if meta.get("choices") is not None:
        return ", ".join(str(c) for c in meta["choices"])
    if kind is bool:
        return "true, false, 1, 0, yes, no, on, off"
    if kind in (int, float):
        what = "an integer" if kind is int else "a number"
        return f"{what} {range_words(meta['lo'], meta['hi'])}"
    return "any text"


def convert(f: dataclasses.Field[Any], raw: object, source: str) -> Any:
    """Turn one raw value (text from a flag or variable, or a profile's JSON/TOML value) into
    the option's type, checked; raise `OptionError` naming the source, the value and what is
    allowed."""
    meta = f.metadata
    kind = _kind(f)
    try:
        value: Any
        if kind is bool:
            if isinstance(raw, bool):
                value = raw
            elif str(raw).strip().lower() in _TRUE:
                value = True
            elif str(raw).strip().lower() in _FALSE:
                value = False
            else:
                raise ValueError
        elif kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            if isinstance(raw, str) and len(raw) > 40:  # no 4,000-digit parses
                raise ValueError
            value = int(raw)  # type: ignore[call-overload]
        elif kind is float:
            if isinstance(raw, bool) or (isinstance(raw, str) and len(raw) > 40):
                raise ValueError
            value = float(raw)  # type: ignore[arg-type]
            if not math.isfinite(value):
                raise ValueError
        else:
            if not isinstance(raw, str):
                raise ValueError
            value = raw
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise ValueError
        if meta.get("lo") is not None and value < meta["lo"]:
            raise ValueError
        if meta.get("hi") is not None and value > meta["hi"]:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise OptionError(
            f"{source}: invalid value {shown(raw)} (allowed: {describe_allowed(f)})"
        ) from None
    return value


def shown(raw: object, limit: int = 60) -> str:
    """A raw value for an error line: its repr, cut to `limit` characters."""
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_range(flag: str, value: float, lo: float, hi: float) -> None:
    """Raise `OptionError` unless `lo <= value <= hi` (NaN and infinities never pass)."""
    if not (math.isfinite(value) and lo <= value <= hi):
        what = "an integer" if isinstance(value, int) else "a number"
        allowed = f"{what} {range_words(lo, hi)}"
        raise OptionError(f"{flag}: invalid value {shown(value)} (allowed: {allowed})")


def help_text(f: dataclasses.Field[Any], prefix: str) -> str:
    """The `--help` line of one option: meaning, default, allowed values, variable."""
    shown = f.default
    if f.metadata.get("secret") and shown:
        shown = REDACTED
    return (
        f"{f.metadata['help']} (default {shown!r}; allowed: {describe_allowed(f)}; "
        f"env {' or '.join(env_names(f, prefix))})"
    )


_TYPE_ERROR = re.compile(r"argument (--[\w-]+)(?:/\S+)?: invalid (int|float) value: (.*)")
_MISSING_VALUE = re.compile(r"argument (--[\w-]+)(?:/\S+)?: expected one argument")


def argparse_message(message: str, prog: str, ranges: Mapping[str, str] | None = None) -> str:
    """argparse's own error `message` in the one-line form of `OptionError`: the flag first, then
    the value and what is allowed (`ranges`: flag -> allowed range in words, e.g. ``">= 1 and <=
    100000"``); an unknown flag points at ``PROG --help``."""
    typed = _TYPE_ERROR.fullmatch(message)
    if typed:
        flag, kind, value = typed.groups()
        allowed = "an integer" if kind == "int" else "a number"
        if ranges and flag in ranges:
            allowed += f" {ranges[flag]}"
        return f"{flag}: invalid value {value} (allowed: {allowed})"
    missing = _MISSING_VALUE.fullmatch(message)
    if missing:
        flag = missing.group(1)
        return f"{flag}: no value given (a value that starts with '-' is written {flag}=VALUE)"
    if message.startswith("unrecognized arguments"):
        return f"{message} (see {prog} --help)"
    return message


def range_words(lo: float, hi: float) -> str:
    """``">= LO and <= HI"``, as `check_range` and `describe_allowed` word a range."""
    return f">= {_num(lo)} and <= {_num(hi)}"


def one_line_parser(prog: str, **kwargs: Any) -> argparse.ArgumentParser:
    """An `argparse.ArgumentParser` whose own errors (unknown flag, missing value) print one line
    naming the flag, then exit 2 (argparse prints its whole usage)."""
    import argparse

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:
            print(f"{self.prog}: {argparse_message(message, self.prog)}", file=sys.stderr)
            raise SystemExit(2)

    return OneLineParser(prog=prog, **kwargs)


def build_parser(
    cls: type[Any],
    prefix: str,
    *,
    prog: str,
    description: str,
    parser_class: type[argparse.ArgumentParser] | None = None,
) -> argparse.ArgumentParser:
    """A parser with one flag per option; the description gains the sentence on variables,
    precedence and bounds that every component shares. Unless `parser_class` is given, its own
    errors (unknown flag, missing value) are one line and exit 2 (`one_line_parser`)."""
    text = (
        f"{description} Each flag is also read from {prefix}<NAME> (e.g. {prefix}PORT); flags "
        "win over variables. Every number has a lowest and a highest allowed value (shown with "
        "each flag); a value outside them exits 2."
    )
    if parser_class is None:
        parser = one_line_parser(prog, description=text)
    else:
        parser = parser_class(prog=prog, description=text)
    add_arguments(parser, cls, prefix)
    return parser


def add_arguments(parser: argparse.ArgumentParser, cls: type[Any], prefix: str) -> None:
    """One flag per option (booleans get --x/--no-x); every default is None, so that a flag
    not given leaves the lower layers alone."""
    import argparse

    for name, f in fields_of(cls).items():
        if not f.metadata.get("flag", True):
            continue
        if _kind(f) is bool:
            parser.add_argument(
                flag_name(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text(f, prefix),
            )
        else:
            parser.add_argument(
                flag_name(name),
                dest=name,
                default=None,
                metavar="VALUE",
                help=help_text(f, prefix),
            )


def from_env(
    cls: type[Any], env: Mapping[str, str], prefix: str, skip: Iterable[str] = ()
) -> dict[str, Any]:
    """The values the environment sets, converted and checked."""
    values: dict[str, Any] = {}
    skipped = set(skip)
    for name, f in fields_of(cls).items():
        if name in skipped:
            continue
        names = env_names(f, prefix)
        for var in names:
            if var in env and (len(names) == 1 or env[var]):
                source = f"{var} ({flag_name(name)})" if f.metadata.get("flag", True) else var
                values[name] = convert(f, env[var], source)
                break
    return values


def from_mapping(cls: type[Any], data: Mapping[str, object], source: str) -> dict[str, Any]:
    """The values of a profile (keys may use '-' or '_'), converted and checked."""
    fields = fields_of(cls)
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = str(key).replace("-", "_")
        f = fields.get(name)
        if f is None:
            raise OptionError(f"{source}: unknown setting {name!r}; allowed: {', '.join(fields)}")
        values[name] = convert(f, raw, f"{source}: {name}")
    return values


def resolve(
    cls: type[T],
    *,
    flags: Mapping[str, object],
    env: Mapping[str, str],
    prefix: str,
    profile: Mapping[str, Any] | None = None,
    skip_env: Iterable[str] = (),
) -> T:
    """Build the settings: defaults < `profile` (already converted) < environment < `flags`
    (argparse's values; None means not given)."""
    fields = fields_of(cls)
    values: dict[str, Any] = dict(profile or {})
    values.update(from_env(cls, env, prefix, skip_env))
    for name, raw in flags.items():
        if raw is not None and name in fields:
            values[name] = convert(fields[name], raw, flag_name(name))
    return cls(**values)


def is_loopback(host: str) -> bool:
    """Whether a `host` option binds only this machine (else the CLIs print a warning)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_settings(settings: object) -> dict[str, Any]:
    """Every option's value, secrets shown as "***" when set (empty when not)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        out[f.name] = (REDACTED if value else "") if f.metadata.get("secret") else value
    return out


def settings_table_markdown(cls: type[Any], prefix: str) -> str:
    """A Markdown table of every option: flag, variable, default, meaning, allowed values."""
    rows = ["| flag | environment | default | meaning | allowed |", "|---|---|---|---|---|"]
    for name, f in fields_of(cls).items():
        flag = f"`{flag_name(name)}`" if f.metadata.get("flag", True) else "(env only)"
        env = " or ".join(f"`{v}`" for v in env_names(f, prefix))
        rows.append(
            f"| {flag} | {env} | {f.default!r} | {f.metadata['help']} | {describe_allowed(f)} |"
        )
    return "\n".join(rows)


def limits_table_markdown(cls: type[Any]) -> str:
    """A Markdown table of the numeric options: flag, default, lowest and highest value."""
    return bounds_table_markdown(
        (flag_name(name), f.default, f.metadata["lo"], f.metadata["hi"])
        for name, f in fields_of(cls).items()
        if f.metadata.get("hi") is not None
    )


def bounds_table_markdown(rows: Iterable[tuple[str, object, float, float]]) -> str:
    """A Markdown table of (flag, default, lowest, highest) rows."""
    lines = ["| flag | default | lowest | highest |", "|---|---|---|---|"]
    lines += [
        f"| `{flag}` | `{default}` | {_num(lo)} | {_num(hi)} |" for flag, default, lo, hi in rows
    ]
    return "\n".join(lines)
