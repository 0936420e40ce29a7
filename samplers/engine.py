"""The one denoising loop: ``dllm_eval.generate(model, input_ids, **options)``.

Masked-diffusion decoding as LLaDA, Fast-dLLM, Dream and SDAR do it, in one loop over a family
adapter (``dllm_eval.harness.family``): the answer starts as ``gen_length`` mask tokens after the
(left-padded) prompt and is unmasked block by block (``block_length``); at every step the model
scores the current block, tokens are proposed (argmax, or Gumbel-max in float64 when
``temperature > 0``, after optional top-k/top-p filtering), the sampler orders the masked
positions and the commit rule chooses how many to unmask (``samplers/commit.py``). Options:
``DecodeConfig`` (``samplers/config.py``).

Forward plans, chosen from the options and the adapter (never from a family name):

- ``kv_cache='none'``: every step runs the whole sequence (LLaDA ``generate``, Dream
  ``diffusion_generate``, Fast-dLLM ``generate``); with ``cfg_scale > 0`` the conditional and the
  prompt-masked unconditional sequences run as one batch of 2B rows (one forward).
- ``kv_cache='prefix'`` / ``'dual'`` (Fast-dLLM): each block starts with a full forward; then
  the prefix cache keeps the keys before the block and runs the block and everything after it,
  the dual cache keeps all keys and runs only the block (its cached entries replaced).
- block-causal adapters (``adapter.block_size``, SDAR): blocks are aligned on absolute
  positions, the whole prompt blocks are prefilled into the cache, each block is denoised
  against the cache and then run once more to store its keys ("store-kv" forward, counted in
  the NFE as the reference does); the sequence is rounded up to whole blocks.

Attention samplers (``attn``, ``agdo``) get their statistics from the same forward as the
logits, in every plan. Without a cache they cover the whole sequence (the references'
semantics); with a cache (prefix, dual, block-causal) they cover the current block's query rows
only, against every key of the sequence (cached keys included), so a cached step never computes
attention scores outside its block.

``nfe`` counts model forward calls exactly (a guidance forward of 2B rows is one call). With a
``seed``, every row draws from its own generator, and positions are drawn per block, so a row's
tokens do not depend on its batch-mates or on padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dllm_eval.samplers.base import StepState, get_sampler
from dllm_eval.samplers.commit import plan_block, schedule_count, select
from dllm_eval.samplers.config import DecodeConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["GenerationResult", "generate"]


@dataclass(frozen=True)
class GenerationResult:
    """Output of ``generate``.

    sequences: ``[B, P + G]`` LongTensor, the input (left padding kept) followed by the generated
        tokens (G = gen_length; block-causal models round up to whole blocks, right-padded with the
        pad id where rows differ).
    nfe: model forward calls. tokens_per_forward: generated tokens / nfe.
    stats: ``nfe_rows`` (forwards while each row was still decoding), ``steps``, ``nfe_denoise``,
        ``nfe_store``, ``forward_rows`` (rows per forward), ``trace`` (per denoising step the
        committed absolute positions of each row), ``stopped`` (rows stopped by ``stop_on_eos``
        or ``early_stop``).
    """

    sequences: Any
    nfe: int
    tokens_per_forward: float
    stats: dict = field(default_factory=dict)


def generate(
    model: Any,
    input_ids: Any,
    attention_mask: Any = None,
    adapter: Any = None,
    config: DecodeConfig | None = None,
    strategy: Any = None,
    progress: bool = False,
    **options: Any,
) -> GenerationResult:
    """Decode ``gen_length`` tokens after each prompt row with a masked-diffusion model.

    ``input_ids`` ``[B, P]`` (left padding with ``attention_mask`` ``[B, P]``, 1 = real token);
    options are ``DecodeConfig`` fields (or pass ``config=``; both: options override it).
    ``strategy`` replaces the registered sampler object (e.g. ``RandomSampler(draws=...)``).
    ``adapter`` defaults to ``dllm_eval.get_adapter(model)``.
    """
    import torch

    if config is None:
        config = DecodeConfig.from_options(**options)
    elif options:
        config = config.replace(**options)
    if adapter is None:
        from dllm_eval.harness.family import get_adapter

        adapter = get_adapter(model)
    sampler = strategy if strategy is not None else get_sampler(config.sampler, config)
    ids = torch.as_tensor(input_ids)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[1] < 1 or ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"input_ids of shape {tuple(ids.shape)} and dtype {ids.dtype} is invalid; accepted: "
            "an integer tensor [B, P] with P >= 1"
        )
    device = _device_of(model)
    ids = ids.to(device=device, dtype=torch.long)
    am = None
    if attention_mask is not None:
        am = torch.as_tensor(attention_mask).to(device).long()
        if am.shape != ids.shape:
            raise ValueError(
                f"attention_mask of shape {tuple(am.shape)} does not match input_ids {tuple(ids.shape)}"
            )
        if bool((am[:, 1:] < am[:, :-1]).any()):
            raise ValueError("attention_mask: padding must be on the left (accepted: 0...0 1...1 per row)")
        if bool((am.sum(1) == 0).any()):
            raise ValueError("attention_mask: every row needs at least one real prompt token")
        if bool(am.all()):
            am = None
    if bool((ids == adapter.mask_id).any()) and am is None:
        pass  # masks in the prompt are legal (infilling) and are decoded with the first block
    block_causal = getattr(adapter, "block_size", None) is not None
    kv = config.kv_cache or ("prefix" if block_causal else "none")
    if block_causal and kv != "prefix":
        raise ValueError(
            f"DecodeConfig option kv_cache={config.kv_cache!r} is invalid for the block-causal "
            f"{adapter.name} model; accepted: None or 'prefix' (it always decodes with its cache)"
        )
    if block_causal and config.cfg_scale > 0:
        raise ValueError(
            f"DecodeConfig option cfg_scale={config.cfg_scale} is invalid for the block-causal "
            f"{adapter.name} model; accepted: 0"
        )
    if getattr(sampler, "needs_attention", False):
        if not getattr(adapter, "supports_attention", False):
            raise ValueError(
                f"sampler {config.sampler!r} needs attention statistics, which the "
                f"{getattr(adapter, 'name', type(model).__name__)} model cannot provide; accepted: "
                "a sampler without attention (confidence, margin, entropy, random, sequential)"
            )
    stop_ids = tuple(config.stop_ids) if config.stop_ids is not None else tuple(adapter.eos_ids)
    run = _Run(model, adapter, config, sampler, stop_ids, kv, progress)
    with torch.no_grad():
        if block_causal:
            return run.block_causal(ids, am)
        return run.bidirectional(ids, am)


def _device_of(model: Any) -> Any:
    import torch

    dev = getattr(model, "device", None)
    if dev is not None:
        return torch.device(dev)
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Top-k then top-p (nucleus) filtering; removed entries become -inf (the best always stays)."""
    import torch

    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = torch.cumsum(torch.softmax(sorted_logits.float(), dim=-1), dim=-1)
        drop = cum > top_p
        drop[..., 1:] = drop[..., :-1].clone()
        drop[..., 0] = False
        remove = torch.zeros_like(drop).scatter(-1, order, drop)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


