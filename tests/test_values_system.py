"""Multi-chip values pinned against hand calculations (issue 15): point-to-point sends,
broadcasts and collectives on a ring, a 2-D torus and a switch; the pipeline schedule (trip,
period with link sends, repeats with feedback, overlapped collectives); a pipelined system's
latency, link energy and static energy; a tensor-parallel all-reduce op; data parallelism.

TPUv4i links: 2 per chip, 100 GB/s per direction, 1 us per hop, 5 pJ/bit (40 pJ/B). A chip
splits its links evenly among its distinct neighbours.
"""

from __future__ import annotations

import pytest

from archsim.api import SystemSimulator, gemm_workload, load_hardware
from archsim.config.loader import parse_overrides
from archsim.dtypes import DType
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import AllReduce, Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.sim.engine import Simulator
from archsim.system.schedule import StageTime, phase_schedule
from archsim.system.topology import topology_of
from tests.conftest import TPUV4I_PLAIN as TPUV4I

ALPHA, B, E = 1e-6, 100e9, 40e-12  # link latency, bandwidth, energy per byte
# TPUv4i's static power by hand (tpuv4i.yaml leakage; test_values_energy): 0.0716 W/mm^2 over
# the die (MXUs 53.051392 mm^2, VPU 10, VMEM 14, CMEM 112, ICI 10, periphery 150) + 5 W
MXU_W = 0.0716 * 53.051392
STATIC_W = MXU_W + 0.0716 * (10 + 14 + 112 + 10 + 150) + 5.0
REL = 1e-12
S = 6e6  # bytes


def system(chips, *sets):
    return load_hardware(TPUV4I, parse_overrides([f"system.chips={chips}", *sets]))


def ring(chips, *sets):
    return topology_of(system(chips, f"system.parallelism.tensor={chips}", *sets))


def close(transfer, time_s, sent, energy_j):
    assert transfer.time_s == pytest.approx(time_s, rel=REL)
    assert transfer.sent_per_chip == pytest.approx(sent, rel=REL)
    assert transfer.energy_j == pytest.approx(energy_j, rel=REL)


# -- ring ----------------------------------------------------------------------------------

def test_ring_neighbour_bandwidth_splits_the_links():
    assert ring(4).neighbour_bandwidth() == B  # 2 links, 2 neighbours: one link each
    assert ring(2).neighbour_bandwidth() == 2 * B  # 2 chips: one neighbour, both links
    assert ring(4, "ici.links=4").neighbour_bandwidth() == 2 * B
    assert ring(8, "ici.links=3").neighbour_bandwidth() == B  # 3 // 2


def test_ring_sends_and_broadcasts():
    four = ring(4)
    # 0 -> 2 on a 4-ring: 2 hops, cut-through: 2 latencies + the bytes once over one link;
    # each byte crosses 2 links
    close(four.send(S, 0, 2), 2 * ALPHA + S / B, S, 2 * S * E)
    close(four.send(S, 3, 0), ALPHA + S / B, S, S * E)  # neighbours around the ring
    close(ring(2).send(S, 0, 1), ALPHA + S / (2 * B), S, S * E)
    # broadcast from chip 1 along the chain 1 -> 2 -> 3, pipelined: 2 hops of latency, the
    # bytes once at the neighbour bandwidth, each byte over 2 links
    close(four.broadcast(S, [1, 2, 3]), 2 * ALPHA + S / B, S, 2 * S * E)
    close(four.send(S, 1, 1), 0.0, 0.0, 0.0)
    close(four.all_reduce(0.0, range(4)), 0.0, 0.0, 0.0)


def test_ring_all_reduce_and_all_gather():
    four = ring(4)
    # 2 (n - 1) = 6 steps of S/4 between neighbours, half each way round (the links to both
    # neighbours at once): S/8 over one link a step; 4 chips x 6 x S/4 byte-hops
    close(four.all_reduce(S, range(4)), 6 * (ALPHA + S / 8 / B), 6 * S / 4, 6 * S / 4 * 4 * E)
    close(four.all_gather(S, range(4)), 3 * (ALPHA + S / 8 / B), 3 * S / 4, 3 * S / 4 * 4 * E)
    # one way round: S/4 over the one link to the next chip a step
    one_way = ring(4, "system.collective_algorithm=ring")
    close(one_way.all_reduce(S, range(4)), 6 * (ALPHA + S / 4 / B), 6 * S / 4, 6 * S / 4 * 4 * E)
    # a pair: 2 steps of S/2 over both links
    close(ring(2).all_reduce(S, range(2)), 2 * (ALPHA + S / 2 / (2 * B)), S, 2 * S / 2 * 2 * E)


