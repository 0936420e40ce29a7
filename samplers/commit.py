"""Commit rules: how many of the scored positions are unmasked at a step, and which.

The sampler orders positions (a score per position); a commit rule turns the scores into the
set committed now. Every rule only ever picks ELIGIBLE positions (masked, in the current block,
of an active row) and every rule except ``schedule`` commits at least one token per row that
still has an eligible position. Rules, usable with any sampler:

- ``schedule``: top-k by score, k from the unmasking schedule (``schedule_count``): LLaDA's
  even split of each block (Nie et al., arXiv:2502.09992), Dream's float32
  ``linspace(1, eps, steps+1)`` schedule (Ye et al., arXiv:2508.15487) or SDAR's even split of
  the block length (Cheng et al., arXiv:2510.06303). With ``alg_temp > 0`` the k positions are
  drawn without replacement from ``softmax(score / alg_temp)`` (Dream ``alg_temp``).
- ``threshold``: every eligible token whose confidence >= tau, plus the best ``kmin`` by score
  (kmin = 1: Fast-dLLM, Wu et al., arXiv:2505.22618; kmin = the schedule count: SDAR bd3
  dynamic decoding, which takes the tokens above tau when there are at least k, else the top k).
- ``factor``: Fast-dLLM's parallel factor rule: with confidences sorted c_1 >= c_2 >= ..., the
  largest n with c_i >= 1 - f/(i+1) for all i <= n (c_1 always passes); reproduces the
  reference's quirk that a failure at the last candidate still commits all of them.
- ``entropy_bound``: EB-sampler (Ben-Hamu et al., "Accelerated Sampling from Masked Diffusion
  Models via Entropy Bounded Unmasking", arXiv:2505.24857): in score order, the longest prefix
  whose summed entropy minus its largest entropy is <= gamma (at least one).
- ``dominance``: Attn-Sampler's dynamic attention threshold ("Attention-Based Sampler for
  Diffusion Language Models", arXiv:2604.08564): the confident tokens (confidence >= tau) whose
  score exceeds the highest score of any non-confident token, at least one (the best).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from dllm_eval.samplers.base import StepState
    from dllm_eval.samplers.config import DecodeConfig


def even_split(total: torch.Tensor, steps: int) -> torch.Tensor:
    """``[B] -> [B, steps]``: ``total // steps`` each, the remainder to the first steps (LLaDA)."""
    import torch

    total = total.to(torch.int64)
    base = (total // steps)[:, None].expand(-1, steps).clone()
    rem = (total % steps)[:, None]
    base += (torch.arange(steps, device=total.device)[None] < rem).to(torch.int64)
    return base


def linspace_count(masked_now: torch.Tensor, step: int, steps: int, eps: float) -> torch.Tensor:
    """Dream's count at ``step``: ``int(n * (1 - t[i+1] / t[i]))`` in float32, all at the end.

    ``masked_now`` is each row's current number of masked positions. The float32 arithmetic is
    the reference's (with steps == gen_length, step 0 commits 0 tokens: 32 * (1 - 0.96878) =
    0.999 truncates to 0)."""
    import torch

    masked_now = masked_now.to(torch.int64)
    if step >= steps - 1:
        return masked_now
    t = torch.linspace(1, eps, steps + 1, dtype=torch.float32)
    frac = 1 - t[step + 1] / t[step]
    return (masked_now.to(torch.float32) * frac).to(torch.int64)  # truncation like int()


def schedule_count(
    config: DecodeConfig,
    block_step: int,
    steps: int,
    block_plan: torch.Tensor | None,
    masked_now: torch.Tensor,
) -> torch.Tensor:
    """Tokens to commit per row at ``block_step`` (``[B]`` int64, never above ``masked_now``).

    ``block_plan`` is the ``[B, steps]`` plan made at the block start for the ``even`` and
    ``block_even`` schedules (see ``plan_block``)."""
    import torch

    if config.schedule == "linspace":
        k = linspace_count(masked_now, block_step, steps, config.eps)
    else:
        if block_step < block_plan.shape[1]:
            k = block_plan[:, block_step]
        else:  # threshold-style loops can run past the planned steps
            k = torch.ones_like(masked_now)
    return torch.minimum(k.to(masked_now.device), masked_now.to(torch.int64))


def plan_block(config: DecodeConfig, block_masked: torch.Tensor, block_len: int, steps: int) -> torch.Tensor | None:
    """Per-block plan of the ``even`` (split the masks) and ``block_even`` (split the block
    length, SDAR) schedules; None for ``linspace`` (computed step by step)."""
    import torch

    if config.schedule == "even":
        return even_split(block_masked, steps)
    if config.schedule == "block_even":
        return even_split(torch.full_like(block_masked, block_len), steps)
    return None


def _masked_scores(scores: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """float64 scores with ineligible = -inf and eligible clamped above it (so an eligible
    position scored -inf still ranks before every ineligible one)."""
    import torch

    s = scores.to(torch.float64)
    lowest = torch.finfo(torch.float64).min
    s = torch.where(torch.isnan(s), torch.full_like(s, lowest), s).clamp(min=lowest)
    return torch.where(eligible, s, torch.full_like(s, float("-inf")))


def top_k_mask(scores: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """bool ``[B, n]``: per row the ``k[b]`` best eligible positions (ties: torch.topk order)."""
    import torch

    s = _masked_scores(scores, eligible)
    out = torch.zeros_like(eligible)
    k = torch.minimum(k.to(torch.int64).cpu(), eligible.sum(1).cpu())
    for b in range(s.shape[0]):
        kb = int(k[b])
        if kb > 0:
            idx = torch.topk(s[b], kb).indices
            out[b, idx] = True
    return out


def sample_k_mask(
    scores: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor, alg_temp: float, generators: tuple | None
) -> torch.Tensor:
    """bool ``[B, n]``: ``k[b]`` eligible positions drawn without replacement from
    ``softmax(score / alg_temp)`` (Dream ``alg_temp``)."""
    import torch

    s = _masked_scores(scores, eligible)
    out = torch.zeros_like(eligible)
    k = torch.minimum(k.to(torch.int64).cpu(), eligible.sum(1).cpu())
    for b in range(s.shape[0]):
        kb = int(k[b])
        if kb <= 0:
            continue
        row = torch.where(eligible[b], s[b].clamp(min=-1e300) / alg_temp, s[b])
        probs = torch.softmax(row, dim=-1)
        probs = torch.where(eligible[b], probs.clamp(min=1e-300), torch.zeros_like(probs))
        gen = generators[b] if generators is not None else None
        idx = torch.multinomial(probs.to(gen.device if gen is not None else probs.device), kb, generator=gen)
        out[b, idx.to(out.device)] = True
    return out


def _at_least(mask: torch.Tensor, scores: torch.Tensor, eligible: torch.Tensor, kmin: torch.Tensor) -> torch.Tensor:
    return mask | top_k_mask(scores, eligible, kmin)


def threshold_mask(
    scores: torch.Tensor, confidence: torch.Tensor, eligible: torch.Tensor, tau: float, kmin: torch.Tensor
) -> torch.Tensor:
    """Fast-dLLM / SDAR threshold rule: eligible tokens with confidence >= tau, plus the best
    ``kmin`` by score."""
    return _at_least(eligible & (confidence >= tau), scores, eligible, kmin)


def factor_mask(scores: torch.Tensor, confidence: torch.Tensor, eligible: torch.Tensor, factor: float) -> torch.Tensor:
    """Fast-dLLM ``get_transfer_index_dynamic``: count from sorted confidences, then top-count
    by score."""
    import torch

    counts = torch.zeros(eligible.shape[0], dtype=torch.int64)
    for b in range(eligible.shape[0]):
        conf = confidence[b][eligible[b]].to(torch.float64)
        n = conf.numel()
        if n == 0:
            continue
        ordered = torch.sort(conf, descending=True).values
        first_fail = n - 1  # reference: loop index after a full pass
        for i in range(1, n):  # the best always passes (threshold -1)
            if float(ordered[i]) < 1.0 - factor / (i + 2):
                first_fail = i
                break
        count = first_fail
        if count == 0 or count == n - 1:  # reference quirk: "+1" at both ends
            count += 1
        counts[b] = count
    return top_k_mask(scores, eligible, counts)


def entropy_bound_mask(scores: torch.Tensor, state: StepState, eligible: torch.Tensor, gamma: float) -> torch.Tensor:
    """EB-sampler: longest score-ordered prefix with sum(H) - max(H) <= gamma (>= 1 token)."""
    import torch

    p = state.probs
    entropy = -(p * torch.log(p.clamp(min=1e-300))).sum(-1)  # [B, n] nats
    s = _masked_scores(scores, eligible)
    counts = torch.zeros(eligible.shape[0], dtype=torch.int64)
    for b in range(eligible.shape[0]):
        n = int(eligible[b].sum())
        if n == 0:
            continue
        order = torch.topk(s[b], n).indices
        h = entropy[b, order]
        excess = torch.cumsum(h, 0) - torch.cummax(h, 0).values
        counts[b] = max(1, int((excess <= gamma).to(torch.int64).cumprod(0).sum()))
    return top_k_mask(scores, eligible, counts)


def dominance_mask(
    scores: torch.Tensor, confidence: torch.Tensor, eligible: torch.Tensor, tau: float, kmin: torch.Tensor
) -> torch.Tensor:
    """Attn-Sampler parallel rule: confident tokens scored above every non-confident one."""
    import torch

    s = _masked_scores(scores, eligible)
    confident = eligible & (confidence >= tau)
    others = eligible & ~confident
    ceiling = torch.where(others, s, torch.full_like(s, float("-inf"))).max(dim=1, keepdim=True).values
    return _at_least(confident & (s > ceiling), scores, eligible, kmin)


def select(
    config: DecodeConfig,
    scores: torch.Tensor,
    state: StepState,
    k: torch.Tensor,
) -> torch.Tensor:
    """Apply ``config.commit`` to one step: bool ``[B, n]`` of positions to commit now.

    ``k`` is the schedule count per row (used by ``schedule`` and by ``threshold_min='schedule'``)."""
    import torch

    eligible = state.eligible
    rule = config.commit
    if scores.shape != eligible.shape:
        raise ValueError(
            f"sampler returned scores of shape {tuple(scores.shape)}; expected {tuple(eligible.shape)}"
        )
    if rule == "schedule":
        if config.alg_temp > 0:
            return sample_k_mask(scores, eligible, k, config.alg_temp, state.generators)
        return top_k_mask(scores, eligible, k)
    has_any = eligible.any(1).to(torch.int64).cpu()
    kmin = has_any if config.threshold_min == "one" else torch.maximum(k.cpu(), has_any)
    if rule == "threshold":
        return threshold_mask(scores, state.confidence, eligible, config.threshold, kmin)
    if rule == "dominance":
        return dominance_mask(scores, state.confidence, eligible, config.threshold, kmin)
    if rule == "factor":
        return factor_mask(scores, state.confidence, eligible, config.factor)
    if rule == "entropy_bound":
        return entropy_bound_mask(scores, state, eligible, config.entropy_bound)
    raise ValueError(f"unknown commit rule {rule!r}")  # unreachable: DecodeConfig validates
