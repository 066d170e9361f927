"""The silicon study's data: the measured chips (``Chip``), their files and configs, and the
names its tables use. Shared by ``silicon.py`` (the fits) and ``silicon_report.py`` (the tables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import _common as c

SILICON = c.ROOT / "experiments" / "data" / "silicon"
CORE_CSV = SILICON / "tpuv3_core.csv"
LAYER_CSV = SILICON / "gpt3_175b_layer.csv"
TPUV3 = c.HW_DIR / "tpuv3.yaml"
TPUV3_8 = c.HW_DIR / "systems" / "tpuv3_8.yaml"
TPUV4 = c.HW_DIR / "tpuv4.yaml"
SYSTEM = "TPUv3-8"  # gpt3_175b_layer.csv's rows for our config


@dataclass(frozen=True)
class Chip:
    """One measured chip: its single-op calls and config, its GPT-3 layer system, how it is fitted."""

    key: str  # prefix of its output files ("" for the TPUv3, which came first)
    label: str
    csv: Path
    config: Path
    system: Path  # the config of gpt3_175b_layer.csv's system
    system_rows: str  # that system's rows in gpt3_175b_layer.csv
    hold: tuple[str, ...] = ()  # calibration fields every fit keeps at the config's value
    fields: tuple[str, ...] = ()  # the fits table's non-dispatch columns


TPUV3_CHIP = Chip("", "TPUv3 core", CORE_CSV, TPUV3, TPUV3_8, SYSTEM, (),
                  ("hbm.efficiency", "mxu.weight_load_overlap", "vpu.pass_cycles_per_vreg", "vpu.special_cycles.exp",
                   "vpu.special_cycles.tanh", "ici.efficiency"))
A100_CHIP = Chip("a100_", "A100 80GB", SILICON / "a100_80gb.csv", c.HW_DIR / "a100_80gb.yaml",
                 c.HW_DIR / "systems" / "a100_80gb_x4.yaml", "4xA100", ("hbm.efficiency",),
                 ("sm.tensor_efficiency", "hbm.write_efficiency", "l2.efficiency", "nvlink.efficiency",
                  "collectives.protocols.ll.bandwidth_share", "collectives.protocols.ll128.base_latency",
                  "collectives.protocols.simple.base_latency"))
CHIPS = (TPUV3_CHIP, A100_CHIP)
K, SEED = 5, 16
REGIMES = ("small", "medium", "large")
ALL = "all"
# LLMCompass's 12 categories -> archsim's op names (workloads/gpt3_175b_layer_*.yaml's header).
CATEGORIES = {
    "Q_K_V": ("block.attn.q", "block.attn.k", "block.attn.v"), "Q_mul_K": ("block.attn.score",),
    "A_mul_V": ("block.attn.context_mm",), "Wo_proj": ("block.attn.o",), "W1_proj": ("block.mlp.fc1",),
    "W2_proj": ("block.mlp.fc2",), "Softmax": ("block.attn.softmax",), "LayerNorm_MHA": ("block.norm1",),
    "LayerNorm_FFN": ("block.norm2",), "GeLU": ("block.mlp.act",), "AllReduce_MHA": ("block.attn.o.all_reduce",),
    "AllReduce_FFN": ("block.mlp.fc2.all_reduce",),
}
PHASES = ("prefill", "decode")
# The models of the TPUv3 rows: column -> its label in the tables.
MODELS = {"archsim": "archsim, bundled config (in-sample)", "refit": "refit on all rows (in-sample)",
          "kfold": f"{K}-fold CV", "size_out": "leave-size-regime-out", "kind_out": "leave-kind-out",
          "roofline": "roofline"}
# The fits table's columns: the dispatch costs (us), then the other fields.
LAUNCHES = ("dispatch.call.gemm", "dispatch.call.softmax", "dispatch.call.layernorm", "dispatch.call.activation",
            "dispatch.call.all_reduce")


# The A100 on LLaMA-2-7B's ops, where nothing was measured (silicon.llama_a100).
LLAMA_TOKENS = (1, 16, 128, 1024, 4096)
# LLaMA-2-7B (hidden 4096, MLP 11008, fp16): its per-layer calls, as (label, op, dims per tokens t).
LLAMA_OPS = (("q/k/v/o projection", "gemm", lambda t: {"m": t, "k": 4096, "n": 4096}),
             ("MLP up / gate", "gemm", lambda t: {"m": t, "k": 4096, "n": 11008}),
             ("MLP down", "gemm", lambda t: {"m": t, "k": 11008, "n": 4096}),
             ("RMSNorm", "rmsnorm", lambda t: {"rows": t, "cols": 4096}),
             ("residual add", "add", lambda t: {"elements": t * 4096}))