def test_a_group_smaller_than_the_ring_runs_over_a_line():
    eight = ring(8)
    # chips 0-3 of an 8-ring: the ring's closing edge 3 -> 0 is 3 hops: every step waits for
    # it (3 latencies), and each step's S/4 crosses 1 + 1 + 1 + 3 = 6 links
    # One way round already keeps both directions of the line's links busy (the closing edge
    # runs back along them): the bidirectional ring gains nothing, S/4 over one link a step
    close(eight.all_reduce(S, range(4)), 6 * (3 * ALPHA + S / 4 / B), 6 * S / 4, 6 * S / 4 * 6 * E)
    close(eight.all_gather(S, range(4)), 3 * (3 * ALPHA + S / 4 / B), 3 * S / 4, 3 * S / 4 * 6 * E)
    one_way = ring(8, "system.collective_algorithm=ring")
    assert one_way.all_reduce(S, range(4)).time_s == eight.all_reduce(S, range(4)).time_s


# -- 2-D torus -----------------------------------------------------------------------------

def torus(*sets):
    return topology_of(system(8, "system.topology={kind: torus2d, shape: [4, 2]}", "system.parallelism.tensor=8", *sets))


def test_torus_neighbour_bandwidth():
    # 4 along x (2 neighbours) and 2 along y (1): 3 neighbours
    assert torus("ici.links=3").neighbour_bandwidth() == B
    assert torus("ici.links=6").neighbour_bandwidth() == 2 * B
    assert torus("ici.links=3").hops(0, 7) == 1 + 1  # (0, 0) -> (3, 1): wraps along x


def test_torus_all_reduce_over_whole_rows():
    t = torus("ici.links=3")
    # reduce-scatter along each row of 4 (3 steps of S/4), all-reduce of each quarter along
    # the columns of 2 (2 steps of S/8), all-gather along the rows (3 steps of S/4); a row's
    # ring sends half each way (S/8 a link), a column of 2 has one neighbour
    time = 2 * 3 * (ALPHA + S / 8 / B) + 2 * (ALPHA + S / 8 / B)
    # byte-hops: rows: 2 rows x 3 steps x S/4 x 4 links, twice; columns: 4 x 2 steps x S/8 x 2
    energy = (2 * 2 * 3 * S / 4 * 4 + 4 * 2 * S / 8 * 2) * E
    close(t.all_reduce(S, range(8)), time, 2 * 3 * S / 4 + 2 * S / 8, energy)
    assert energy == pytest.approx(2 * 7 / 8 * S * 8 * E)  # 2 (n-1)/n S from each of 8 chips, 1 hop
    # all-gather: the quarters along y (1 step of S/8), then the rows (3 steps of S/4)
    close(t.all_gather(S, range(8)), (ALPHA + S / 8 / B) + 3 * (ALPHA + S / 8 / B), S / 8 + 3 * S / 4,
          (4 * S / 8 * 2 + 2 * 3 * S / 4 * 4) * E)
    # a group within one row is a ring of 4 (wrapping: every edge one hop)
    close(t.all_reduce(S, range(4)), 6 * (ALPHA + S / 8 / B), 6 * S / 4, 6 * S / 4 * 4 * E)


# -- switch --------------------------------------------------------------------------------

def test_switch_sends_and_collectives():
    sw = topology_of(system(4, "system.topology={kind: switch, latency: 300 ns, energy_per_byte: 1 pJ/B}",
                            "system.parallelism.tensor=4"))
    inject = 2 * B  # both links go to the switch
    assert sw.neighbour_bandwidth() == inject
    # chip -> switch -> chip: 2 link latencies and the switch's, the bytes once; 2 link
    # crossings and one switching per byte
    close(sw.send(S, 0, 3), 2 * ALPHA + 300e-9 + S / inject, S, S * (2 * E + 1e-12))
    # all-gather: every chip sends 3/4 S at once through its links (one phase)
    close(sw.all_gather(S, range(4)), 2 * ALPHA + 300e-9 + 0.75 * S / inject, 0.75 * S,
          4 * 0.75 * S * (2 * E + 1e-12))
    # all-reduce: reduce-scatter and all-gather phases
    close(sw.all_reduce(S, range(4)), 2 * (2 * ALPHA + 300e-9 + 0.75 * S / inject), 1.5 * S,
          2 * 4 * 0.75 * S * (2 * E + 1e-12))


