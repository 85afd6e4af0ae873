"""A backend's parameters, declared once (like the `llm` CLI's model Options).

Each backend lists what ``work.params`` may hold as a :class:`Params` of
:class:`Param` entries: a type, bounds, a default and a line of help. The one
declaration both checks a job (:meth:`Params.parse`, which raises
``BadInput("bad_params")`` naming the parameter and its valid range) and is
advertised in the worker's capability as a JSON Schema object
(:meth:`Params.schema`), so what a model accepts is never written twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from broker.protocol import MtorError


class BadInput(MtorError):
    """A job the backend refuses before any model runs.

    ``code`` is one of ``broker.protocol.ERROR_CODES`` (``bad_params``,
    ``bad_attachment``, ``prompt_too_long`` ...); ``hint`` tells the person
    what to send instead.
    """


# Python type -> (JSON Schema type, how a message names it)
_KINDS: dict[type, tuple[str, str]] = {
    int: ("integer", "an integer"),
    float: ("number", "a number"),
    str: ("string", "text"),
    bool: ("boolean", "true or false"),
    list: ("array", "a list"),
}


@dataclass(frozen=True)
class Param:
    """One parameter: ``types`` it may have, ``low``..``high`` for numbers
    (``max_chars`` for text), a ``default`` filled in when absent, and
    ``convert`` for a rule the bounds cannot say (it returns the value to
    use, or raises BadInput)."""

    name: str
    types: tuple[type, ...]
    help: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    max_chars: int | None = None
    pattern: str | None = None  # text must match it in full...
    pattern_means: str = ""  # ...else "NAME=VALUE is not {pattern_means}"
    aliases: tuple[str, ...] = ()  # other names accepted for it (e.g. diffusers' own)
    example: str = ""  # for hints: "e.g. max_tokens=256"
    integer_text: bool = False  # an integer may come as text ("4"), as typed on a command line
    convert: Callable[[Any], Any] | None = None

    def _type_error(self, value: Any) -> BadInput:
        kinds = " or ".join(_KINDS[t][1] for t in self.types)
        return BadInput("bad_params", f"{self.name} must be {kinds}, got {value!r}", self.example or self.help)

    def check(self, value: Any) -> Any:
        """The value to use for ``value``; BadInput when it is not acceptable."""
        if self.integer_text and isinstance(value, str) and int in self.types:
            try:
                value = int(value.strip())
            except ValueError:
                raise self._type_error(value) from None
        given = value
        # bool is an int subclass in Python, never a number in a request.
        if isinstance(value, bool) and bool not in self.types:
            raise self._type_error(value)
        if not isinstance(value, self.types):
            if not (float in self.types and isinstance(value, int) and not isinstance(value, bool)):
                raise self._type_error(value)
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise BadInput("bad_params", f"{self.name}={given!r} is out of range", self._range_hint())
        if isinstance(value, str):
            if self.max_chars is not None and len(value) > self.max_chars:
                raise BadInput(
                    "bad_params", f"{self.name} is {len(value)} characters", f"keep it under {self.max_chars}"
                )
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise BadInput("bad_params", f"{self.name}={value!r} is not {self.pattern_means}", self.example)
        return self.convert(value) if self.convert is not None else value

    def _range_hint(self) -> str:
        low = "" if self.low is None else _number(self.low)
        high = "" if self.high is None else _number(self.high)
        bounds = f"use {low}..{high}" if low and high else f"use >= {low}" if low else f"use <= {high}"
        return f"{bounds}; {self.help}" if self.help else bounds

    def schema(self) -> dict[str, Any]:
        kinds = [_KINDS[t][0] for t in self.types]
        out: dict[str, Any] = {"type": kinds[0] if len(kinds) == 1 else kinds, "description": self.help}
        if self.low is not None:
            out["minimum"] = self.low
        if self.high is not None:
            out["maximum"] = self.high
        if self.max_chars is not None:
            out["maxLength"] = self.max_chars
        if self.default is not None:
            out["default"] = self.default
        return out


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


class Params:
    """Every parameter one backend accepts; nothing else passes."""

    def __init__(self, intent: str, *params: Param) -> None:
        self.intent = intent
        self._params = {p.name: p for p in params}
        self._names = {alias: p.name for p in params for alias in (p.name, *p.aliases)}

    @property
    def names(self) -> list[str]:
        return list(self._params)

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def narrowed(self, **bounds: tuple[float | None, float | None]) -> Params:
        """These parameters with other bounds (a worker's operator caps steps lower, say)."""
        params = [
            replace(p, low=bounds[p.name][0], high=bounds[p.name][1]) if p.name in bounds else p
            for p in self._params.values()
        ]
        return Params(self.intent, *params)

    def parse(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared parameter by its own name: checked, defaults filled in
        (None where a parameter has no default and was not given)."""
        unknown = sorted(k for k in raw if k not in self._names)
        if unknown:
            accepts = ", ".join(self._params) or "no parameters"
            raise BadInput(
                "bad_params",
                f"unknown {self.intent} parameter(s): {', '.join(unknown)}",
                f"{self.intent} accepts {accepts}",
            )
        values = {name: p.default for name, p in self._params.items()}
        for key, value in raw.items():
            name = self._names[key]
            if value is None:
                continue  # "not given": the default stands
            values[name] = self._params[name].check(value)
        return values

    def schema(self) -> dict[str, Any]:
        """A JSON Schema object of these parameters (what the capability advertises)."""
        return {
            "type": "object",
            "properties": {name: p.schema() for name, p in self._params.items()},
            "additionalProperties": False,
        }
