"""Values the engine stores: JSON that Postgres can hold. Postgres text and jsonb cannot
hold the NUL character, so a value carrying one is refused up front with a clear error
instead of failing the write that records it."""

from __future__ import annotations

from typing import Any


def find_nul(value: Any, path: str = "$") -> str | None:
    """The path of the first string (or key) holding a NUL character, if any."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return where
                stack.append((f"{where}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None