# -- the pipeline schedule -----------------------------------------------------------------

def test_schedule_period_includes_link_sends():
    # stages of 1 and 2, a 1.5 send between them, 4 micro-batches: L = 1 + 1.5 + 2 = 4.5,
    # P = max(1, 2, 1.5) = 2: one execution L + 3 P = 10.5
    s = phase_schedule([StageTime(1.0, 0.0), StageTime(2.0, 0.0)], (1.5,), 0.0, 4, 1)
    assert (s.trip_s, s.period_s, s.total_s) == (4.5, 2.0, 10.5)
    assert s.busy_s == (4.0, 8.0)
    # the link is the bottleneck: P = 3, L = 5: 5 + 3 x 3 = 14
    s = phase_schedule([StageTime(1.0, 0.0), StageTime(1.0, 0.0)], (3.0,), 0.0, 4, 1)
    assert (s.trip_s, s.period_s, s.total_s) == (5.0, 3.0, 14.0)


def test_schedule_repeats_wait_for_feedback():
    # L = 1 + 0.5 + 1 = 2.5, feedback 2, P = 1, 2 micro-batches: executions follow every
    # max(L + f, m P) = 4.5; three of them: 3 x 4.5, the last ending L + (m-1) P - step early
    s = phase_schedule([StageTime(1.0, 0.0), StageTime(1.0, 0.0)], (0.5,), 2.0, 2, 3)
    assert (s.step_s, s.total_s) == (4.5, 3 * 4.5 + (2.5 + 1.0 - 4.5))
    # many micro-batches: the stages bound the step (m P = 8 > L + f = 4.5)
    s = phase_schedule([StageTime(1.0, 0.0), StageTime(1.0, 0.0)], (0.5,), 2.0, 8, 3)
    assert (s.step_s, s.total_s) == (8.0, 3 * 8.0 + (2.5 + 7.0 - 8.0))


def test_collectives_overlap_compute_only_with_micro_batches():
    assert StageTime(3.0, 1.0).occupancy(1) == 3.0
    assert StageTime(3.0, 1.0).occupancy(2) == 2.0  # compute 2 hides the collective 1
    assert StageTime(4.0, 3.0).occupancy(2) == 3.0  # the collective 3 hides compute 1
    s = phase_schedule([StageTime(4.0, 3.0)], (), 0.0, 2, 1)
    assert (s.trip_s, s.period_s, s.total_s) == (4.0, 3.0, 7.0)


# -- a pipelined system end to end ---------------------------------------------------------

H = 64 * 1024  # bytes of the activation between the two GEMMs (int8)


def two_gemms(repeat):
    x, h, y = (Tensor(n, (64, 1024), DType.INT8) for n in ("x", "h", "y"))
    w1, w2 = (Tensor(n, (1024, 1024), DType.INT8, Role.WEIGHT) for n in ("W1", "W2"))
    graph = OpGraph([Gemm("g1", (x, w1), (h,), 1, 64, 1024, 1024, False),
                     Gemm("g2", (h, w2), (y,), 1, 64, 1024, 1024, False)])
    return Workload("two", (Phase("p", graph, repeat),))


