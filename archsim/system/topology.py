"""Chip-to-chip topologies and the time, bytes and energy of transfers and collectives on them.

Collectives use the standard bandwidth-optimal algorithms (Patarasuk & Yuan 2009; Thakur et al.
2005), timed with the alpha-beta model: a step costs the link latency per hop plus its bytes over
the bandwidth between neighbours.

- ring: all-reduce is a reduce-scatter then an all-gather around the group's ring, 2(n-1) steps of
  S/n bytes: ``2(n-1) * (hops * latency + S / (n * B))``, i.e. 2(n-1)/n of the bytes per chip over
  the link bandwidth plus the per-hop latency. ``system.collective_algorithm: bidirectional_ring``
  (the default) sends half of every chunk each way round the ring at once, over the links to both
  neighbours: ``S / (2 n B)`` a step. A ring of two chips has one neighbour and gains nothing;
  nor does a group laid along a line of a larger ring (its closing edge already runs back along
  the line's links, keeping both directions busy). A group of fewer chips than the ring runs its ring
  over a line of the ring's links, both directions: the step latency is that of its longest edge.
- torus2d: a group spanning whole rows runs the ring algorithm along x, then along y on the
  1/x-th it owns, then along x again (the 2-D algorithm); a group within a row is a 1-D ring.
- switch: each phase (reduce-scatter, all-gather) sends (n-1)/n of the bytes from every chip at
  once through its links into the switch: two link hops and the switch per phase.

A chip splits its ``ici.links`` evenly among its distinct neighbours. Links are full duplex;
``link_bandwidth`` is per direction, of which ``ici.efficiency`` is achieved. Transfers of different groups are assumed not to share links
(true for the contiguous groups archsim's chip numbering makes on a ring, torus row or switch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

from archsim.config.schema import HardwareConfig
from archsim.config.system import RingTopology, SwitchTopology, TorusTopology
from archsim.hw.energy import scale_factor


@dataclass(frozen=True)
class Transfer:
    """A communication's cost: wall time, bytes each chip sends, and energy over all links."""

    time_s: float
    sent_per_chip: float
    energy_j: float

    def __add__(self, other: "Transfer") -> "Transfer":  # one after the other
        return Transfer(self.time_s + other.time_s, self.sent_per_chip + other.sent_per_chip, self.energy_j + other.energy_j)

    def in_parallel(self, groups: int) -> "Transfer":
        """The same transfer run by ``groups`` groups at once: same time, their energy."""
        return Transfer(self.time_s, self.sent_per_chip, self.energy_j * groups)


NO_TRANSFER = Transfer(0.0, 0.0, 0.0)


class Topology(ABC):
    def __init__(self, hw: HardwareConfig):
        self.chips = hw.system.chips
        self.links = hw.ici.links
        self.link_bandwidth = hw.ici.achievable_bandwidth
        self.bidirectional = hw.system.collective_algorithm == "bidirectional_ring"
        self.alpha = hw.ici.link_latency
        self.energy_per_byte = hw.ici.energy_per_byte * scale_factor(hw, hw.ici.stated_at, "energy")

    @abstractmethod
    def hops(self, a: int, b: int) -> int:
        """Links a message from chip a to chip b crosses."""

    @abstractmethod
    def neighbour_bandwidth(self) -> float:
        """Bytes/s one chip can send to one neighbour."""

    def send(self, size: float, src: int, dst: int) -> Transfer:
        """Point to point, cut-through: the path's latency plus the bytes at the neighbour bandwidth."""
        if src == dst or size <= 0:
            return NO_TRANSFER
        hops = self.hops(src, dst)
        return Transfer(hops * self.alpha + size / self.neighbour_bandwidth(), size, size * hops * self.energy_per_byte)

    def all_reduce(self, size: float, group: Sequence[int]) -> Transfer:
        return self._ring(size, group, 2)

    def broadcast(self, size: float, group: Sequence[int]) -> Transfer:
        """From the group's first chip to the others, pipelined along the chain in chunks:
        the chain's latency plus the bytes once at the neighbour bandwidth."""
        n = len(group)
        if n < 2 or size <= 0:
            return NO_TRANSFER
        hops = sum(self.hops(group[i], group[i + 1]) for i in range(n - 1))
        return Transfer(hops * self.alpha + size / self.neighbour_bandwidth(), size, size * hops * self.energy_per_byte)

    def all_gather(self, size: float, group: Sequence[int]) -> Transfer:
        """``size`` is the gathered result; each chip starts with 1/n of it."""
        return self._ring(size, group, 1)

    def all_to_all(self, size: float, group: Sequence[int]) -> Transfer:
        """Each chip sends ``size`` / n to every other chip of the group, all at once over
        shortest paths: the time of the longest path's latency plus the larger of a chip's own
        sends through its links and the busiest links' share of every byte's hops (the byte-hops
        spread evenly over the links the group's chips drive, each way)."""
        n = len(group)
        if n < 2 or size <= 0:
            return NO_TRANSFER
        share = size / n
        hops = [self.hops(a, b) for a in group for b in group if a != b]
        links = n * (2 if self.bidirectional and self.chips > 2 else 1)
        inject = (n - 1) * share / ((2 if links > n else 1) * self.neighbour_bandwidth())
        spread = sum(hops) * share / (links * self.neighbour_bandwidth())
        time = max(hops) * self.alpha + max(inject, spread)
        return Transfer(time, (n - 1) * share, sum(hops) * share * self.energy_per_byte)

    def _ring(self, size: float, group: Sequence[int], passes: int) -> Transfer:
        """``passes`` rounds of n - 1 steps, each moving size/n bytes to the ring's next chip."""
        n = len(group)
        if n < 2 or size <= 0:
            return NO_TRANSFER
        edges = [self.hops(group[i], group[(i + 1) % n]) for i in range(n)]
        steps = passes * (n - 1)
        chunk = size / n
        # Both ways round only on a true ring (every edge one hop) of more than two chips: two
        # chips have one neighbour, and a group laid along a line of a larger ring already keeps
        # both directions of its links busy, its closing edge running back along them.
        directions = 2 if self.bidirectional and n > 2 and max(edges) == 1 else 1
        time = steps * (max(edges) * self.alpha + chunk / (directions * self.neighbour_bandwidth()))
        energy = steps * chunk * sum(edges) * self.energy_per_byte
        return Transfer(time, steps * chunk, energy)


