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
