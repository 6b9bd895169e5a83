"""Typed options of one forwarders.ini section, parsed with oslo.config's types.

Filters and sinks read their options through ``SectionOptions`` so that every
value is parsed the way the main configuration parses its own (``types.Integer``,
``types.Float``, ``types.Boolean``, ...) and every mistake becomes an
``OptionError`` naming the option; the loader adds the file and the section.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from oslo_config import types

Integer = types.Integer
Float = types.Float
Boolean = types.Boolean
String = types.String


class ConfigError(ValueError):
    """The configuration cannot run: the message says what to change (the file,
    section and option when there is one). Every command answers it with its
    message and a non-zero exit, never a traceback."""


class OptionError(ValueError):
    """An option of a section is missing or invalid."""

    def __init__(self, option: str | None, message: str):
        super().__init__(f"{option}: {message}" if option else message)
        self.option = option
        self.message = message


def split_list(value: str) -> list[str]:
    """One item per line when the value spans lines, else comma-separated."""
    parts = value.splitlines() if "\n" in value.strip() else value.split(",")
    return [p.strip() for p in parts if p.strip()]


class SectionOptions(Mapping[str, str]):
    """The raw strings of a section, with typed getters."""

    def __init__(self, values: Mapping[str, str] | None = None,
                 error: type[OptionError] = OptionError):
        self._values = dict(values or {})
        self.error = error            # what a bad value raises (SinkConfigError...)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def typed(self, name: str, kind: types.ConfigType, default: Any = None,
              required: bool = False) -> Any:
        """The option parsed by ``kind`` (an oslo.config type), or ``default``."""
        raw = self._values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip() and required):
            if required:
                raise self.error(name, "missing required option")
            return default
        try:
            return kind(raw.strip() if isinstance(raw, str) else raw)
        except (ValueError, TypeError) as exc:
            raise self.error(name, f"{raw!r} is not valid: {exc}") from None

    def text(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.typed(name, String(), default, required)
        if isinstance(value, str) and not value.strip() and name in self._values:
            raise self.error(name, "must not be empty")
        return value.strip() if isinstance(value, str) else value

    def listing(self, name: str, default: list[str] | None = None) -> list[str] | None:
        raw = self._values.get(name)
        return default if raw is None else split_list(raw)
