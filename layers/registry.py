"""Layer registry: configs name layer classes by these keys, never by import path."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

T = TypeVar("T", bound=type)

# Every name table that plugins can add to (layers here; activations and datasets add theirs),
# so that one job's registrations can be undone before the next job in the same process.
_TABLES: list[dict] = []


def registry_table(table: dict) -> dict:
    """Makes ``table`` a registry that :func:`scoped_registrations` restores; returns it."""
    _TABLES.append(table)
    return table


@contextmanager
def scoped_registrations() -> Iterator[None]:
    """Whatever is registered inside the block is forgotten after it."""
    saved = [dict(table) for table in _TABLES]
    try:
        yield
    finally:
        for table, before in zip(_TABLES, saved):
            table.clear()
            table.update(before)


LAYERS: dict[str, type] = registry_table({})


def register_layer(cls: T | None = None, *, name: str | None = None) -> T | Callable[[T], T]:
    """Registers a layer class under ``name`` (default: the class's ``kind`` attribute).

    Usable as ``@register_layer`` or ``@register_layer(name="my_layer")``.
    """

    def add(cls: T) -> T:
        key = name or getattr(cls, "kind", None) or cls.__name__
        if key in LAYERS and LAYERS[key] is not cls:
            raise ValueError(f"layer kind {key!r} is already registered to {LAYERS[key].__qualname__}")
        LAYERS[key] = cls
        return cls

    return add(cls) if cls is not None else add


def get_layer(kind: str) -> type:
    """Returns the layer class registered as ``kind``.

    Raises:
        ValueError: ``kind`` is not registered; the message lists close and allowed names.
    """
    try:
        return LAYERS[kind]
    except (KeyError, TypeError):
        raise ValueError(unknown_name_message("layer kind", kind, LAYERS)) from None


def unknown_name_message(what: str, got: object, allowed) -> str:
    """One line naming what was received, the closest allowed names and all of them."""
    import difflib  # only for error messages: kept off the start-up path

    names = list(allowed)
    close = difflib.get_close_matches(str(got), names, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return f"unknown {what} {got!r}{hint}; allowed: {', '.join(names)}"


def make_layer(kind: str, **kwargs):
    """Builds a layer of the registered ``kind`` with the layer's own keyword arguments."""
    return get_layer(kind)(**kwargs)
