"""Collectives among the GPUs of one node as NCCL runs them: each (algorithm, protocol) pair has
a latency and a bandwidth, and the fastest for the size is used, as NCCL's tuner chooses.

Following NCCL's own model (``NVIDIA/nccl src/graph/tuning.cc``, restated in
``docs/sources/gpu.md`` [NCCL]), for ``n`` GPUs and a buffer of ``bytes``:

- steps: an all-reduce takes ``2 (n - 1)``, an all-gather ``n - 1``;
- bus bandwidth: the GPU's NVLink bandwidth one way (``links x link_bandwidth x efficiency``)
  times the protocol's share (LL: half of each 8-byte line is a flag; LL128: 120 of 128 bytes),
  capped by the protocol's ``max_bus_bandwidth``;
- ring: algorithm bandwidth = bus x ``n / steps``; latency = base + steps x hop latency;
- tree (all-reduce only): algorithm bandwidth = bus x ``tree_bandwidth_share``; latency = base +
  ``2 (n - 1)`` x hop latency (up and down a chain within the node);
- time = latency + bytes / algorithm bandwidth.

Each GPU sends ``steps / n x bytes`` over its links (the ring's traffic; the tree's is alike).
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.config.gpu import GpuConfig


@dataclass(frozen=True)
class CollectiveTime:
    algorithm: str
    protocol: str
    latency_s: float
    bandwidth: float  # algorithm bandwidth, bytes/s
    time_s: float
    sent_per_gpu: float


def collective_time(hw: GpuConfig, kind: str, size: float, n: int) -> CollectiveTime:
    """The fastest (algorithm, protocol) for a ``kind`` (``all_reduce`` or ``all_gather``) of a
    ``size``-byte result over ``n`` GPUs; an ``all_to_all`` of a ``size``-byte buffer per GPU is
    NCCL's grouped point-to-point sends, all at once: a protocol's base latency plus the
    (n - 1) / n of the buffer leaving each GPU at its bus bandwidth."""
    steps = 2 * (n - 1) if kind == "all_reduce" else n - 1
    raw = hw.nvlink.links * hw.nvlink.achievable_bandwidth
    cfg = hw.collectives
    best = None
    if kind == "all_to_all":
        for protocol, p in cfg.protocols.items():
            bus = raw * p.bandwidth_share if p.max_bus_bandwidth is None else min(raw * p.bandwidth_share,
                                                                                  p.max_bus_bandwidth)
            sent = (n - 1) / n * size
            time = p.base_latency + sent / bus
            if best is None or time < best.time_s:
                best = CollectiveTime("p2p", protocol, p.base_latency, bus, time, sent)
        return best
    for algorithm in cfg.algorithms:
        if algorithm == "tree" and kind != "all_reduce":
            continue  # NCCL's tree implements all-reduce only
        for protocol, p in cfg.protocols.items():
            bus = raw * p.bandwidth_share
            if p.max_bus_bandwidth is not None:
                bus = min(bus, p.max_bus_bandwidth)
            if algorithm == "ring":
                bandwidth, latency = bus * n / steps, p.base_latency + steps * p.hop_latency
            else:
                bandwidth, latency = bus * cfg.tree_bandwidth_share, p.base_latency + 2 * (n - 1) * p.hop_latency
            time = latency + size / bandwidth
            if best is None or time < best.time_s:
                best = CollectiveTime(algorithm, protocol, latency, bandwidth, time, steps / n * size)
    if best is None:
        raise ValueError(f"no collective algorithm of {hw.name} implements {kind}")
    return best
