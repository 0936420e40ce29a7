"""Masking strategies for diffusion-LM training, as pure tensor functions.

Every strategy turns clean sequences (prompt + response) into one or more *training rows*: a
noisy copy of the sequence with some response tokens replaced by the mask id, the positions that
carry a loss, and a per-position loss weight. The weights are chosen so that, for every strategy,
``sum(weight * cross_entropy) / num_samples`` estimates the per-token negative log-likelihood
bound of the response (normalised by the answer length), so losses of different strategies are
on the same scale.

- ``random`` — LLaDA ("Large Language Diffusion Models", arXiv 2502.09992, SFT recipe): per
  sample ``t ~ U(0, 1)``, ``p = (1 - eps) t + eps`` (so ``p`` lies in ``[eps, 1]``), every
  response token is masked independently with probability ``p``; the loss on a masked token is
  weighted by ``1 / p`` and normalised by the answer length.
- ``blockwise`` — semi-autoregressive block diffusion (BD3-LM, "Block Diffusion: Interpolating
  Between Autoregressive and Diffusion Language Models", arXiv 2503.09573; the SDAR recipe): the
  response is cut into blocks of ``block_size`` tokens, one active block ``j`` is drawn
  uniformly, earlier blocks stay clean, the active block is masked with probability ``p`` as
  above and later blocks are fully masked. The loss is on the masked tokens of the active block,
  weighted by ``num_blocks / (p * answer_length)`` (an unbiased estimate of the sum over blocks).
- ``agdo`` — "Beyond Fully Random Masking: Attention-Guided Denoising and Optimization for
  Diffusion Language Models" (arXiv 2606.12273): from the head-mean attention matrix ``A``
  (rows = queries, columns = keys) of one layer on the *clean* sequence, a denoising order is
  built greedily (:func:`agdo_order`): ``U`` starts as the prompt; at each step the ``n``
  response positions with the largest ``S_i = sum_{k in U} A[i, k]`` are taken and added to
  ``U``. A training row for step ``t`` masks the tokens of step ``t`` and of every later step;
  the loss is on the step-``t`` tokens, weighted by ``(1 + gamma * I_k)`` where ``I_k`` is the
  attention influence of token ``k`` (:func:`attention_influence`), times
  ``num_steps / (rows * answer_length)`` so the rows estimate the whole order's NLL.

Influence normalisation (``influence_norm``): ``I_k = sum_i A[i, k]`` over all (non-pad) query
rows ``i`` and response keys ``k``, then ``"mean"`` (default: divided by its mean over the
response, so the average weight is ``1 + gamma``), ``"max"`` (divided by the maximum, weights in
``[1, 1 + gamma]``), ``"sum"`` (divided by the sum, sums to 1) or ``"none"``.

All randomness comes from an explicit ``torch.Generator`` per sample, so the masks of a sample
depend only on (seed, epoch, sample index): training is reproducible across resumes and
independent of how a global batch is split over processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MASKING_STRATEGIES = ("random", "blockwise", "agdo")
INFLUENCE_NORMS = ("mean", "max", "sum", "none")


@dataclass(frozen=True)
class MaskedRows:
    """Training rows built from clean samples.

    ``input_ids`` [N, L] noisy ids (mask id where masked); ``targets`` [N, L] the clean ids where a
    loss is taken and -100 elsewhere; ``weights`` [N, L] float loss weight (0 where no loss);
    ``sample_index`` [N] which input sample each row came from; ``num_samples`` the number of
    input samples (the loss divisor).
    """

    input_ids: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    sample_index: torch.Tensor
    num_samples: int


def _check_mask_prob_eps(eps: float) -> None:
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"mask_eps={eps!r} is invalid; accepted: 0 <= mask_eps < 1")


def _uniform(generator: torch.Generator | None, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=generator)


def _generators(generators, n: int) -> list[torch.Generator | None]:
    if generators is None:
        return [None] * n
    if isinstance(generators, torch.Generator):
        return [generators] * n
    gens = list(generators)
    if len(gens) != n:
        raise ValueError(f"got {len(gens)} generators for {n} samples; pass one per sample")
    return gens


def _row_buffers(input_ids: torch.Tensor, response_mask: torch.Tensor, generators) -> tuple:
    """One training row per sample: (noisy ids to fill, bool response mask, per-sample generators,
    targets all -100, float32 weights all 0)."""
    ids = input_ids.clone()
    targets = torch.full_like(ids, -100)
    weights = torch.zeros(ids.shape, dtype=torch.float32)
    return ids, response_mask.bool(), _generators(generators, ids.shape[0]), targets, weights


def random_masking(
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    mask_id: int,
    *,
    eps: float = 1e-3,
    generators: torch.Generator | list[torch.Generator] | None = None,
) -> MaskedRows:
    """LLaDA random masking: one row per sample, mask prob ``p = (1-eps) t + eps``, weight ``1/(p·|answer|)``.

    ``response_mask`` [B, L] bool marks the response tokens (the ones that may be masked and carry
    the loss; EOS padding of the response counts, as in LLaDA's SFT).
    """
    _check_mask_prob_eps(eps)
    ids, resp, gens, targets, weights = _row_buffers(input_ids, response_mask, generators)
    B, L = ids.shape
    for b in range(B):
        t = _uniform(gens[b], 1).item()
        p = (1.0 - eps) * t + eps
        draws = _uniform(gens[b], L)
        masked = (draws < p) & resp[b]
        n_answer = int(resp[b].sum())
        ids[b, masked] = mask_id
        targets[b, masked] = input_ids[b, masked]
        if n_answer:
            weights[b, masked] = 1.0 / (p * n_answer)
    return MaskedRows(ids, targets, weights, torch.arange(B), B)


def blockwise_masking(
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    mask_id: int,
    *,
    block_size: int,
    eps: float = 1e-3,
    generators: torch.Generator | list[torch.Generator] | None = None,
) -> MaskedRows:
    """Semi-autoregressive masking: earlier blocks clean, active block partly masked, later blocks masked.

    Blocks are counted from the first response token of each sample. The weight on a masked token
    of the active block is ``num_blocks / (p · |answer|)``.
    """
    _check_mask_prob_eps(eps)
    if int(block_size) < 1:
        raise ValueError(f"block_size={block_size!r} is invalid; accepted: an integer >= 1")
    ids, resp, gens, targets, weights = _row_buffers(input_ids, response_mask, generators)
    B, L = ids.shape
    for b in range(B):
        pos = resp[b].nonzero().flatten()
        n_answer = pos.numel()
        t = _uniform(gens[b], 1).item()
        p = (1.0 - eps) * t + eps
        if n_answer == 0:
            continue
        n_blocks = -(-n_answer // block_size)
        j = int(torch.randint(n_blocks, (1,), generator=gens[b]).item())
        block_of = torch.arange(n_answer) // block_size
        active = pos[block_of == j]
        later = pos[block_of > j]
        draws = _uniform(gens[b], active.numel())
        hit = active[draws < p]
        ids[b, later] = mask_id
        ids[b, hit] = mask_id
        targets[b, hit] = input_ids[b, hit]
        weights[b, hit] = n_blocks / (p * n_answer)
    return MaskedRows(ids, targets, weights, torch.arange(B), B)


def agdo_order(attn: torch.Tensor, prompt_positions: torch.Tensor, response_positions: torch.Tensor,
               n: int) -> torch.Tensor:
    """Greedy attention-guided denoising order of one sample.

    ``attn`` [L, L] head-mean attention probabilities (row = query, column = key);
    ``prompt_positions`` / ``response_positions`` 1-D index tensors. Returns a LongTensor with
    the step (0, 1, ...) of each response position, in the order of ``response_positions``:
    at each step the ``n`` remaining response positions with the largest
    ``S_i = sum_{k in U} attn[i, k]`` are denoised (ties: the earlier position first) and join
    ``U``, which starts as the prompt.
    """
    if int(n) < 1:
        raise ValueError(f"agdo_tokens_per_step={n!r} is invalid; accepted: an integer >= 1")
    a = attn.double()
    resp = response_positions.long()
    R = resp.numel()
    steps = torch.full((R,), -1, dtype=torch.long)
    # S_i accumulated incrementally: S += attn[resp, new_keys].sum(-1)
    score = a[resp][:, prompt_positions.long()].sum(-1) if prompt_positions.numel() else torch.zeros(R, dtype=a.dtype)
    remaining = torch.ones(R, dtype=torch.bool)
    step = 0
    while bool(remaining.any()):
        k = min(int(n), int(remaining.sum()))
        cand = score.masked_fill(~remaining, float("-inf"))
        # stable descending sort -> ties keep the earlier (lower index) position
        order = torch.sort(-cand, stable=True).indices[:k]
        steps[order] = step
        remaining[order] = False
        score = score + a[resp][:, resp[order]].sum(-1)
        step += 1
    return steps


def attention_influence(attn: torch.Tensor, query_positions: torch.Tensor,
                        response_positions: torch.Tensor, norm: str = "mean") -> torch.Tensor:
    """Influence ``I_k = sum_i attn[i, k]`` of each response key ``k`` over the query rows ``i``, normalised.

    ``norm``: ``"mean"`` (mean 1 over the response), ``"max"`` (max 1), ``"sum"`` (sums to 1) or ``"none"``.
    """
    if norm not in INFLUENCE_NORMS:
        raise ValueError(f"agdo_influence_norm={norm!r} is invalid; accepted: {', '.join(INFLUENCE_NORMS)}")
    a = attn.double()
    infl = a[query_positions.long()][:, response_positions.long()].sum(0)
    if norm == "none" or infl.numel() == 0:
        return infl.float()
    denom = {"mean": infl.mean(), "max": infl.max(), "sum": infl.sum()}[norm]
    if float(denom) <= 0:
        return torch.zeros_like(infl).float()
    return (infl / denom).float()


def agdo_masking(
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    attn: torch.Tensor,
    mask_id: int,
    *,
    tokens_per_step: int = 1,
    gamma: float = 1.0,
    rows_per_sample: int = 1,
    influence_norm: str = "mean",
    valid_mask: torch.Tensor | None = None,
    generators: torch.Generator | list[torch.Generator] | None = None,
) -> MaskedRows:
    """AGDO rows: ``rows_per_sample`` denoising steps drawn per sample from its attention order.

    ``attn`` [B, L, L] head-mean attention of the clean ``input_ids``; ``response_mask`` [B, L]
    bool; ``valid_mask`` [B, L] bool non-pad positions (default all). Prompt = valid and not
    response. Row for step ``t``: tokens of steps >= t masked, loss on step-t tokens with weight
    ``(1 + gamma I_k) · T / (rows · |answer|)`` (``T`` steps, ``rows = min(rows_per_sample, T)``).
    """
    if int(rows_per_sample) < 1:
        raise ValueError(f"agdo_rows_per_sample={rows_per_sample!r} is invalid; accepted: an integer >= 1")
    if gamma < 0:
        raise ValueError(f"agdo_gamma={gamma!r} is invalid; accepted: a number >= 0")
    B, L = input_ids.shape
    if attn.shape != (B, L, L):
        raise ValueError(f"attention matrix has shape {tuple(attn.shape)}; expected {(B, L, L)}")
    resp = response_mask.bool()
    valid = torch.ones_like(resp) if valid_mask is None else valid_mask.bool()
    gens = _generators(generators, B)
    rows_ids, rows_tgt, rows_w, rows_src = [], [], [], []
    for b in range(B):
        r_pos = (resp[b] & valid[b]).nonzero().flatten()
        p_pos = (valid[b] & ~resp[b]).nonzero().flatten()
        q_pos = valid[b].nonzero().flatten()
        n_answer = r_pos.numel()
        if n_answer == 0:
            continue
        steps = agdo_order(attn[b], p_pos, r_pos, tokens_per_step)
        infl = attention_influence(attn[b], q_pos, r_pos, influence_norm)
        T = int(steps.max()) + 1
        n_rows = min(int(rows_per_sample), T)
        chosen = torch.randperm(T, generator=gens[b])[:n_rows].sort().values
        for t in chosen.tolist():
            ids = input_ids[b].clone()
            tgt = torch.full((L,), -100, dtype=input_ids.dtype)
            w = torch.zeros(L, dtype=torch.float32)
            ids[r_pos[steps >= t]] = mask_id
            now = steps == t
            tgt[r_pos[now]] = input_ids[b, r_pos[now]]
            w[r_pos[now]] = (1.0 + gamma * infl[now]) * T / (n_rows * n_answer)
            rows_ids.append(ids)
            rows_tgt.append(tgt)
            rows_w.append(w)
            rows_src.append(b)
    if not rows_ids:
        empty = input_ids[:0]
        return MaskedRows(empty, empty.clone(), torch.zeros(0, L), torch.zeros(0, dtype=torch.long), B)
    return MaskedRows(torch.stack(rows_ids), torch.stack(rows_tgt), torch.stack(rows_w),
                      torch.tensor(rows_src, dtype=torch.long), B)


def sample_generators(seed: int, epoch: int, indices: list[int]) -> list[torch.Generator]:
    """One ``torch.Generator`` per sample, seeded from (seed, epoch, sample index)."""
    gens = []
    for idx in indices:
        g = torch.Generator()
        g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + int(idx) * 104_729) % (2**63 - 1))
        gens.append(g)
    return gens
