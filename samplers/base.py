"""The sampler protocol: one frozen step state in, one score per position out.

A sampler (strategy) decides the ORDER in which masked positions are committed; it never
decides how many, never sees ineligible positions as candidates and never writes tokens. At
every denoising step the engine builds a ``StepState`` for the positions under consideration
(the current block), calls ``sampler.score(state)`` and hands the scores to the commit rule
(``dllm_eval.samplers.commit``), which masks ineligible positions itself. Higher score =
committed earlier. Samplers that need attention statistics say so with ``needs_attention`` and
``attention_request``; the engine then asks the model for them in the same forward.

Registry: ``SAMPLERS`` maps a name to ``"module:Class"`` and is resolved lazily, so importing
this module never imports torch. ``get_sampler("confidance")`` raises a ValueError with
"did you mean 'confidence'?".
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.config import DecodeConfig

SAMPLERS: dict[str, str] = {
    "random": "dllm_eval.samplers.random:RandomSampler",
    "confidence": "dllm_eval.samplers.confidence:ConfidenceSampler",
    "margin": "dllm_eval.samplers.margin:MarginSampler",
    "entropy": "dllm_eval.samplers.entropy:EntropySampler",
    "sequential": "dllm_eval.samplers.sequential:SequentialSampler",
    "attn": "dllm_eval.samplers.attn:AttnSampler",
    "agdo": "dllm_eval.samplers.agdo:AgdoSampler",
}


@dataclass(frozen=True)
class StepState:
    """What a sampler sees at one denoising step, for the ``n`` positions under consideration.

    Tensors are ``[B, n]`` unless stated. ``positions`` are absolute column indices into the
    full sequence ``x`` (prompt included, left padding kept); ``attn`` (when requested) is the
    model's ``AttnStats``: its per-key values (``col_sum``) start at column ``attn_offset`` of ``x``
    and its per-query-row values (``row_sum``) at column ``attn_row_offset`` (so position p is at
    ``p - offset``). Without a KV cache both are 0 (the forward ran the whole sequence); with a
    cache the keys are still the whole sequence (offset 0) while the statistics' query rows are
    the current block's (``attn_row_offset`` = the block's first column).
    """

    logits: torch.Tensor
    """``[B, n, V]`` aligned logits (after guidance and the EOS control) that scored the tokens."""
    x0: torch.Tensor
    """Proposed token per position (argmax, or a Gumbel sample when temperature > 0)."""
    confidence: torch.Tensor
    """float64 probability of ``x0`` under the scoring distribution."""
    eligible: torch.Tensor
    """bool: masked positions of the current block of an active row (may be committed now)."""
    positions: torch.Tensor
    """Absolute column of each position in the full sequence."""
    known: torch.Tensor
    """bool ``[B, n_keys]`` over the forward input: real (non-pad) tokens that are not masks."""
    step: int
    """Global denoising step (0-based, over all blocks)."""
    block: int
    """Block index."""
    block_step: int
    """Step within the block."""
    score_temperature: float = 1.0
    """Temperature of the scoring distribution (1 unless ``score_filtered``)."""
    attn: Any = None
    attn_offset: int = 0
    attn_row_offset: int = 0
    generators: tuple | None = None
    """One ``torch.Generator`` per row (or None: the global RNG)."""

    @cached_property
    def probs(self) -> torch.Tensor:
        """``[B, n, V]`` float64 scoring distribution (softmax of ``logits``)."""
        import torch

        return torch.softmax(self.logits.to(torch.float64) / self.score_temperature, dim=-1)

    def attn_at(self, values: torch.Tensor) -> torch.Tensor:
        """Gather ``[B, n_keys]`` per-column attention values at ``positions`` -> ``[B, n]``."""
        return _gather_at(values, self.positions, self.attn_offset)

    def attn_at_rows(self, values: torch.Tensor) -> torch.Tensor:
        """Gather ``[B, n_rows]`` per-query-row attention values at ``positions`` -> ``[B, n]``."""
        return _gather_at(values, self.positions, self.attn_row_offset)


def _gather_at(values: torch.Tensor, positions: torch.Tensor, offset: int) -> torch.Tensor:
    """``values[b, positions[b, j] - offset]``."""
    return values.gather(1, positions - offset if offset else positions)


@runtime_checkable
class Sampler(Protocol):
    """One decoding strategy: ``score(state)`` -> float64 ``[B, n]``, higher = commit earlier."""

    name: str
    needs_attention: bool

    def score(self, state: StepState) -> torch.Tensor: ...


class AttentionSampler(Sampler, Protocol):
    """A sampler that needs attention statistics from the same forward."""

    def attention_request(self, masked: torch.Tensor, known: torch.Tensor,
                          keys_known: torch.Tensor | None = None) -> Any:
        """Build the model's ``AttnStatsRequest``. ``masked`` / ``known`` ``[B, n_rows]``: mask
        tokens / real non-mask tokens among the query rows the statistics may cover (the whole
        sequence without a KV cache, the current block with one; ``query_index`` is relative to
        these rows, the engine places them in the forward's input); ``keys_known``
        ``[B, n_keys]``: real non-mask tokens among the forward's keys (None: the rows are the
        keys, ``known``)."""
        ...


def check_sampler_name(name: str) -> None:
    """Raise a ValueError naming the accepted samplers (with "did you mean") if unknown."""
    if name not in SAMPLERS:
        close = difflib.get_close_matches(name, SAMPLERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown sampler {name!r}; accepted: {', '.join(SAMPLERS)}.{hint}"
        )


def get_sampler(name: str, config: DecodeConfig | None = None) -> Sampler:
    """Instantiate the registered sampler ``name`` for ``config``."""
    check_sampler_name(name)
    module_name, cls_name = SAMPLERS[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls.from_config(config) if config is not None else cls()
