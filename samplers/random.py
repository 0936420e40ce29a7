"""Random sampler: commit masked positions in a uniformly random order.

LLaDA's ``remasking='random'`` (Nie et al., "Large Language Diffusion Models",
arXiv:2502.09992; ML-GSAI/LLaDA generate.py): score = U(0, 1) per position and step. Draws come
from each row's generator (``seed``), so a row's order does not depend on its batch-mates.
``RandomSampler(draws=...)`` replays recorded draws instead (``[steps, B, L]``, indexed by the
global step and the absolute position), which is how ``dllm-eval parity`` reproduces the
reference's ``torch.rand`` calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.base import StepState
    from dllm_eval.samplers.config import DecodeConfig


class RandomSampler:
    """score = uniform draw (or the recorded draw of this step and position)."""

    name = "random"
    needs_attention = False

    def __init__(self, draws: torch.Tensor | None = None) -> None:
        self.draws = draws

    @classmethod
    def from_config(cls, config: DecodeConfig) -> RandomSampler:
        return cls()

    def score(self, state: StepState) -> torch.Tensor:
        import torch

        if self.draws is not None:
            if state.step >= self.draws.shape[0]:
                raise ValueError(
                    f"RandomSampler: recorded draws cover {self.draws.shape[0]} steps, "
                    f"step {state.step} requested"
                )
            step = self.draws[state.step].to(state.positions.device, torch.float64)
            return step.gather(1, state.positions)
        b, n = state.positions.shape
        if state.generators is None:
            return torch.rand((b, n), dtype=torch.float64, device=state.positions.device)
        rows = [  # a row without a generator this step has nothing to commit: no draw
            torch.rand((n,), dtype=torch.float64, generator=g, device=g.device)
            if g is not None else torch.zeros((n,), dtype=torch.float64, device=state.positions.device)
            for g in state.generators
        ]
        return torch.stack(rows).to(state.positions.device)