class _Run:
    """State shared by one ``generate`` call (model, adapter, options, counters)."""

    def __init__(self, model: Any, adapter: Any, config: DecodeConfig, sampler: Any,
                 stop_ids: tuple[int, ...], kv: str, progress: bool) -> None:
        self.model, self.adapter, self.config, self.sampler = model, adapter, config, sampler
        self.stop_ids, self.kv, self.progress = stop_ids, kv, progress
        self.mask_id = int(adapter.mask_id)
        self.nfe = 0
        self.nfe_denoise = 0
        self.nfe_store = 0
        self.forward_rows: list[int] = []
        self.trace: list[dict] = []
        self._last_request: tuple = (None, None)
        self.keep_logits = _accepts(model, "logits_to_keep")
        self.step = 0
        eot = getattr(adapter, "eot_id", None)
        self.eos_only = tuple(i for i in stop_ids if i != eot) or stop_ids

    # -- model calls --------------------------------------------------------------------------
    def _call(self, x: torch.Tensor, store: bool = False, **kw: Any) -> Any:
        out = self.model(x, **kw)
        self.nfe += 1
        if store:
            self.nfe_store += 1
        else:
            self.nfe_denoise += 1
        self.forward_rows.append(int(x.shape[0]))
        return out

    def _generators(self, batch: int, device: Any) -> tuple | None:
        import torch

        if self.config.seed is None:
            return None
        gen_device = device if getattr(device, "type", "cpu") in ("cpu", "cuda") else "cpu"
        return tuple(torch.Generator(device=gen_device).manual_seed(self.config.seed) for _ in range(batch))

    def _max_steps(self, steps: int, block_len: int) -> int:
        """Forwards allowed per block: the schedule's steps; rules that commit >= 1 token per step
        finish within ``block_len`` steps, the bound only stops a model that keeps proposing the
        mask token itself (the references would loop forever there)."""
        if self.config.commit == "schedule":
            return steps
        return 2 * block_len + 2

    # -- one denoising step on a block's logits --------------------------------------------------
    def _step(self, x: torch.Tensor, lo: int, hi: int, logits: torch.Tensor, active: torch.Tensor,
              block: int, block_step: int, plan: torch.Tensor | None, steps: int,
              known: torch.Tensor, attn: Any, attn_offsets: tuple[int, int], gens: tuple | None,
              rows_nfe: torch.Tensor) -> None:
        import torch

        cfg = self.config
        b = x.shape[0]
        region = x[:, lo:hi]
        eligible = (region == self.mask_id) & active[:, None]
        if cfg.logits_eos_inf:
            logits = logits.clone()
            logits[..., list(self.eos_only)] = float("-inf")
        filtered = filter_logits(logits, cfg.top_k, cfg.top_p)
        if gens is not None:
            # a row with nothing to commit in this step draws nothing, so its random stream is the
            # same whether it waits for batch-mates or decodes alone (batched == one-by-one)
            live = eligible.any(1).tolist()
            gens = tuple(g if on else None for g, on in zip(gens, live))
        if cfg.temperature > 0:
            x0 = self._gumbel_argmax(filtered, cfg.temperature, gens)
        else:
            x0 = torch.argmax(filtered, dim=-1)
        if cfg.score_filtered:
            score_logits, score_temp = filtered, (cfg.temperature if cfg.temperature > 0 else 1.0)
        else:
            score_logits, score_temp = logits, 1.0
        l64 = score_logits.to(torch.float64) / score_temp
        confidence = torch.exp(l64.gather(-1, x0[..., None])[..., 0] - torch.logsumexp(l64, dim=-1))
        positions = torch.arange(lo, hi, device=x.device)[None].expand(b, -1)
        state = StepState(
            logits=score_logits, x0=x0, confidence=confidence, eligible=eligible,
            positions=positions, known=known, step=self.step, block=block, block_step=block_step,
            score_temperature=score_temp, attn=attn, attn_offset=attn_offsets[0],
            attn_row_offset=attn_offsets[1], generators=gens,
        )
        scores = self.sampler.score(state).to(torch.float64)
        if cfg.confidence_eos_eot_inf:
            is_stop = torch.isin(x0, torch.tensor(self.stop_ids, device=x0.device))
            scores = scores.masked_fill(is_stop, float("-inf"))
            state = replace(state, confidence=confidence.masked_fill(is_stop, float("-inf")))
        masked_now = eligible.sum(1)
        k = schedule_count(cfg, block_step, steps, plan, masked_now)
        commit = select(cfg, scores, state, k) & eligible
        x[:, lo:hi] = torch.where(commit, x0, region)
        rows_nfe += active.to(rows_nfe.dtype)
        self.trace.append({
            "block": block, "step": block_step,
            "committed": [[lo + int(j) for j in torch.nonzero(commit[r]).flatten()] for r in range(b)],
        })
        self.step += 1

    def _gumbel_argmax(self, logits: torch.Tensor, temperature: float, gens: tuple | None) -> torch.Tensor:
        """argmax(log p + T * Gumbel) in float64 = a sample of softmax(logits / T) (LLaDA's
        ``exp(l) / (-log u)^T``, in log space)."""
        import torch

        l64 = logits.to(torch.float64)
        if gens is None:
            u = torch.rand(l64.shape, dtype=torch.float64, device=l64.device)
        else:
            u = torch.stack([
                torch.rand(l64.shape[1:], dtype=torch.float64, generator=g, device=g.device).to(l64.device)
                if g is not None else torch.full(l64.shape[1:], 0.5, dtype=torch.float64, device=l64.device)
                for g in gens
            ])
        u = u.clamp(min=torch.finfo(torch.float64).tiny)
        return torch.argmax(l64 - temperature * torch.log(-torch.log(u)), dim=-1)

    def _attn_request(self, masked: torch.Tensor, known: torch.Tensor, keys_known: torch.Tensor | None = None,
                      row_start: int = 0, n_rows: int | None = None) -> Any:
        """The sampler's statistics request for a forward of ``n_rows`` input rows (default:
        ``masked``'s width) whose candidate query rows (``masked`` / ``known``) start at input row
        ``row_start``; ``keys_known`` covers the forward's keys (None: the rows are the keys)."""
        if not getattr(self.sampler, "needs_attention", False):
            return None
        req = self.sampler.attention_request(masked, known, keys_known)
        n = masked.shape[1] if n_rows is None else n_rows
        key = (id(req), row_start, masked.shape[1], n)
        if self._last_request[0] == key and req.query_index is None and req.key_mask is None:
            return self._last_request[1]  # a constant request (attn over all rows): reuse it
        if row_start or masked.shape[1] != n:
            req = _place_rows(req, row_start, masked.shape[1], masked.device)
        out = _share_probs(req, n)
        self._last_request = (key, out)
        return out

    # -- bidirectional models (LLaDA, Dream): prompt-aligned blocks ------------------------------
    def bidirectional(self, ids: torch.Tensor, am: torch.Tensor | None) -> GenerationResult:
        import torch

        cfg, adapter = self.config, self.adapter
        b, p = ids.shape
        gen, bl = cfg.gen_length, cfg.block_size
        total = p + gen
        x = torch.full((b, total), self.mask_id, dtype=torch.long, device=ids.device)
        x[:, :p] = ids
        real = torch.ones((b, total), dtype=torch.bool, device=ids.device)
        pos_ids = mask4 = None
        if am is not None:
            real[:, :p] = am.bool()
            full_am = real.long()
            pos_ids = full_am.cumsum(-1) - 1
            pos_ids = pos_ids.masked_fill(full_am == 0, 1)
            mask4 = real[:, None, :, None] & real[:, None, None, :]
        prompt_real = real.clone()
        prompt_real[:, p:] = False
        cfg_on = cfg.cfg_scale > 0
        lead = 1 if adapter.shift_logits else 0
        gens = self._generators(b, ids.device)
        active = torch.ones(b, dtype=torch.bool, device=ids.device)
        rows_nfe = torch.zeros(b, dtype=torch.long)
        steps = cfg.block_steps
        stopped = [False] * b
        bar = _progress(self.progress, cfg.num_blocks * steps)

        def full_forward(use_cache: bool, attn_req: Any, lo: int, hi: int,
                         rows: Any = None) -> tuple[torch.Tensor, Any]:
            """Forward of the whole sequence of every row, or only of ``rows`` (LongTensor); returns
            the aligned logits of the block ``[lo, hi)`` and the model output."""
            xs = x if rows is None else x[rows]
            nb = xs.shape[0]
            xin, kw = xs, {}
            if cfg_on:
                un = xs.clone()
                un[prompt_real if rows is None else prompt_real[rows]] = self.mask_id
                xin = torch.cat([xs, un])
            if am is not None:
                m4 = mask4 if rows is None else mask4[rows]
                pi = pos_ids if rows is None else pos_ids[rows]
                kw["attention_mask"] = torch.cat([m4, m4]) if cfg_on else m4
                kw["position_ids"] = torch.cat([pi, pi]) if cfg_on else pi
            if use_cache:
                kw["use_cache"] = True
            if attn_req is not None:
                kw["attn_stats"] = attn_req
            if self.keep_logits:  # the head runs on the block only (raw rows lo - lead ..)
                kw["logits_to_keep"] = slice(lo - lead, hi - lead)
            out = self._call(xin, **kw)
            logits = out.logits if self.keep_logits else adapter.align_logits(out.logits)[:, lo:hi]
            if cfg_on:
                cond, unc = logits[:nb], logits[nb:]
                logits = unc + (cfg.cfg_scale + 1) * (cond - unc)
            return logits, out

        for blk in range(cfg.num_blocks):
            lo, hi = p + blk * bl, p + (blk + 1) * bl
            block_masked = ((x[:, lo:hi] == self.mask_id) & active[:, None]).sum(1)
            plan = plan_block(cfg, block_masked, bl, steps)
            cache = None
            i = 0
            while True:
                eligible_any = ((x[:, lo:hi] == self.mask_id) & active[:, None]).any()
                extra = cfg.cache_extra_forward and self.kv != "none" and i == 1
                if (not bool(eligible_any) and not extra) or i >= self._max_steps(steps, bl):
                    break
                masked = x == self.mask_id
                known = real & ~masked
                attn, offsets = None, (0, 0)
                if self.kv == "none" or i == 0:
                    req = rows = None
                    if self.kv == "none":
                        # rows with nothing left to decode in this block (stopped, or block
                        # done) cost no compute: only the others run, their logits are
                        # scattered back (rows never interact in a forward)
                        rows = self._rows_to_run(x, lo, hi, active)
                        mk, kn, pr, rl = masked, known, prompt_real, real
                        if rows is not None:
                            mk, kn, pr, rl = mk[rows], kn[rows], pr[rows], rl[rows]
                        if cfg_on:
                            un_masked = mk | pr
                            mk, kn = torch.cat([mk, un_masked]), torch.cat([kn, rl & ~un_masked])
                        req = self._attn_request(mk, kn)
                    else:
                        # cached decoding: the statistics cover the block's query rows only
                        req = self._attn_request(masked[:, lo:hi], known[:, lo:hi], known, lo, total)
                        offsets = (0, lo)
                    logits, out = full_forward(self.kv != "none", req, lo, hi, rows)
                    if rows is not None:
                        logits = _scatter_rows(logits, rows, b)
                    if req is not None:
                        attn = out.attn_stats
                        if cfg_on:
                            attn = _rows(attn, b if rows is None else int(rows.numel()))
                        if rows is not None:
                            attn = _scatter_stats(attn, rows, b)
                    if self.kv == "prefix":
                        cache = out.past_key_values.truncate(lo - lead)
                    elif self.kv == "dual":
                        cache = out.past_key_values
                else:
                    c0 = lo - lead
                    c1 = total if self.kv == "prefix" else hi
                    # rows with nothing left in this block skip the cached forward too (their
                    # cache rows are selected out; a Fast-dLLM extra forward keeps every row)
                    rows = None if extra else self._rows_to_run(x, lo, hi, active)
                    kw: dict[str, Any] = {"past_key_values": cache if rows is None else cache.select(rows),
                                          "cache_position": c0}
                    if am is not None:
                        kw["attention_mask"] = _take(mask4, rows)[:, :, c0:c1, :]
                        kw["position_ids"] = _take(pos_ids, rows)[:, c0:c1]
                    mk, kn = _take(masked, rows), _take(known, rows)
                    req = self._attn_request(mk[:, lo:hi], kn[:, lo:hi], kn, lead, c1 - c0)
                    if req is not None:
                        kw["attn_stats"] = req
                    if self.keep_logits:
                        kw["logits_to_keep"] = slice(0, bl)
                    out = self._call(_take(x, rows)[:, c0:c1], **kw)
                    if self.keep_logits:  # raw row j scores position c0 + lead + j = lo + j
                        logits = out.logits
                    else:
                        logits = adapter.align_logits(out.logits)[:, lead:lead + bl]
                    if rows is not None:
                        logits = _scatter_rows(logits, rows, b)
                    if req is not None:
                        attn, offsets = out.attn_stats, (0, lo)
                        if rows is not None:
                            attn = _scatter_stats(attn, rows, b)
                self._step(x, lo, hi, logits, active, blk, i, plan, steps, known, attn, offsets, gens, rows_nfe)
                i += 1
                bar.update(1)
                if cfg.early_stop:
                    self._early_stop(x, p, active, stopped)
                    if not bool(active.any()):
                        break
            if (cfg.early_stop and not bool(active.any())) or self._block_end(x, p, hi, active, stopped):
                break
        return self._finish(x, p, rows_nfe, stopped, bar)

    # -- block-causal models (SDAR): absolute blocks, prefix cache, store-kv forward -------------
    def block_causal(self, ids: torch.Tensor, am: torch.Tensor | None) -> GenerationResult:
        import torch

        if am is None:
            return self._block_causal_group(ids)
        # rows of different prompt lengths have different block alignments: decode each length
        # as its own batch (row results do not depend on batch-mates)
        lengths = am.sum(1)
        outputs: dict[int, tuple[torch.Tensor, GenerationResult]] = {}
        for length in sorted({int(v) for v in lengths}):
            rows = torch.nonzero(lengths == length).flatten()
            sub = ids[rows][:, ids.shape[1] - length:]
            outputs[length] = (rows, self._block_causal_group(sub))
        width = max(r.sequences.shape[1] - ln for ln, (_, r) in outputs.items())
        pad = self.adapter.pad_id if self.adapter.pad_id is not None else self.stop_ids[0]
        gen = torch.full((ids.shape[0], width), pad, dtype=torch.long, device=ids.device)
        rows_nfe = torch.zeros(ids.shape[0], dtype=torch.long)
        stopped = [False] * ids.shape[0]
        for length, (rows, res) in outputs.items():
            g = res.sequences[:, length:]
            gen[rows, : g.shape[1]] = g
            rows_nfe[rows.cpu()] = torch.as_tensor(res.stats["nfe_rows"])
            for j, r in enumerate(rows.tolist()):
                stopped[r] = res.stats["stopped"][j]
        seq = torch.cat([ids, gen], dim=1)
        return self._result(seq, gen, rows_nfe, stopped)

    def _block_causal_group(self, ids: torch.Tensor) -> GenerationResult:
        import torch

        cfg, adapter = self.config, self.adapter
        b, p = ids.shape
        bl = cfg.block_size
        n_blocks = math.ceil((p + cfg.gen_length) / bl)
        total = n_blocks * bl
        x = torch.full((b, total), self.mask_id, dtype=torch.long, device=ids.device)
        x[:, :p] = ids
        gens = self._generators(b, ids.device)
        active = torch.ones(b, dtype=torch.bool, device=ids.device)
        rows_nfe = torch.zeros(b, dtype=torch.long)
        stopped = [False] * b
        steps = cfg.steps_per_block or cfg.block_steps
        model_block = int(adapter.block_size)
        cache = None
        prefill_blocks = p // bl
        if prefill_blocks:
            kw: dict[str, Any] = {"use_cache": True}
            if bl != model_block:  # the model's own pattern uses its block size; ours differs
                n = prefill_blocks * bl
                blocks = torch.arange(n, device=ids.device) // bl
                kw["attention_mask"] = (blocks[None, :] <= blocks[:, None])[None, None].expand(b, 1, n, n)
            cache = self._call(x[:, : prefill_blocks * bl], store=True, **kw).past_key_values
        bar = _progress(self.progress, (n_blocks - prefill_blocks) * steps)
        for blk in range(prefill_blocks, n_blocks):
            lo, hi = blk * bl, (blk + 1) * bl
            block_masked = ((x[:, lo:hi] == self.mask_id) & active[:, None]).sum(1)
            plan = plan_block(cfg, block_masked, bl, steps)
            i = 0
            while True:
                eligible_any = ((x[:, lo:hi] == self.mask_id) & active[:, None]).any()
                if not bool(eligible_any) or i >= self._max_steps(steps, bl):
                    break
                rows = self._rows_to_run(x, lo, hi, active)  # rows done with this block skip it
                kw = {}
                if cache is not None:
                    kw = {"past_key_values": cache if rows is None else cache.select(rows), "cache_position": lo}
                masked = _take(x, rows)[:, :hi] == self.mask_id
                known = ~masked
                req = self._attn_request(masked[:, lo:hi], known[:, lo:hi], known)
                if req is not None:
                    kw["attn_stats"] = req
                out = self._call(_take(x, rows)[:, lo:hi], **kw)
                logits = adapter.align_logits(out.logits)
                attn = out.attn_stats if req is not None else None
                if rows is not None:
                    logits = _scatter_rows(logits, rows, b)
                    attn = None if attn is None else _scatter_stats(attn, rows, b)
                known = x[:, :hi] != self.mask_id
                self._step(x, lo, hi, logits, active, blk, i, plan, steps, known, attn, (0, lo), gens, rows_nfe)
                i += 1
                bar.update(1)
                if cfg.early_stop:
                    self._early_stop(x, p, active, stopped)
            if cfg.early_stop and not bool(active.any()):
                break  # every row stopped: no store-kv forward, no further block
            kw = {"past_key_values": cache, "cache_position": lo} if cache is not None else {}
            cache = self._call(x[:, lo:hi], store=True, use_cache=True, **kw).past_key_values
            rows_nfe += active.to(rows_nfe.dtype)
            if self._block_end(x, p, hi, active, stopped):
                break
        return self._finish(x, p, rows_nfe, stopped, bar)

    # -- helpers ----------------------------------------------------------------------------------
    def _rows_to_run(self, x: torch.Tensor, lo: int, hi: int, active: torch.Tensor) -> torch.Tensor | None:
        """Batch rows that still have masks in block ``[lo, hi)`` (None: every row does)."""
        import torch

        need = ((x[:, lo:hi] == self.mask_id) & active[:, None]).any(1)
        if bool(need.all()):
            return None
        return torch.nonzero(need).flatten()

    def _block_end(self, x: torch.Tensor, p: int, hi: int, active: torch.Tensor, stopped: list) -> bool:
        """``stop_on_eos`` at the end of a block; True when no row is left to decode."""
        if not self.config.stop_on_eos:
            return False
        self._stop(x, p, hi, active, stopped)
        return not bool(active.any())

    def _finish(self, x: torch.Tensor, p: int, rows_nfe: torch.Tensor, stopped: list, bar: Any) -> GenerationResult:
        bar.close()
        self._fill_stopped(x, p)
        return self._result(x, x[:, p:], rows_nfe, stopped)

    def _stop(self, x: torch.Tensor, p: int, hi: int, active: torch.Tensor, stopped: list) -> None:
        import torch

        hit = torch.isin(x[:, p:hi], torch.tensor(self.stop_ids, device=x.device)).any(1)
        for r in torch.nonzero(hit & active).flatten().tolist():
            stopped[r] = True
        active &= ~hit

    def _early_stop(self, x: torch.Tensor, p: int, active: torch.Tensor, stopped: list) -> None:
        """``early_stop``: stop the active rows whose generated tokens hold a stop id with no
        mask before it; their remaining masks become the pad id."""
        import torch

        region = x[:, p:]
        masked = region == self.mask_id
        before = masked.long().cumsum(1) - masked.long()  # masks strictly left of each column
        is_stop = torch.isin(region, torch.tensor(self.stop_ids, device=x.device))
        hit = (is_stop & (before == 0)).any(1) & active
        if not bool(hit.any()):
            return
        pad = self.adapter.pad_id if self.adapter.pad_id is not None else self.stop_ids[0]
        region[hit[:, None] & masked] = pad
        for r in torch.nonzero(hit).flatten().tolist():
            stopped[r] = True
        active &= ~hit

    def _fill_stopped(self, x: torch.Tensor, p: int) -> None:
        pad = self.adapter.pad_id if self.adapter.pad_id is not None else self.stop_ids[0]
        region = x[:, p:]
        region[region == self.mask_id] = pad  # only rows stopped early still hold masks

    def _result(self, seq: torch.Tensor, gen: torch.Tensor, rows_nfe: torch.Tensor, stopped: list) -> GenerationResult:
        committed = sum(len(c) for t in self.trace for c in t["committed"])
        stats = {
            "nfe_rows": rows_nfe.tolist(),
            "steps": self.step,
            "nfe_denoise": self.nfe_denoise,
            "nfe_store": self.nfe_store,
            "forward_rows": self.forward_rows,
            "tokens_committed": committed,
            "trace": self.trace,
            "stopped": stopped,
        }
        tpf = committed / self.nfe if self.nfe else 0.0
        return GenerationResult(sequences=seq, nfe=self.nfe, tokens_per_forward=tpf, stats=stats)


