"""A bounded memo for values that are pure functions of their key: costs, timings."""

from __future__ import annotations

from typing import Generic, Hashable, TypeVar

V = TypeVar("V")


class BoundedMemo(Generic[V]):
    """A map of at most ``size`` entries, the oldest evicted first. Sharing pure values changes
    no result, only the time; eviction tolerates threads (a Dask worker runs several)."""

    def __init__(self, size: int):
        self.size = size
        self._items: dict[Hashable, V] = {}

    def get(self, key: Hashable) -> V | None:
        return self._items.get(key)

    def put(self, key: Hashable, value: V) -> V:
        while len(self._items) >= self.size:
            try:
                self._items.pop(next(iter(self._items)), None)
            except (RuntimeError, StopIteration):  # another thread changed it meanwhile
                break
        self._items[key] = value
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
