"""Loss functions shared by the SFT and RL trainers (pure tensor functions).

- :func:`weighted_masked_ce` — the masked-diffusion SFT loss ``sum(w · CE) / num_samples`` over
  the positions a masking strategy selected (see ``masking.py`` for the weights: LLaDA's
  ``1/p`` weighting, blockwise, AGDO's ``1 + gamma I_k``).
- :func:`group_advantages` — GRPO group-normalised advantages ``(r - mean_g) / (std_g + eps)``
  ("DeepSeekMath", arXiv 2402.03300), as used by diffu-GRPO (d1, arXiv 2504.12216) and TraceRL
  (arXiv 2509.06949).
- :func:`shape_advantages` — AGDO's per-token advantage ``A'_k = A + sign(A) · delta · I_k``
  (arXiv 2606.12273).
- :func:`clipped_policy_loss` — PPO clipped ratio (arXiv 1707.06347) plus the ``k3`` KL
  estimator to a reference policy (Schulman, "Approximating KL divergence"), averaged per
  sequence over its completion tokens, then over sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or parameters; nothing was saved for that step."""


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per position; logits [..., V], tokens [...] (ids < 0 give 0)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    safe = tokens.clamp_min(0)
    out = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return out.masked_fill(tokens < 0, 0.0)


def weighted_masked_ce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                       num_samples: int) -> torch.Tensor:
    """``sum_{rows, positions} weights · CE(logits, targets) / num_samples`` (targets -100 = no loss)."""
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r}; accepted: an integer >= 1")
    sel = targets != -100
    if not bool(sel.any()):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits[sel].float(), targets[sel], reduction="none")
    return (ce * weights[sel].to(ce.dtype)).sum() / num_samples


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4,
                     scale: bool = True) -> torch.Tensor:
    """GRPO advantages: rewards [G*group_size] in group-major order → ``(r - mean_g) / (std_g + eps)``.

    ``scale=False`` returns ``r - mean_g`` (Dr. GRPO). The std is the unbiased sample std (0 for a
    group of one).
    """
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"group_size={group_size!r} does not divide {rewards.numel()} rewards")
    r = rewards.float().view(-1, group_size)
    adv = r - r.mean(1, keepdim=True)
    if scale:
        std = r.std(1, keepdim=True) if group_size > 1 else torch.zeros_like(r[:, :1])
        adv = adv / (std + eps)
    return adv.flatten()


def shape_advantages(adv: torch.Tensor, influence: torch.Tensor, delta: float) -> torch.Tensor:
    """AGDO per-token advantage ``A + sign(A) · delta · I``; adv [N], influence [N, T] → [N, T]."""
    return adv[:, None] + torch.sign(adv)[:, None] * float(delta) * influence


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    token_mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped-ratio policy loss with an optional KL(π‖π_ref) penalty (k3 estimator).

    logp, old_logp, ref_logp, token_mask: [N, T]; advantages [N] or [N, T] (per token).
    Returns (loss, stats): the loss is the mean over sequences of the mean over their masked tokens
    of ``-min(ρ A, clip(ρ, 1±clip_eps) A) + beta · KL``.
    """
    mask = token_mask.float()
    adv = advantages if advantages.dim() == 2 else advantages[:, None].expand_as(logp)
    ratio = torch.exp(logp - old_logp)
    surr = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    per_tok = -surr
    kl = torch.zeros_like(logp)
    if ref_logp is not None and beta > 0:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1
        per_tok = per_tok + beta * kl
    denom = mask.sum(1).clamp_min(1.0)
    per_seq = (per_tok * mask).sum(1) / denom
    loss = per_seq.mean()
    with torch.no_grad():
        clipped = ((ratio - 1).abs() > clip_eps).float()
        stats = {
            "kl": float(((kl * mask).sum(1) / denom).mean()),
            "clip_frac": float(((clipped * mask).sum(1) / denom).mean()),
            "ratio": float(((ratio * mask).sum(1) / denom).mean()),
        }
    return loss, stats