def stage_times(result):
    """Per stage, one micro-batch's time through phase p, and the CMEM preload (if any)."""
    once = [sum(c.latency_s * c.copies for c in st.ops if c.phase == "p") for st in result.stages]
    preload = max(sum(c.latency_s for c in st.ops if c.phase == "preload") for st in result.stages)
    return once, preload


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_two_stage_pipeline_latency_and_link_energy(micro_batches):
    m, repeat = micro_batches, 3
    hw = system(2, "system.parallelism.pipeline=2", f"system.parallelism.micro_batches={m}",
                "ici.link_bandwidth=1 GB/s")
    r = SystemSimulator(hw).run(two_gemms(repeat))
    assert r.feasible, r.reason
    # one op per stage: g1 on chip 0, g2 on chip 1; h crosses the cut, x is fed back
    assert [[c.name for c in st.ops if c.phase == "p"] for st in r.stages] == [["g1"], ["g2"]]
    assert r.split.sends["p"] == (H,) and r.split.feedback["p"] == H
    # 2 chips: one neighbour, both links: 2 GB/s; 1 hop
    send = ALPHA + H / 2e9  # 33.8 us, far longer than either GEMM (a few us)
    (boundary,) = r.boundaries["p"]
    assert boundary.time_s == pytest.approx(send, rel=REL)
    assert r.feedback["p"].time_s == pytest.approx(send, rel=REL)
    (t0, t1), preload = stage_times(r)
    trip = t0 + send + t1
    period = max(t0, t1, send)
    assert period == send
    step = max(trip + send, m * period)  # feedback: x back from chip 1 to chip 0
    total = repeat * step + (trip + (m - 1) * period - step)
    assert r.latency_s == pytest.approx(preload + total, rel=REL)
    if m == 1:  # each execution waits for the previous one's result: 3 L + 2 feedbacks
        assert total == pytest.approx(3 * trip + 2 * send, rel=REL)
    else:  # the link sets the pace: 3 x 4 sends, less the one the last execution saves, + L
        assert total == pytest.approx(11 * send + trip, rel=REL)
    # links: h sent 3 x m times, x fed back (3 - 1) x m times, one hop each
    sends = repeat * m + (repeat - 1) * m
    assert r.ici_bytes == sends * H
    assert r.energy.ici == pytest.approx(sends * H * E, rel=REL)
    assert r.energy.static == pytest.approx(2 * STATIC_W * r.latency_s, rel=REL)
    assert r.macs == repeat * m * 2 * 64 * 1024 * 1024
    # the busiest chip's links: chip 0 sends h 3 m times over 2 links for the whole run
    assert r.link_utilization == pytest.approx(repeat * m * H / (2 * 1e9 * r.latency_s), rel=REL)


def test_stages_preload_in_parallel():
    # 20 repeats: each stage keeps its own weight in CMEM (1 MiB, read 20 times); the stages
    # load them side by side: the system waits for the slower, not for both
    hw = system(2, "system.parallelism.pipeline=2")
    r = SystemSimulator(hw).run(two_gemms(20))
    preloads = [sum(c.latency_s for c in st.ops if c.phase == "preload") for st in r.stages]
    assert all(t == pytest.approx(555e-9 + 2**20 / 614e9, rel=REL) for t in preloads)
    (t0, t1), _ = stage_times(r)
    send = ALPHA + H / (2 * B)
    total = 20 * (t0 + t1 + 2 * send) - send  # one micro-batch: 20 trips and 19 feedbacks
    assert r.latency_s == pytest.approx(max(preloads) + total, rel=REL)


def test_an_activation_crosses_every_cut_to_its_reader():
    # g1, g2 and a residual add on 3 stages: x, read by the add on stage 2, crosses both cuts
    from archsim.ir.ops import Elementwise

    x, h1, h2, y = (Tensor(n, (64, 1024), DType.INT8) for n in ("x", "h1", "h2", "y"))
    w1, w2 = (Tensor(n, (1024, 1024), DType.INT8, Role.WEIGHT) for n in ("W1", "W2"))
    graph = OpGraph([Gemm("g1", (x, w1), (h1,), 1, 64, 1024, 1024, False),
                     Gemm("g2", (h1, w2), (h2,), 1, 64, 1024, 1024, False),
                     Elementwise("add", (h2, x), (y,), 64, 1024)])
    r = SystemSimulator(system(3, "system.parallelism.pipeline=3")).run(Workload("r", (Phase("p", graph),)))
    assert [[c.name for c in st.ops] for st in r.stages] == [["g1"], ["g2"], ["add"]]
    assert r.split.sends["p"] == (2 * H, 2 * H)  # h1 + x, then h2 + x
    # 3 chips on a ring: 2 neighbours, one link each; each cut one hop
    assert [b.time_s for b in r.boundaries["p"]] == [pytest.approx(ALPHA + 2 * H / B, rel=REL)] * 2


def test_data_parallel_pipelines_send_per_replica():
    # 2 replicas of a 2-stage pipeline (4 chips): each replica sends h 2 x 3 times and
    # feeds x back 2 x 2 times
    hw = system(4, "system.parallelism.pipeline=2", "system.parallelism.data=2", "system.parallelism.micro_batches=2")
    r = SystemSimulator(hw).run(two_gemms(3))
    assert r.ici_bytes == 2 * (3 * 2 + 2 * 2) * H
    assert r.energy.ici == pytest.approx(2 * (3 * 2 + 2 * 2) * H * E, rel=REL)


