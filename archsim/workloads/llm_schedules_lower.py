"""Lowering the LLM decode schedules (``archsim.workloads.llm_schedules``) to phases.

Decode is a sequence of *rounds*. A speculative round drafts, then verifies in one pass of
the target over ``q`` query tokens (the last token and the k drafts, or a token tree's nodes)
against the KV cache: ``Tokens(batch, q, context + q, kv_cache=True, causal=True)``. A tree's
attention mask lies within the last q keys, where a causal kernel computes whole blocks too,
so the tree pass costs what a causal one does. The pass writes the K/V of its q tokens; the
rejected ones are rolled back by cutting the cache length (transformers' ``DynamicLayer.crop``
and LayerSkip's ``crop_past_key_values`` slice the cache: no bytes move); Medusa and EAGLE instead
gather the accepted path's entries from the cache and copy them into place
(``update_inference_inputs``), one entry read and written per emitted token, a phase of its own
(``kv compact``) repeated once per decode token.

A speculative schedule runs batch 1 (per chip): its rounds come from one sequence's mean tokens
per round, and a batch verified in lock-step would end each round with its slowest sequence.

Repeat counts: a round yields on average ``tau`` tokens (the acceptance input), so N decode
tokens take ``rounds = ceil(N / tau)`` rounds (the last round's surplus dropped). Round r
starts with ``prompt + r * tau`` cached keys; rounds are grouped into ``decode_groups`` runs,
each at its mean context rounded to a whole key (attention is linear in the context, so the
mean stands for the run up to that rounding).

Layer skipping runs ``m`` layers per token on average: each context group is two phases, of
floor(m) and ceil(m) layers, their steps split so that the mean is m (rounded to whole steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.dtypes import DType
from archsim.errors import ConfigError
from archsim.ir import ops
from archsim.ir.graph import Generation, OpGraph, Phase, Workload
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import Builder, Tokens, transformer_block
from archsim.workloads.lm import LanguageModel, resolve_model
from archsim.workloads.llm_schedules import Draft, Firp, LayerSkip, LLMSchedule, Medusa, SelfSpec
from archsim.workloads.inputs import regular_file_size
from archsim.workloads.llm_schedules_eagle import Eagle, eagle_phases, eagle_prefill
from archsim.workloads.llm_schedules_inputs import trace_file
from archsim.workloads.llm_schedules_ssd import Ssd, ssd_phases


def nearest(x: float) -> int:
    """x rounded to the nearest whole number, halves up."""
    return math.floor(x + 0.5)


class _Stack(Builder):
    """A stack of ``depth`` layers of which ``copies`` run: ops for the running ones, weights
    and caches for all (one storage in every phase)."""

    def __init__(self, *args, depth: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.depth = depth

    def weight(self, local: str, *shape: int) -> Tensor:
        return Tensor(self.name(local), tuple(shape), self.precision.weights, Role.WEIGHT, copies=self.depth)

    def constant(self, local: str, *shape: int) -> Tensor:
        return Tensor(self.name(local), tuple(shape), self.precision.weights, Role.CONSTANT, copies=self.depth)

    def cache(self, local: str, *shape: int, role: Role = Role.KV_CACHE) -> Tensor:
        return Tensor(self.name(local), tuple(shape), self.precision.kv, role, copies=self.depth)


@dataclass(frozen=True)
class Segment:
    """Layers [start, stop) of the model in one pass: on ``tokens`` (None: not run), ``run`` of
    them (None: all; layer skipping runs fewer)."""

    tokens: Tokens | None
    run: float | None = None


def stacks(model: LanguageModel, splits: tuple[int, ...]) -> list[list[tuple[str, bool, bool, int]]]:
    """Per segment (the layers between ``splits``), its stacks (name, sparse, sliding, layers), one
    per kind of layer; named as ``lm_forward`` names them when there is no split."""
    bounds = (0, *splits, model.num_hidden_layers)
    dense = set(model.dense_layers)
    kinds = [(model.num_experts is not None and i not in dense,  # as LanguageModel.layer_groups sorts them
              model.sliding_window is not None and (model.layer_types is None
                                                   or model.layer_types[i] == "sliding_attention"))
             for i in range(model.num_hidden_layers)]
    out, index = [], 0
    for a, b in zip(bounds, bounds[1:]):
        counts: dict[tuple[bool, bool], int] = {}
        for kind in kinds[a:b]:
            counts[kind] = counts.get(kind, 0) + 1
        segment = []
        for (sparse, sliding), n in counts.items():
            segment.append(("layers" if index == 0 else f"layers_{index}", sparse, sliding, n))
            index += 1
        out.append(segment)
    return out


def _shares(counts: list[int], run: float | None) -> list[int]:
    """Layers run per stack: all, or ``run`` (whole) spread over the stacks by largest remainder."""
    if run is None:
        return counts
    total = sum(counts)
    exact = [run * n / total for n in counts]
    out = [math.floor(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: out[i] - exact[i])[:nearest(run) - sum(out)]:
        out[i] += 1
    return out


def forward(model: LanguageModel, precision, splits: tuple[int, ...], segments: list[Segment], logits_rows: int,
            scope: str, tp: int = 1, ep: int = 1, prefix: str = "", graph: OpGraph | None = None):
    """One pass: embedding (of the first running segment's tokens), the segments' layers, final
    norm and LM head on ``logits_rows`` rows. A segment whose rows differ from the previous
    segment's output reads the extra hidden states as an input (LayerSkip's exit cache, FIRP's
    pseudo tokens). Names under ``prefix`` (a draft model's own weights). Returns (graph, the
    last hidden states, the output of each segment)."""
    if ep > 1 and model.num_experts is None:
        raise ValueError(f"system.parallelism.expert is {ep}, but the model has no mixture of experts to divide")
    graph = graph if graph is not None else OpGraph()
    top = Builder(graph, prefix, precision, scope=scope)
    d = model.hidden_size
    first = next(s.tokens for s in segments if s.tokens is not None)
    table = top.weight("embed.weight", model.vocab_size, d)
    ids = top.act("token_ids", first.rows, dtype=DType.INT32)
    y = top.act("embed.out", first.rows, d)
    graph.add(ops.EmbeddingLookup(top.name("embed"), (table, ids), (y,), first.rows))
    if model.position_embedding == "learned":
        positions = top.weight("pos_embed.weight", model.max_position_embeddings or first.kv_len, d)
        pos = top.act("pos_embed.rows", first.rows, d)
        graph.add(ops.EmbeddingLookup(top.name("pos_embed"), (positions, ids), (pos,), first.rows))
        y = top.binary("pos_add", "add", (y, pos), first.rows, d)
    outputs = []
    for segment, parts in zip(segments, stacks(model, splits)):
        if segment.tokens is None:
            outputs.append(None)
            continue
        tokens = segment.tokens
        if y.shape[0] != tokens.rows:
            y = Builder(graph, prefix, precision, scope=scope).act(f"{parts[0][0]}.in", tokens.rows, d)
        for (name, sparse, sliding, count), run in zip(parts, _shares([p[3] for p in parts], segment.run)):
            if run:
                stack = _Stack(graph, f"{prefix}.{name}" if prefix else name, precision, copies=run, scope=scope,
                               tp=tp, ep=ep, depth=count)
                y = transformer_block(stack, model.block(sparse, sliding), tokens, x=y)
        outputs.append(y)
    if logits_rows:
        h = top.norm("final_norm", model.block().norm, y, logits_rows, d)
        head = table if model.tie_word_embeddings else top.weight("lm_head.weight", d, model.vocab_size)
        logits = top.act("logits", logits_rows, model.vocab_size)
        graph.add(ops.Gemm(top.name("lm_head"), (h, head), (logits,), 1, logits_rows, d, model.vocab_size, False))
    return graph, y, outputs


def context_groups(first: int, rounds: int, tau: float, groups: int) -> list[tuple[int, int]]:
    """(keys at the start of the round, rounds) per run of near-equal consecutive rounds; round
    r starts with ``first + r * tau`` keys; a run stands at its mean, rounded. The last round
    is a run of its own, so the KV cache is sized at its final length (as ``kind: llm`` does)."""
    if rounds == 0:
        return []
    body = rounds - 1
    groups = min(groups, body)
    out, start = [], 0
    for i in range(groups):
        size = round((i + 1) * body / groups) - round(i * body / groups)
        out.append((nearest(first + tau * (start + (size - 1) / 2)), size))
        start += size
    return out + [(nearest(first + tau * body), 1)]


def lower_schedule(spec, schedule: LLMSchedule, paths, tp: int = 1, ep: int = 1) -> Workload:
    """The phases of a ``kind: llm`` workload under a non-vanilla decode schedule."""
    model = resolve_model(spec.model, paths)
    precision = spec.precision.precision()
    b, prompt, n = spec.batch, spec.prompt_len, spec.output_len - 1
    if schedule.SPECULATIVE and b > 1:
        raise ConfigError(f"{schedule.NAME} verifies a batch in lock-step, so a round ends with its slowest sequence; "
                          f"archsim models one sequence (batch 1 on each chip, as the authors' codes run), got {b}",
                          file=paths.source("batch"), key="batch")
    splits = _splits(schedule, model)
    phases: list[Phase] = []

    def target(name: str, segments: list[Segment], logits_rows: int) -> OpGraph:
        return forward(model, precision, splits, segments, logits_rows, name, tp, ep)[0]

    if "prefill" in spec.phases:
        tokens = Tokens(b, prompt, prompt, kv_cache=True, causal=True)
        graph = target("prefill", [Segment(tokens)] * (len(splits) + 1), b if not isinstance(schedule, Medusa)
                       else b * prompt)
        if isinstance(schedule, Medusa):  # initialize_medusa runs the heads on every prompt position
            _medusa_heads(graph, model, precision, schedule, b * prompt, "prefill")
        phases.append(Phase("prefill", graph))
    decode = "decode" in spec.phases and n > 0
    steps: tuple[str, ...] = ()
    if decode and isinstance(schedule, LayerSkip):
        phases += _layer_skip(spec, schedule, model, precision, splits, tp, ep, paths)
        steps = tuple(p.name for p in phases if p.name != "prefill")
    elif decode:
        phases += _speculative(spec, schedule, model, precision, splits, tp, ep, target, paths)
        # every phase after the first token (the draft's reading of the prompt too) gives the
        # sequences their n other tokens: TPOT is their time over n
        steps = tuple(p.name for p in phases if p.name != "prefill")
    if not phases:
        raise ValueError("no phases: list prefill and/or decode, with output_len > 1 for decode")
    first = "prefill" if "prefill" in spec.phases and spec.output_len >= 1 else None
    tokens = b * ((first is not None) + (n if decode else 0))
    return Workload(spec.name, tuple(phases), Generation(b, tokens, first, steps, n if decode else 0))


def _splits(schedule: LLMSchedule, model: LanguageModel) -> tuple[int, ...]:
    layers = model.num_hidden_layers
    cut = schedule.exit_layer if isinstance(schedule, SelfSpec) else schedule.layer if isinstance(schedule, Firp) \
        else None
    if cut is None:
        return ()
    if cut >= layers:
        key = "exit_layer" if isinstance(schedule, SelfSpec) else "layer"
        raise ValueError(f"schedule.{key} {cut} must be below the model's {layers} layers")
    return (cut,)


def _layer_skip(spec, schedule: LayerSkip, model, precision, splits, tp, ep, paths) -> list[Phase]:
    b, prompt, n = spec.batch, spec.prompt_len, spec.output_len - 1
    mean = schedule.layers_run(model.num_hidden_layers, paths)
    low = math.floor(mean)
    phases = []
    policy = schedule.policy_hidden
    for context, count in context_groups(prompt + 1, n, 1.0, spec.decode_groups):
        high_steps = nearest(count * (mean - low))
        for layers, repeat in ((low, count - high_steps), (low + 1, high_steps)):
            if repeat:  # (0 layers: the embedding and the LM head only)
                name = f"decode@{context} {layers} layers"
                tokens = Tokens(b, 1, context, kv_cache=True, causal=True)
                graph, *_ = forward(model, precision, splits, [Segment(tokens, layers)], b, name, tp, ep)
                if policy:
                    _policy(graph, model, precision, policy, b, name)
                phases.append(Phase(name, graph, repeat))
    return phases


def _policy(graph, model, precision, hidden: int, rows: int, scope: str) -> None:
    """A skip policy per layer: d x hidden, then hidden x 2 (skip or run), on every layer."""
    p = _Stack(graph, "skip_policy", precision, copies=model.num_hidden_layers, scope=scope,
               depth=model.num_hidden_layers)
    x = p.act("in", rows, model.hidden_size)
    h = p.linear("fc1", x, rows, model.hidden_size, hidden)
    p.linear("fc2", p.pointwise("act", "silu", h, rows, hidden), rows, hidden, 2)


def _medusa_heads(graph, model, precision, schedule: Medusa, rows: int, scope: str) -> None:
    """Medusa's heads on ``rows`` hidden states: per head, ``head_layers`` ResBlocks (x +
    SiLU(W x), one module repeated: ``[ResBlock(hidden)] * medusa_num_layers`` shares its
    weights) and an LM head (hidden x vocab). The heads are one op set with ``heads`` copies."""
    d, v = model.hidden_size, model.vocab_size
    heads = _Stack(graph, "medusa", precision, copies=schedule.heads, scope=scope, depth=schedule.heads)
    x = heads.act("in", rows, d)
    for i in range(schedule.head_layers):
        w = heads.weight("res.weight", d, d)
        out = heads.act(f"res{i}.out", rows, d)
        heads.add(ops.Gemm, f"res{i}", (x, w), (out,), 1, rows, d, d, False)
        x = heads.binary(f"res{i}.add", "add", (x, heads.pointwise(f"res{i}.act", "silu", out, rows, d)), rows, d)
    logits = heads.act("logits", rows, v)
    heads.add(ops.Gemm, "lm_head", (x, heads.weight("lm_head.weight", d, v)), (logits,), 1, rows, d, v, False)


def _speculative(spec, schedule, model, precision, splits, tp, ep, target, paths) -> list[Phase]:
    b, prompt, n = spec.batch, spec.prompt_len, spec.output_len - 1
    tree = schedule.token_tree()
    tau = schedule.tokens_per_round(paths)
    rounds = schedule.rounds(n, paths)
    phases: list[Phase] = []
    draft_model = _draft_model(schedule, model, paths) if isinstance(schedule, Draft) else None
    if draft_model is not None and "prefill" in spec.phases:  # the assistant's first call reads the prompt
        tokens = Tokens(b, prompt, prompt, kv_cache=True, causal=True)
        graph, *_ = forward(draft_model, precision, (), [Segment(tokens)], b, "draft prefill", tp, ep, prefix="draft")
        phases.append(Phase("draft prefill", graph))
    if isinstance(schedule, Eagle) and "prefill" in spec.phases:  # the head reads the prompt once
        phases.append(eagle_prefill(spec, model, precision, tp, ep))
    q = tree.size
    for context, count in context_groups(prompt, rounds, tau, spec.decode_groups):
        tag = f"@{context}"
        if isinstance(schedule, Draft):
            # step i feeds the nodes at depth i (a chain: one token) against the cache so far; a
            # chain's k steps are one phase at their mean context (context + i + 1, i = 0..k-1)
            widths = tree.widths[:-1]
            if all(w == 1 for w in widths):
                runs = [(f"draft{tag}", 1, nearest(context + (len(widths) + 1) / 2), count * len(widths))]
            else:
                done = [sum(widths[:i + 1]) for i in range(len(widths))]
                runs = [(f"draft{tag} d{i}", w, context + done[i], count) for i, w in enumerate(widths)]
            for name, width, keys, repeat in runs:
                tokens = Tokens(b, width, keys, kv_cache=True, causal=True)
                graph, *_ = forward(draft_model, precision, (), [Segment(tokens)], b * width, name, tp, ep,
                                    prefix="draft")
                phases.append(Phase(name, graph, repeat))
            verify = [Segment(Tokens(b, q, context + q, kv_cache=True, causal=True))]
            phases.append(Phase(f"verify{tag}", target(f"verify{tag}", verify, b * q), count))
        elif isinstance(schedule, SelfSpec):
            k = schedule.k
            mean = context + (k + 1) / 2  # draft step i (0..k-1) attends to context + i + 1 keys
            name = f"draft{tag}"
            phases.append(Phase(name, target(name, [Segment(Tokens(b, 1, nearest(mean), kv_cache=True, causal=True)),
                                                    Segment(None)], b), count * k))
            # forward_remainder: the early layers on the last draft only, the rest on k + 1 tokens
            verify = [Segment(Tokens(b, 1, context + k + 1, kv_cache=True, causal=True)),
                      Segment(Tokens(b, k + 1, context + k + 1, kv_cache=True, causal=True))]
            phases.append(Phase(f"verify{tag}", target(f"verify{tag}", verify, b * (k + 1)), count))
        elif isinstance(schedule, Eagle):
            phases += eagle_phases(spec, schedule, model, precision, context, count, tau, target, tp, ep)
        elif isinstance(schedule, Ssd):
            phases += ssd_phases(spec, schedule, model, precision, context, count, target, tp, ep)
        elif isinstance(schedule, Medusa):
            name = f"verify{tag}"
            graph = target(name, [Segment(Tokens(b, q, context + q, kv_cache=True, causal=True))], b * q)
            _medusa_heads(graph, model, precision, schedule, b * q, name)
            phases.append(Phase(name, graph, count))
        elif isinstance(schedule, Firp):
            k = schedule.k
            name = f"verify{tag}"
            early = Tokens(b, k + 1, context + k + 1, kv_cache=True, causal=True)
            late = Tokens(b, 2 * k + 1, context + 2 * k + 1, kv_cache=True, causal=True)
            graph, *_ = forward(model, precision, splits, [Segment(early), Segment(late)], b * (2 * k + 1),
                                     name, tp, ep)
            p = Builder(graph, "firp", precision, scope=name)
            predicted = p.act("pseudo", b, k * model.hidden_size)
            w = p.weight("predict.weight", model.hidden_size, k * model.hidden_size)
            p.add(ops.Gemm, "predict", (p.act("last_hidden", b, model.hidden_size), w), (predicted,), 1, b,
                  model.hidden_size, k * model.hidden_size, False)
            phases.append(Phase(name, graph, count))
    if isinstance(schedule, (Medusa, Eagle)):  # both copy the accepted path's K/V into place
        phases.append(Phase("kv compact", _kv_compact(model, precision, b, prompt + n + q, tp), n))
    return phases


def _kv_compact(model: LanguageModel, precision, b: int, kept: int, tp: int) -> OpGraph:
    """Medusa's ``update_inference_inputs``: the accepted path's K/V entries copied into place
    (``tgt = past_key_values_data[..., select_indices, :]``, a gather, then ``dst.copy_(tgt)``),
    one entry per layer (K and V) for each emitted token: read from the cache, written back."""
    graph = OpGraph()
    for parts in stacks(model, ()):
        for name, sparse, sliding, count in parts:
            shape = model.block(sparse, sliding)
            if shape.mla is not None:
                raise ValueError("medusa's cache compaction is modelled for multi-head attention, not latent attention")
            kvh = max(1, shape.kv_heads // tp)
            keys = min(kept, shape.window) if shape.window is not None else kept  # a rolling buffer
            s = _Stack(graph, f"{name}.attn", precision, copies=count, scope="kv compact", depth=count)
            for part in ("k", "v"):
                cache = s.cache(f"{part}_cache", b, kvh, keys, shape.dh)
                entry = s.act(f"{part}_accepted", b, kvh, 1, shape.dh)
                s.add(ops.EmbeddingLookup, f"{part}_gather", (cache,), (entry,), b * kvh)
                s.add(ops.CacheWrite, f"{part}_compact", (entry,), (cache,))
    return graph


def _draft_model(schedule: Draft, target: LanguageModel, paths) -> LanguageModel:
    """The draft model, resolved as the target is (a path relative to the workload file, a
    mapping, ``from:`` plus fields), its errors naming ``schedule.model``; its vocabulary must be
    the target's."""
    draft_paths = _DraftPaths(paths)
    named = paths.source("schedule.model")
    value = schedule.model
    given = value if isinstance(value, str) else value.get("from")
    if isinstance(given, str):  # a missing file or a directory: the workload's error, at its key
        key = "model" if isinstance(value, str) else "model.from"
        path = draft_paths(key, given)
        try:
            regular_file_size(path, "a config.json or YAML model config")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}", file=named, key=f"schedule.{key}") from None
    try:
        draft = resolve_model(value, draft_paths)
    except ConfigError as exc:  # resolve_model names the target's keys (model, model.<field>): these are schedule.model's
        lines = []
        for line in str(exc).splitlines():
            if line.startswith(f"{named}: model"):
                line = f"{named}: schedule.{line[len(named) + 2:]}"
            lines.append(line.replace(f"named by {named}, key model", f"named by {named}, key schedule.model"))
        raise ConfigError("\n".join(lines)) from None
    if draft.vocab_size != target.vocab_size:
        raise ConfigError(f"the draft model has a vocabulary of {draft.vocab_size} tokens, the target {target.vocab_size}: "
                          "a draft proposes the target's tokens (transformers' assisted decoding: one tokenizer; "
                          "drafting across tokenizers is not modelled)", file=named, key="schedule.model.vocab_size")
    return draft


class _DraftPaths:
    """Paths of the draft model, read by ``resolve_model`` at the target's keys (``model``,
    ``model.from``), which are ``schedule.model...``: relative to the file that names them,
    falling back to the current folder and workloads/ (``trace_file``)."""

    def __init__(self, paths):
        self._paths = paths

    def source(self, key: str) -> str:
        return self._paths.source(f"schedule.{key}")

    def __call__(self, key: str, value: str):
        return trace_file(value, self._paths, f"schedule.{key}")