def _share_probs(req: Any, n: int) -> Any:
    """``req`` with ``share_probs=True`` when its statistics cover at least half of the ``n``
    query rows: the model then attends eagerly in the requested layers and reuses those
    probabilities for the statistics (cheaper than SDPA plus a second score pass; the output
    equals SDPA's to float rounding). Few selected rows keep SDPA + row-wise statistics."""
    rows = getattr(req, "query_index", None)
    if hasattr(req, "share_probs") and not req.share_probs and (rows is None or 2 * int(rows.shape[-1]) >= n):
        # positional construction: dataclasses.replace costs more than the rest of the request
        return type(req)(req.layers, rows, req.key_mask, req.heads, req.return_probs, True, req.col_sums)
    return req


def _accepts(model: Any, name: str) -> bool:
    """Whether ``model``'s forward takes the keyword ``name`` (native families take
    ``logits_to_keep``; other models get full logits)."""
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _take(t: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """``t[rows]`` (every row when ``rows`` is None)."""
    return t if rows is None else t[rows]


def _place_rows(req: Any, start: int, n: int, device: Any) -> Any:
    """``req`` with its query rows (relative to a ``n``-row region; None = all of them) moved to
    input rows ``start + ...``."""
    import torch

    rows = req.query_index
    if rows is None:
        rows = torch.arange(start, start + n, device=device)
    else:
        rows = rows + start
    return replace(req, query_index=rows)


def _scatter_rows(t: torch.Tensor, rows: torch.Tensor, b: int) -> torch.Tensor:
    """``[len(rows), ...]`` -> ``[b, ...]`` with zeros in the rows that did not run."""
    full = t.new_zeros((b, *t.shape[1:]))
    full[rows] = t
    return full


def _scatter_stats(attn: Any, rows: torch.Tensor, b: int) -> Any:
    """Attention statistics of a forward over ``rows`` placed at those rows of a ``b``-row batch
    (zeros elsewhere; the layer axis comes first)."""

    def put(t: Any) -> Any:
        return None if t is None else _scatter_rows(t.transpose(0, 1), rows, b).transpose(0, 1)

    return replace(attn, col_sum=put(attn.col_sum), row_sum=put(attn.row_sum),
                   probs=put(getattr(attn, "probs", None)))


def _rows(attn: Any, b: int) -> Any:
    """Attention statistics of the first ``b`` rows (the conditional half of a guidance batch)."""
    return replace(
        attn,
        col_sum=None if attn.col_sum is None else attn.col_sum[:, :b],
        row_sum=None if attn.row_sum is None else attn.row_sum[:, :b],
        probs=None if getattr(attn, "probs", None) is None else attn.probs[:, :b],
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="denoising", unit="step", leave=False)