def test_boundary_between_tensor_parallel_stages():
    # 4 chips on a ring: stage 0 = chips 0, 1; stage 1 = chips 2, 3. The stage's last chip (1)
    # sends to the next stage's first (2), one hop; chip 2 broadcasts to chip 3, one hop
    hw = system(4, "system.parallelism.pipeline=2", "system.parallelism.tensor=2")
    r = SystemSimulator(hw).run(two_gemms(1))
    (boundary,) = r.boundaries["p"]
    assert boundary.send.time_s == pytest.approx(ALPHA + H / B, rel=REL)
    assert boundary.share.time_s == pytest.approx(ALPHA + H / B, rel=REL)
    assert boundary.energy_j == pytest.approx(2 * H * E, rel=REL)
    # chip 3 (the last stage's last chip) feeds x back to chip 0, one hop around the ring
    assert r.feedback["p"].time_s == pytest.approx(ALPHA + H / B, rel=REL)


def test_data_parallel_replicas_double_the_work_and_the_static_power():
    hw = system(2, "system.parallelism.data=2", "mxu.count=1")
    r = SystemSimulator(hw).run(gemm_workload(64, 256, 512))
    one = Simulator(load_hardware(TPUV4I, ["mxu.count=1"])).run(gemm_workload(64, 256, 512))
    assert r.latency_s == pytest.approx(one.latency_s, rel=REL)  # the replicas run side by side
    # per chip: 64 x 256 x 512 MACs at 2.598 pJ x 0.11/0.30; 128 KiB from HBM (3.9 pJ/bit)
    assert r.macs == 2 * 64 * 256 * 512
    # and the weight tile loaded into the array once, 256 x 512 bytes at 2.90 pJ/B x 0.11/0.30
    assert r.energy.mxu == pytest.approx(2 * (64 * 256 * 512 * 2.598e-12 + 256 * 512 * 2.90e-12) * 0.11 / 0.30, rel=REL)
    assert r.traffic.hbm_read == 2 * 256 * 512
    assert r.energy.hbm == pytest.approx(2 * 256 * 512 * 31.2e-12, rel=REL)
    # each chip's die has one MXU of TPUv4i's four: it leaks 3/4 of the MXUs' share less
    assert r.energy.static == pytest.approx(2 * (STATIC_W - MXU_W * 3 / 4) * r.latency_s, rel=REL)
    assert r.ici_bytes == 0


def test_tensor_parallel_all_reduce_op():
    # 4 chips on a ring, an all-reduce of a 64 x 1024 bf16 buffer (128 KiB) in CMEM
    hw = system(4, "system.parallelism.tensor=4")
    x, y = Tensor("x", (64, 1024), DType.BF16), Tensor("y", (64, 1024), DType.BF16)
    w = Workload("ar", (Phase("p", OpGraph([AllReduce("ar", (x,), (y,), group=4)])),))
    (op,) = Simulator(hw).run(w).ops
    size = 64 * 1024 * 2
    transfer = 6 * (ALPHA + size / 8 / B)  # 6.98 us: the bidirectional ring all-reduce
    # the chip reads x from CMEM and writes y (121 ns), and adds 3/4 of the elements it
    # receives: 49152 ALU ops / 2048 a cycle = 24 cycles: both hidden under the transfer
    assert op.latency_s == pytest.approx(transfer, rel=REL)
    assert op.memory_s == pytest.approx(2 * size / 2.151e12, rel=REL)
    assert op.compute_cycles == 24 and op.vector_ops == 49152
    assert op.ici_bytes == pytest.approx(6 * size / 4, rel=REL)
    # this chip's share of the group's link energy: 6 steps x S/4 x 4 links x 40 pJ/B / 4
    assert op.energy.ici == pytest.approx(6 * size / 4 * 4 * E / 4, rel=REL)
    assert op.energy.vpu == pytest.approx(49152 * 0.845e-12, rel=REL)
    assert op.energy.cmem == pytest.approx(2 * size * 3.5e-12, rel=REL)
    assert op.energy.static == pytest.approx(STATIC_W * transfer, rel=REL)
    assert op.bottleneck == "ici"
    # slow memories make the chip's own traffic the bound (wherever x and y live)
    (slow,) = Simulator(system(4, "system.parallelism.tensor=4", "cmem.bandwidth=20 GB/s", "hbm.bandwidth=20 GB/s")).run(w).ops
    assert slow.latency_s == pytest.approx(2 * size / 20e9, rel=REL)
