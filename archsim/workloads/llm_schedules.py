"""Decode schedules for autoregressive LLMs: vanilla decoding, speculation and layer skipping.

A schedule is data, as the DiT cache schedules are (``archsim.workloads.schedules``): a
registered class with validated parameters, written ``NAME[:key=value,...]`` on the command
line or as a mapping under the ``schedule`` key of a ``kind: llm`` workload. The schedules
(docs/sources/speculative.md, one section each, citing the authors' code):

- ``vanilla``: one decode step per token (the ``kind: llm`` lowering as it is).
- ``draft``: draft-and-verify with a separate draft model (Leviathan et al. 2023, Chen et al.
  2023; transformers' assisted decoding): ``k`` sequential draft steps, then the target's one
  pass over the last token and the drafts; optionally a token ``tree`` (SpecInfer-style).
- ``self_spec``: LayerSkip's self-speculation, drafting with the first ``exit_layer`` layers.
- ``medusa``: Medusa heads on the last hidden state and a token tree verified in one pass.
- ``ssd``: self-speculation drafting with some attention and MLP sub-layers skipped (Draft &
  Verify; ``archsim.workloads.llm_schedules_ssd``).
- ``eagle``: EAGLE-2's feature-level draft head and dynamic draft tree
  (``archsim.workloads.llm_schedules_eagle``).
- ``firp``: FIRP's pseudo hidden states predicted at an intermediate layer.
- ``layer_skip``: dynamic layer skipping (DASH-style): a share of the layers per token.

What a speculative schedule accepts is an input (``acceptance``): a constant rate, a
per-position curve, or a recorded CSV of accepted lengths; ``Acceptance.probabilities`` turns
it into the distribution of drafts accepted per verification, whose mean plus one is the
expected tokens per verification (``archsim.workloads.llm_schedules_inputs``: acceptance, token
trees, skip traces). The lowering is ``archsim.workloads.llm_schedules_lower``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from archsim.config.fields import Count, Fraction, NonNegativeCount, Strict
from archsim.config.yamlio import read_yaml_text
from archsim.errors import ConfigError, FieldError
from archsim.workloads.llm_schedules_inputs import (MEDUSA_TOPK, TREES, Acceptance, AcceptanceValue, Tree,
                                                   check_acceptance, check_tree, not_a_bool, read_named,
                                                   read_skip_trace, trace_file)


# -- the schedules ------------------------------------------------------------------------------

class LLMSchedule(Strict):
    NAME: ClassVar[str]
    SPECULATIVE: ClassVar[bool] = False

    def token_tree(self) -> Tree | None:
        """The drafted tokens of one verification (speculative schedules)."""
        return None

    def acceptance_model(self, paths=None) -> Acceptance | None:
        """The acceptance input; ``paths`` (the workload's ``PathResolver``) finds a trace
        relative to the workload file and names that file in the trace's errors."""
        acceptance = getattr(self, "acceptance", None)
        return None if acceptance is None else Acceptance(acceptance, paths)

    def tokens_per_round(self, paths=None) -> float:
        """Expected tokens per verification (1 for non-speculative schedules)."""
        tree, acceptance = self.token_tree(), self.acceptance_model(paths)
        return 1.0 if tree is None or acceptance is None else acceptance.tokens_per_round(tree.depth)

    def rounds(self, tokens: int, paths=None) -> int:
        """Verifications to produce ``tokens`` decode tokens per sequence: tokens / expected tokens
        per verification, rounded up (the last round's surplus tokens are dropped)."""
        return math.ceil(round(tokens / self.tokens_per_round(paths), 9)) if tokens else 0


_SCHEDULES: dict[str, type[LLMSchedule]] = {}


def register(cls: type[LLMSchedule]) -> type[LLMSchedule]:
    _SCHEDULES[cls.NAME] = cls
    return cls


# The schedules registered by their own modules when load_schedule_modules imports them, by name
# (tests/test_startup.py checks this list against them): listing the schedules loads neither.
LOADED_ON_USE = ("eagle", "ssd")


def schedule_names() -> list[str]:
    return sorted({*_SCHEDULES, *LOADED_ON_USE})


@register
class Vanilla(LLMSchedule):
    """One decode step per output token: the ``kind: llm`` lowering as it is."""

    NAME = "vanilla"


class _Speculative(LLMSchedule):
    SPECULATIVE = True
    acceptance: AcceptanceValue = Field(
        default=0.6, description="a constant acceptance rate, a per-position curve (a rate per draft) or a CSV "
        "trace of accepted lengths, relative to the workload file (default 0.6: an ASSUMPTION, "
        "docs/sources/speculative.md#acceptance)")

    @field_validator("acceptance", mode="before")
    @classmethod
    def _numbers(cls, value):
        return not_a_bool(value)

    @field_validator("acceptance")
    @classmethod
    def _rates(cls, value: AcceptanceValue) -> AcceptanceValue:
        return check_acceptance(value)

    @model_validator(mode="after")
    def _inputs(self) -> "_Speculative":
        self._check_inputs()  # the schedule's own checks first: the tree must be valid to have a depth
        depth = self.token_tree().depth
        if isinstance(self.acceptance, list) and len(self.acceptance) != depth:
            raise FieldError("acceptance", f"the acceptance curve has {len(self.acceptance)} positions; the schedule "
                             f"drafts {depth} tokens per verification (a tree: its depth), one rate each")
        return self

    def _check_inputs(self) -> None:
        """A schedule's checks of its own fields (FieldError naming the field)."""


@register
class Draft(_Speculative):
    """Draft-and-verify with a separate draft model (transformers' assisted decoding): the draft
    runs ``k`` single-token steps on its own KV cache, the target one pass over the last token
    and the k drafts (or the nodes of ``tree``, one draft step per depth)."""

    NAME = "draft"
    model: str | dict[str, Any] = Field(description="the draft model: a config.json/YAML path or the fields inline")
    k: Count = Field(default=5, le=64, description="draft tokens per verification (transformers' num_assistant_tokens "
                     "default of 5 with its heuristic schedule)")
    tree: str | list[list[NonNegativeCount]] | None = Field(default=None, description="a token tree (chain, a named "
                                                           "tree or a list of paths) instead of a chain of k")

    def _check_inputs(self) -> None:
        check_tree(self.tree)
        if self.tree not in (None, "chain") and "k" in self.model_fields_set:
            raise FieldError("tree", "give k (a chain of k drafts) or a tree, not both: the tree sets the drafts")

    def token_tree(self) -> Tree:
        return _tree(self.tree, self.k)


def _tree(value, k: int) -> Tree:
    if value is None or value == "chain":
        return Tree.chain(k)
    return Tree(TREES[value] if isinstance(value, str) else value)


@register
class SelfSpec(_Speculative):
    """LayerSkip's self-speculation: drafts exit after the first ``exit_layer`` layers (and the
    shared LM head); the verification runs those layers on the last draft only, the others on
    the last token and the drafts. Defaults: the LayerSkip README's Llama2-7B run."""

    NAME = "self_spec"
    exit_layer: Count = Field(default=8, description="layers the drafts run (LayerSkip README: --exit_layer 8)")
    k: Count = Field(default=6, le=64, description="draft tokens per verification (--num_speculations 6)")

    def token_tree(self) -> Tree:
        return Tree.chain(self.k)


@register
class Medusa(_Speculative):
    """Medusa: ``heads`` extra heads (``head_layers`` residual blocks and an LM head each) on
    every position's last hidden state, and a token ``tree`` verified in one pass with a tree
    attention mask. Defaults: MedusaConfig (4 heads, 1 layer) and medusa_generate's tree."""

    NAME = "medusa"
    heads: Count = Field(default=4, le=16, description="Medusa heads (MedusaConfig medusa_num_heads=4)")
    head_layers: Count = Field(default=1, le=8, description="residual blocks per head (medusa_num_layers=1)")
    tree: str | list[list[NonNegativeCount]] = Field(default="mc_sim_7b_63", description="the token tree: chain (one "
                                                     "candidate per head), a named tree or a list of paths")

    def _check_inputs(self) -> None:
        check_tree(self.tree)
        shape = self.token_tree()
        if shape.depth > self.heads:
            raise FieldError("tree", f"the tree is {shape.depth} deep; {self.heads} heads draft {self.heads} levels")
        if any(i >= MEDUSA_TOPK for p in shape.paths for i in p):
            raise FieldError("tree", f"a path ranks a candidate past the heads' top {MEDUSA_TOPK}")

    def token_tree(self) -> Tree:
        return _tree(self.tree, self.heads)


@register
class Firp(_Speculative):
    """FIRP: at layer ``layer``, ``k`` linear maps predict the hidden states of the next k
    tokens from the last token's; these pseudo tokens run the remaining layers with the real
    ones and are decoded as drafts, verified by the next pass. No code could be read: the
    shape follows the paper's abstract, defaults are ASSUMPTIONs (docs/sources/speculative.md#firp-firp)."""

    NAME = "firp"
    layer: Count = Field(default=16, description="the layer whose input the predictors read (ASSUMPTION)")
    k: Count = Field(default=3, le=64, description="pseudo tokens predicted per pass (ASSUMPTION)")

    def token_tree(self) -> Tree:
        return Tree.chain(self.k)


@register
class LayerSkip(LLMSchedule):
    """Dynamic layer skipping (DASH-style): each decode token runs a share of the layers, given
    as ``skip_ratio`` (the mean share skipped) or a ``trace`` CSV of per-layer skip rates
    (columns layer, skip). A ``policy_hidden`` > 0 adds a per-layer policy MLP (d x h x 2)."""

    NAME = "layer_skip"
    skip_ratio: Fraction | None = Field(default=None, description="mean share of layers a decode token skips")
    trace: str | None = Field(default=None, description="CSV of per-layer skip rates (columns layer, skip), "
                              "relative to the workload file")
    policy_hidden: NonNegativeCount = Field(default=0, description="hidden width of a per-layer skip policy MLP; 0: "
                                            "none modelled (DASH overlaps it with the layers; ASSUMPTION)")

    @model_validator(mode="after")
    def _one(self) -> "LayerSkip":
        if (self.skip_ratio is None) == (self.trace is None):
            raise FieldError("skip_ratio", "give skip_ratio or trace (a CSV of per-layer skip rates), one of them")
        if self.skip_ratio is not None and self.skip_ratio >= 1:
            raise FieldError("skip_ratio", "a token must run at least part of a layer: skip_ratio below 1")
        return self

    def layers_run(self, layers: int, paths=None) -> float:
        """Mean layers a decode token runs; ``paths`` finds the trace relative to the workload file."""
        if self.skip_ratio is not None:
            return layers * (1.0 - self.skip_ratio)
        path = trace_file(self.trace, paths, "schedule.trace")
        skip = read_named(lambda: read_skip_trace(path, layers), path, paths, "schedule.trace", "layer-skip trace")
        return float(layers - skip.sum())


# -- parsing ------------------------------------------------------------------------------------

CACHE_ONLY = ("feature-caching schedules apply only to diffusion transformers (kind: dit or diffusion_transformer); "
              "this workload is kind")


def is_cache_schedule(name: Any) -> bool:
    """Whether ``name`` is a diffusion transformer's cache schedule (imported only to say so)."""
    from archsim.workloads.schedules import schedule_names as cache_schedule_names

    return isinstance(name, str) and name in cache_schedule_names()


def schedule_params(value: str | dict, source: str = "--schedule") -> tuple[Any, dict[str, Any]]:
    """The name and the parameters given of ``"NAME:key=value,..."`` or ``{name: NAME, ...}``."""
    if isinstance(value, str):
        from archsim.workloads.schedules import _split_top_level

        name, _, rest = value.partition(":")
        params: dict[str, Any] = {}
        for item in filter(None, _split_top_level(rest)):
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"expected key=value in {value!r}", file=source)
            params[key.strip()] = read_yaml_text(raw, source)
        return name, params
    if isinstance(value, dict):
        params = dict(value)
        return params.pop("name", None), params
    raise ConfigError(f"expected NAME[:key=value,...] or a mapping, got {type(value).__name__}", file=source)


