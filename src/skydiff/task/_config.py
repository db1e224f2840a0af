"""Typed, frozen, validated task configurations."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import InvalidParameterError

__all__ = ["Config", "config_field", "field_docs"]

C = TypeVar("C", bound="Config")
_MISSING = dataclasses.MISSING
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def config_field(default: Any = _MISSING, *, doc: str, factory: Any = _MISSING) -> Any:
    """A documented config field; ``factory`` for mutable or nested defaults."""
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of all task configurations: a frozen dataclass checked on construction.

    Subclasses declare typed, defaulted fields (:func:`config_field`) and may
    override :meth:`validate` for range checks, calling ``super().validate()``.
    Values are type-checked against the annotations; every error names the
    field. Variants are made with :meth:`replace`, :meth:`with_overrides`
    (``"a.b=value"`` strings) or :meth:`with_toml`.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            coerced = _check_type(value, hints[field.name], self._field_path(field.name))
            if coerced is not value:
                object.__setattr__(self, field.name, coerced)
        self.validate()

    def validate(self) -> None:
        """Range and consistency checks; raise :class:`InvalidParameterError`."""

    def check_range(
        self,
        name: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        strict: bool = False,
    ) -> None:
        """Check a ``(low, high)`` field: ``low <= high``, both within the bounds given.

        ``strict`` makes ``minimum`` exclusive.
        """
        low, high = getattr(self, name)
        self.check(low <= high, name, "must be a (low, high) pair with low <= high")
        if minimum is not None:
            ok = low > minimum if strict else low >= minimum
            self.check(ok, name, f"must lie {'above' if strict else 'at or above'} {minimum}")
        if maximum is not None:
            self.check(high <= maximum, name, f"must lie at or below {maximum}")

    def _field_path(self, name: str) -> str:
        return f"{type(self).__name__}.{name}"

    def check(self, condition: bool, name: str, requirement: str) -> None:
        """Raise naming field ``name`` unless ``condition`` holds."""
        if not condition:
            raise InvalidParameterError(
                f"{self._field_path(name)} {requirement}, got {getattr(self, name)!r}"
            )

    # -- conversion -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dictionary (tuples as lists), suitable for JSON or TOML."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Build from a (nested) dictionary; unknown keys raise, missing keys keep defaults."""
        return cls().with_values(data)

    def with_values(self: C, data: Mapping[str, Any]) -> C:
        """Copy with values from a nested mapping applied over this config."""
        hints = typing.get_type_hints(type(self))
        names = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                raise InvalidParameterError(
                    f"{type(self).__name__} has no field {key!r}; fields: {sorted(names)}"
                )
            current = getattr(self, key)
            if isinstance(current, Config) and isinstance(value, Mapping):
                changes[key] = current.with_values(value)
            else:
                changes[key] = _coerce(value, hints[key], self._field_path(key))
        return dataclasses.replace(self, **changes)

    def replace(self: C, **changes: Any) -> C:
        """Copy with fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def with_overrides(self: C, overrides: Iterable[str]) -> C:
        """Copy with ``"a.b=value"`` overrides applied together (values parsed by field type).

        Examples
        --------
        >>> config.with_overrides(["kernel.spatial_order=2", "mode=auto"])  # doctest: +SKIP
        """
        merged: dict[str, Any] = {}
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise InvalidParameterError(f"override {item!r} is not of the form key=value")
            *parents, leaf = key.strip().split(".")
            node = merged
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise InvalidParameterError(f"override {item!r} conflicts with another")
            node[leaf] = text.strip()
        # one update, validated once, so that related fields may change together
        return self.with_values(merged)

    @classmethod
    def from_toml(cls: type[C], path: str | Path) -> C:
        """Build from a TOML file (see :meth:`with_toml`)."""
        return cls().with_toml(path)

    def with_toml(self: C, path: str | Path) -> C:
        """Copy with the values of a TOML file applied; tables are nested configs."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise InvalidParameterError(f"{path}: cannot read config overrides: {error}") from error
        return self.with_values(data)


def field_docs(config_class: type[Config], prefix: str = "") -> dict[str, str]:
    """``{"a.b": "doc (default: value)"}`` for every field, nested configs flattened."""
    docs: dict[str, str] = {}
    default = config_class()
    for field in dataclasses.fields(config_class):
        value = getattr(default, field.name)
        if isinstance(value, Config):
            docs.update(field_docs(type(value), f"{prefix}{field.name}."))
        else:
            docs[f"{prefix}{field.name}"] = f"{field.metadata.get('doc', '')} (default: {value!r})"
    return docs


# -- type checking and parsing --------------------------------------------------------------


def _check_type(value: Any, annotation: Any, path: str) -> Any:
    """Return ``value`` (converted int -> float, list -> tuple) if it fits ``annotation``."""
    return _coerce(value, annotation, path, parse_strings=False)


def _coerce(value: Any, annotation: Any, path: str, *, parse_strings: bool = True) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (
            parse_strings and isinstance(value, str) and value.lower() == "none"
        )
        if is_none and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, path, parse_strings=parse_strings)
            except InvalidParameterError as error:
                errors.append(str(error))
        raise InvalidParameterError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise InvalidParameterError(f"{path} must be one of {list(args)}, got {value!r}")
    if origin is tuple:
        items = value
        if isinstance(value, str) and parse_strings:
            items = _parse_sequence(value)
        if not isinstance(items, (list, tuple)):
            raise InvalidParameterError(f"{path} must be a sequence, got {value!r}")
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, path, parse_strings=parse_strings) for v in items)
    if isinstance(annotation, type) and issubclass(annotation, Config):
        if isinstance(value, annotation):
            return value
        raise InvalidParameterError(f"{path} must be a {annotation.__name__}, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if parse_strings and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise InvalidParameterError(f"{path} must be true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, str) and parse_strings:
            try:
                value = annotation(value)
            except ValueError:
                raise InvalidParameterError(
                    f"{path} must be {annotation.__name__}, got {value!r}"
                ) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidParameterError(f"{path} must be {annotation.__name__}, got {value!r}")
        if not math.isfinite(value):
            raise InvalidParameterError(f"{path} must be finite, got {value!r}")
        if annotation is int:
            if int(value) != value:
                raise InvalidParameterError(f"{path} must be an integer, got {value!r}")
            return int(value)
        return float(value)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise InvalidParameterError(f"{path} must be a string, got {value!r}")
    return value


def _parse_sequence(text: str) -> list[Any]:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidParameterError(f"cannot parse list {text!r}: {error}") from error
    return [part.strip() for part in text.split(",") if part.strip()]