class Ring(Topology):
    def hops(self, a: int, b: int) -> int:
        d = abs(a - b) % self.chips
        return min(d, self.chips - d)

    def neighbour_bandwidth(self) -> float:
        neighbours = 1 if self.chips <= 2 else 2
        return self.link_bandwidth * max(1, self.links // neighbours)


class Torus2D(Topology):
    def __init__(self, hw: HardwareConfig):
        super().__init__(hw)
        topology = hw.system.topology
        assert isinstance(topology, TorusTopology)
        self.x, self.y = topology.shape

    def _xy(self, chip: int) -> tuple[int, int]:
        return chip % self.x, chip // self.x

    def hops(self, a: int, b: int) -> int:
        (ax, ay), (bx, by) = self._xy(a), self._xy(b)
        dx, dy = abs(ax - bx), abs(ay - by)
        return min(dx, self.x - dx) + min(dy, self.y - dy)

    def neighbour_bandwidth(self) -> float:
        neighbours = sum(0 if n == 1 else 1 if n == 2 else 2 for n in (self.x, self.y))
        return self.link_bandwidth * max(1, self.links // max(1, neighbours))

    def all_reduce(self, size: float, group: Sequence[int]) -> Transfer:
        rows = self._rows(group)
        if rows is None:
            return super().all_reduce(size, group)
        # reduce-scatter along x, all-reduce of the 1/x-th along y, all-gather along x
        along_x = self._ring(size, rows[0], 1).in_parallel(len(rows))
        return along_x + self._ring(size / self.x, [row[0] for row in rows], 2).in_parallel(self.x) + along_x

    def all_gather(self, size: float, group: Sequence[int]) -> Transfer:
        rows = self._rows(group)
        if rows is None:
            return super().all_gather(size, group)
        # gather each row's part along y, then the rows' parts along x
        return (self._ring(size / self.x, [row[0] for row in rows], 1).in_parallel(self.x)
                + self._ring(size, rows[0], 1).in_parallel(len(rows)))

    def _rows(self, group: Sequence[int]) -> list[list[int]] | None:
        """The group as whole torus rows, or None when it is not (then one ring over it)."""
        if len(group) <= self.x or len(group) % self.x or group[0] % self.x:
            return None
        return [list(group[i:i + self.x]) for i in range(0, len(group), self.x)]


class Switch(Topology):
    def __init__(self, hw: HardwareConfig):
        super().__init__(hw)
        topology = hw.system.topology
        assert isinstance(topology, SwitchTopology)
        self.switch_latency = topology.latency
        self.switch_energy = topology.energy_per_byte

    def hops(self, a: int, b: int) -> int:
        return 0 if a == b else 2

    def neighbour_bandwidth(self) -> float:
        return self.link_bandwidth * self.links  # every link goes to the switch

    def send(self, size: float, src: int, dst: int) -> Transfer:
        base = super().send(size, src, dst)
        if not base.sent_per_chip:
            return base
        return Transfer(base.time_s + self.switch_latency, size, base.energy_j + size * self.switch_energy)

    def all_to_all(self, size: float, group: Sequence[int]) -> Transfer:
        """Through the switch: each chip's (n - 1) / n of its buffer out of its links at once."""
        return self._ring(size, group, 1)

    def _ring(self, size: float, group: Sequence[int], passes: int) -> Transfer:
        n = len(group)
        if n < 2 or size <= 0:
            return NO_TRANSFER
        sent = (n - 1) / n * size  # per chip per phase, to all the others at once
        time = passes * (2 * self.alpha + self.switch_latency + sent / self.neighbour_bandwidth())
        energy = passes * n * sent * (2 * self.energy_per_byte + self.switch_energy)
        return Transfer(time, passes * sent, energy)


_TOPOLOGIES: dict[type, Callable[[HardwareConfig], Topology]] = {
    RingTopology: Ring, TorusTopology: Torus2D, SwitchTopology: Switch,
}


def topology_of(hw: HardwareConfig) -> Topology:
    return _TOPOLOGIES[type(hw.system.topology)](hw)