def parse_llm_schedule(value: Any, source: str = "--schedule") -> LLMSchedule:
    """``"draft:k=4,acceptance=0.7,model=..."``, ``{name: medusa, heads: 4}``, or None (vanilla)."""
    from archsim.config.loader import Layered, validate_layered

    if value is None:
        return Vanilla()
    if isinstance(value, LLMSchedule):
        return value
    name, params = schedule_params(value, source)
    if name not in _SCHEDULES:
        load_schedule_modules()
    if name not in _SCHEDULES:
        if is_cache_schedule(name):
            raise ConfigError(f"{CACHE_ONLY}: llm; its decode schedules: {', '.join(schedule_names())}",
                              file=source, key="schedule")
        raise ConfigError(f"unknown decode schedule {name!r}; expected one of: {', '.join(schedule_names())}",
                          file=source, key="schedule")
    layered = Layered()
    layered.merge(params, source)
    return validate_layered(_SCHEDULES[name], layered, source, key_prefix=("schedule",))


def check_llm_schedule(value: Any) -> None:
    """A workload's ``schedule`` parsed, its error naming the schedule's own key once."""
    try:
        parse_llm_schedule(value, "")
    except ConfigError as exc:
        first = str(exc).splitlines()[0]
        key, sep, message = first.partition(": ")
        if sep and key.startswith("schedule.") and " " not in key:
            raise FieldError(key, message) from None
        raise FieldError("schedule", first.removeprefix("schedule: ")) from None


def load_schedule_modules() -> None:
    """The schedules in their own modules (EAGLE, SSD; LOADED_ON_USE), which register on import:
    loaded when a schedule not registered yet is named, not for a vanilla decode (start-up)."""
    from archsim.workloads import llm_schedules_eagle, llm_schedules_ssd  # noqa: F401
