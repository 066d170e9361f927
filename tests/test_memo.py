"""The bounded memo behind the shared costs: at most its size, the oldest evicted first."""

from __future__ import annotations

import threading

from archsim.memo import BoundedMemo


def test_the_oldest_entry_goes_first_and_the_size_holds():
    memo = BoundedMemo(3)
    for k in "abc":
        memo.put(k, k.upper())
    memo.put("a", "A2")  # a new value for a key held keeps its place in the order
    memo.put("d", "D")
    assert (memo.get("a"), memo.get("b"), memo.get("c"), memo.get("d")) == (None, "B", "C", "D")
    memo.put("a", "A3")  # evicted keys come back as new ones
    assert (memo.get("b"), memo.get("a"), len(memo)) == (None, "A3", 3)
    memo.clear()
    assert len(memo) == 0 and memo.get("c") is None
    memo.put("e", "E")
    assert memo.get("e") == "E" and len(memo) == 1


def test_a_long_run_of_new_keys_keeps_map_and_order_alike():
    memo = BoundedMemo(1000)
    for i in range(25_000):
        memo.put(("k", i), i)
    assert len(memo) == len(memo._order) == 1000
    assert list(memo._order) == [("k", i) for i in range(24_000, 25_000)]
    assert all(memo.get(("k", i)) == i for i in range(24_000, 25_000)) and memo.get(("k", 23_999)) is None


def test_put_absent_leaves_what_get_then_put_of_each_leaves():
    def one_by_one(memo, entries):
        for key, value in entries:
            if memo.get(key) is None:
                memo.put(key, value)

    # held keys keep their values and places, a key met twice its first value, and the oldest go
    # first once the size is passed (here by more than the entries put at once)
    for size in (3, 4, 6, 50):
        entries = [("b", 20), ("x", 1), ("y", 2), ("x", 3), ("z", 4), ("a", 10)]
        batched, single = BoundedMemo(size), BoundedMemo(size)
        for memo in (batched, single):
            for k in "abc":
                memo.put(k, ord(k))
        batched.put_absent(iter(entries))
        one_by_one(single, entries)
        if size >= 3 + 3:  # evicting only keys held before: the same map, the same order
            assert batched._items == single._items and list(batched._order) == list(single._order)
        assert len(batched) == len(batched._order) == min(size, 6)
        assert batched.get("x") == 1 and batched.get("z") == 4  # the new ones, first values
    memo = BoundedMemo(4)
    memo.put("a", 1)
    memo.put_absent([("a", 2), ("b", 3)])
    assert (memo.get("a"), memo.get("b"), list(memo._order)) == (1, 3, ["a", "b"])
    memo.put_absent([])
    assert len(memo) == 2


def test_threads_putting_at_once_keep_it_about_its_size():
    memo = BoundedMemo(100)

    def fill(t: int) -> None:
        for i in range(5_000):
            memo.put((t, i), i)

    threads = [threading.Thread(target=fill, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 100 - 4 <= len(memo) <= 100 + 4


def test_cached_property_makes_its_value_once_and_keeps_it_on_the_instance():
    from archsim.memo import cached_property

    calls = []

    class Run:
        def __init__(self, total):
            self.total = total

        @cached_property
        def doubled(self):
            """Twice the total."""
            calls.append(self.total)
            return self.total * 2

    a, b = Run(3), Run(5)
    assert (a.doubled, a.doubled, b.doubled) == (6, 6, 10)
    assert calls == [3, 5]  # once an instance
    assert a.__dict__["doubled"] == 6  # kept where later reads find it without the descriptor
    assert Run.doubled.__doc__ == "Twice the total." and isinstance(Run.doubled, cached_property)
    a.__dict__.pop("doubled")
    a.total = 4
    assert a.doubled == 8 and calls == [3, 5, 4]  # dropped, made again
