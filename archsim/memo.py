"""A bounded memo for values that are pure functions of their key: costs, timings."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Generic, Hashable, Iterable, TypeVar

V = TypeVar("V")


class cached_property(Generic[V]):  # noqa: N801 (named as the functools descriptor it stands in for)
    """``functools.cached_property`` without its lock: the value, made on first access, is kept
    in the instance's ``__dict__`` (where later accesses find it without calling this). Python
    3.11's takes an ``RLock`` on every first access, some 1 us; a sweep point makes a dozen such
    values (a run's totals, its schedule's parts). Two threads making one value at once each make
    the same value (they are pure functions of the instance), so nothing needs the lock (Python
    3.12 dropped it too)."""

    def __init__(self, func: Callable[[Any], V]):
        self.func = func
        self.__doc__ = func.__doc__
        self.name = func.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> V:
        if instance is None:
            return self  # type: ignore[return-value]
        value = instance.__dict__[self.name] = self.func(instance)
        return value


class BoundedMemo(Generic[V]):
    """A map of at most ``size`` entries, the oldest evicted first. Sharing pure values changes
    no result, only the time; eviction tolerates threads (a Dask worker runs several).

    The order of arrival is a queue of keys beside the map: evicting the oldest is O(1). (Taking
    a dict's first key instead walks past every slot its earlier evictions left empty, until
    the dict is next rebuilt: some 15 us a put in a full 50,000-entry memo, as much as costing
    the op it holds.)"""

    def __init__(self, size: int):
        self.size = size
        self._items: dict[Hashable, V] = {}
        self._order: deque[Hashable] = deque()  # the keys, oldest first
        # ``get(key)``: the value, or None. The map's own method: a lookup is a sweep's most
        # frequent call, and the map is only ever cleared in place
        self.get = self._items.get

    def put(self, key: Hashable, value: V) -> V:
        items = self._items
        held = len(items)
        items[key] = value  # a key held keeps its place; a key's hash is made once here
        if len(items) > held:
            self._order.append(key)
            if len(items) > self.size:
                self._evict()
        return value

    def put_absent(self, entries: Iterable[tuple[Hashable, V]]) -> None:
        """Each (key, value) put whose key is not held, in order: what ``put`` of each after
        ``get`` finds its key absent leaves, made in one step (a family of chips keeps an op's
        time for each of some 25 members at once: ``archsim.sim.family``)."""
        items = self._items
        new: dict[Hashable, V] = {}
        for key, value in entries:
            if key not in items and key not in new:  # a key met twice keeps its first value, as ``get`` would
                new[key] = value
        if not new:
            return
        items.update(new)
        self._order.extend(new)
        if len(items) > self.size:
            self._evict()

    def _evict(self) -> None:
        """The oldest entries dropped until the size holds."""
        items = self._items
        while len(items) > self.size:
            try:
                items.pop(self._order.popleft(), None)
            except IndexError:  # another thread emptied it meanwhile
                break

    def clear(self) -> None:
        self._items.clear()
        self._order.clear()

    def __len__(self) -> int:
        return len(self._items)
