"""Group-relative RL for diffusion LMs: rollouts through our engine, verifiable rewards, clipped ratio + KL.

Methods and sources:

- GRPO group-normalised advantages and the clipped objective: "DeepSeekMath" (arXiv 2402.03300),
  PPO (arXiv 1707.06347); the KL term uses the k3 estimator.
- ``estimator="d1"`` — diffu-GRPO, "d1: Scaling Reasoning in Diffusion Large Language Models via
  Reinforcement Learning" (arXiv 2504.12216): one forward with the whole completion masked and
  each prompt token masked with probability ``prompt_mask_prob`` (a fresh mask per policy
  iteration); the per-token log-probs of that one step stand for the sequence log-prob.
- ``estimator="tracerl"`` — TraceRL, "Revolutionizing Reinforcement Learning Framework for
  Diffusion Large Language Models" (arXiv 2509.06949): the rollout's own decoding trace (which
  step committed each token, ``GenerationResult.stats["trace"]``); consecutive steps are grouped
  by the ``shrink`` factor into slices, and the tokens of slice ``j`` are scored with the tokens
  of earlier slices visible and those of slice ``j`` and later masked.
- ``estimator="agdo"`` — AGDO (arXiv 2606.12273): the slices follow the attention-guided order
  (``masking.agdo_order`` on the rollout policy's head-mean attention of the clean prompt +
  completion, ``agdo_tokens_per_step`` tokens per step, ``shrink`` steps per slice) and the
  advantage is shaped per token, ``A'_k = A + sign(A) · agdo_delta · I_k``.

Loop (one optimizer step per policy iteration, ``num_iterations`` per batch of rollouts):
sample ``batch_size`` prompts per process → ``group_size`` completions each with
``dllm_eval.generate`` (any sampler; options from ``decode``) → rewards → advantages per group →
log-prob rows of the estimator → loss ``mean_seq mean_tok [-min(ρA, clip(ρ)A) + β KL]``, whose
per-token form lets the rows be run in chunks with a backward each. Rollout and mask randomness
are seeded by (seed, step, prompt index), so a resumed run repeats the same rollouts. It runs
under ``accelerate launch`` (DDP); the reference policy (a frozen copy) exists only when
``beta > 0``. Simplifications (as nanochat's ``chat_rl.py`` lists its own): the reward of a
completion is computed once; completions are scored up to and including their first EOS; no
value model, no entropy bonus.

Run: ``dllm-eval train rl --model DIR --data prompts.jsonl --estimator tracerl --reward math``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from dllm_eval.trainers import losses, masking
from dllm_eval.trainers.attention import head_mean_attention
from dllm_eval.trainers.config import RLConfig

RewardFn = Callable[[list[dict], list[str], list[list[int]]], list[float]]


# ------------------------------------------------------------------------------------ rewards


def builtin_reward(name: str) -> RewardFn:
    """Reward function by name: ``math`` (math-verify), ``code`` (sandboxed tests), ``exact``,
    ``contains``, or ``module:function`` with the signature ``(records, texts, ids) -> list[float]``."""
    if ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"reward={name!r}: cannot import {attr!r} from {module!r} ({exc})") from exc

    def math_reward(recs, texts, ids):
        from dllm_eval.tasks.extract import math_equal

        return [float(math_equal(t, r["answer"])) for r, t in zip(recs, texts)]

    def code_reward(recs, texts, ids):
        from dllm_eval.tasks.extract import extract_code
        from dllm_eval.tasks.sandbox import run_python

        out = []
        for r, t in zip(recs, texts):
            if "tests" not in r:
                raise ValueError("reward='code' needs a 'tests' field (Python asserts) in every record")
            verdict = run_python(extract_code(t, r.get("entry_point")) + "\n\n" + r["tests"], timeout_s=10)
            out.append(float(verdict.status == "ok"))
        return out

    def exact_reward(recs, texts, ids):
        return [float(t.strip() == r["answer"].strip()) for r, t in zip(recs, texts)]

    def contains_reward(recs, texts, ids):
        return [float(r["answer"] in t) for r, t in zip(recs, texts)]

    table = {"math": math_reward, "code": code_reward, "exact": exact_reward, "contains": contains_reward}
    if name not in table:
        raise ValueError(f"reward={name!r} is invalid; accepted: {', '.join(table)}")
    return table[name]


# ------------------------------------------------------------------------------------ rollouts


@dataclass
class Rollouts:
    """A batch of ``N = prompts × group_size`` completions (group-major)."""

    sequences: torch.Tensor  # [N, P + G]
    attention_mask: torch.Tensor  # [N, P + G] 1 = real token (left padding of the prompt = 0)
    prompt_len: int  # P (padded prompt length)
    completion_mask: torch.Tensor  # [N, G] bool: scored tokens (up to and including the first EOS)
    commit_step: torch.Tensor  # [N, G] long: decoding step that committed each token
    rewards: torch.Tensor  # [N]
    texts: list[str]


def _seeded(*parts: int) -> int:
    h = 0
    for p in parts:
        h = (h * 1_000_003 + int(p) + 12_345) % (2**61 - 1)
    return h


def decode_options(cfg: RLConfig) -> dict[str, Any]:
    """DecodeConfig options for rollouts: ``decode`` KEY=VALUE pairs + gen_length + temperature."""
    from dataclasses import fields

    from dllm_eval.samplers.config import DecodeConfig

    known = {f.name for f in fields(DecodeConfig)}
    opts: dict[str, Any] = {"steps": cfg.gen_length}
    for part in filter(None, (p.strip() for p in cfg.decode.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in known:
            raise ValueError(f"decode option {part!r} is invalid; accepted: KEY=VALUE with KEY in {', '.join(sorted(known))}")
        opts[key.strip()] = value.strip()
    opts["gen_length"] = cfg.gen_length
    opts["temperature"] = cfg.temperature
    opts.pop("seed", None)  # rollouts draw from the seeded global generator (distinct rows)
    return opts


def commit_steps_from_trace(trace: list[dict], n_rows: int, prompt_len: int, gen: int) -> torch.Tensor:
    """[N, G] step index at which each completion position was committed (from ``stats['trace']``)."""
    steps = torch.full((n_rows, gen), -1, dtype=torch.long)
    for s, entry in enumerate(trace):
        for r, positions in enumerate(entry["committed"]):
            for p in positions:
                if prompt_len <= p < prompt_len + gen:
                    steps[r, p - prompt_len] = s
    return steps


@torch.no_grad()
def rollout(model, adapter, tokenizer, records: list[dict], cfg: RLConfig, step: int,
            reward_fn: RewardFn) -> Rollouts:
    """Sample ``group_size`` completions per record with ``dllm_eval.generate`` and score them."""
    from dllm_eval.samplers.engine import generate
    from dllm_eval.trainers.data import prompt_ids

    G = cfg.group_size
    pad = adapter.pad_id if adapter.pad_id is not None else adapter.eos_ids[0]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    groups = []  # (prompt ids, sequences [G, P_i + gen_i], commit steps [G, gen_i])
    for rec in records:
        p = prompt_ids(tokenizer, rec["prompt"])
        ids = torch.tensor([p] * G, dtype=torch.long, device=device)
        # one seeded stream per (seed, step, prompt): the rows of a group differ, a rerun or a
        # different split of the global batch over processes repeats the same rollouts
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(_seeded(cfg.seed, step, rec.get("index", 0)))
            res = generate(model, ids, adapter=adapter, **decode_options(cfg))
        seq = res.sequences.cpu()
        gen_i = seq.shape[1] - len(p)
        groups.append((p, seq, commit_steps_from_trace(res.stats.get("trace", []), G, len(p), gen_i)))
    model.train(was_training)
    P = max(len(g[0]) for g in groups)
    gen = max(g[1].shape[1] - len(g[0]) for g in groups)
    N = G * len(groups)
    seq = torch.full((N, P + gen), pad, dtype=torch.long)
    am = torch.zeros(N, P + gen, dtype=torch.long)
    steps = torch.full((N, gen), -1, dtype=torch.long)
    in_gen = torch.zeros(N, gen, dtype=torch.bool)
    for i, (p, s_i, st_i) in enumerate(groups):
        rows = slice(i * G, (i + 1) * G)
        g_i = s_i.shape[1] - len(p)
        seq[rows, P - len(p):P + g_i] = s_i
        am[rows, P - len(p):P + g_i] = 1
        steps[rows, :g_i] = st_i
        steps[rows, g_i:] = int(st_i.max()) + 1 if g_i < gen else 0  # block rounding tail (never scored)
        in_gen[rows, :g_i] = True
    comp = seq[:, P:]
    is_eos = torch.isin(comp, torch.tensor(list(adapter.eos_ids)))
    before_first = (torch.cumsum(is_eos.long(), 1) - is_eos.long() == 0) & in_gen
    texts = tokenizer.batch_decode([c[m].tolist() for c, m in zip(comp, before_first & ~is_eos)],
                                   skip_special_tokens=True)
    recs = [r for r in records for _ in range(G)]
    rewards = torch.tensor(reward_fn(recs, texts, [c[m].tolist() for c, m in zip(comp, in_gen)]),
                           dtype=torch.float32)
    return Rollouts(seq, am, P, before_first, steps, rewards, texts)


# ------------------------------------------------------------------------- log-prob estimators


@dataclass
class Plan:
    """Forward rows of an estimator: row m runs ``inputs[m]`` and scores the completion tokens
    ``score[m]`` ([M, G] bool) of sequence ``owner[m]``; every completion token is scored once."""

    inputs: torch.Tensor  # [M, L]
    attention_mask: torch.Tensor  # [M, L]
    owner: torch.Tensor  # [M]
    score: torch.Tensor  # [M, G]


def plan_d1(roll: Rollouts, mask_id: int, prompt_mask_prob: float, gens: list[torch.Generator]) -> Plan:
    """d1: completion fully masked, real prompt tokens masked with ``prompt_mask_prob`` (one generator per sequence)."""
    x = roll.sequences.clone()
    P = roll.prompt_len
    x[:, P:] = mask_id
    draws = torch.stack([torch.rand(P, generator=g) for g in gens])
    hit = (draws < prompt_mask_prob) & roll.attention_mask[:, :P].bool()
    x[:, :P][hit] = mask_id
    N, G = roll.completion_mask.shape
    return Plan(x, roll.attention_mask, torch.arange(N), torch.ones(N, G, dtype=torch.bool))


def plan_slices(roll: Rollouts, order: torch.Tensor, mask_id: int, shrink: int) -> Plan:
    """Rows from a per-token order ([N, G] step ids): slice j = steps ranked [j·shrink, (j+1)·shrink)."""
    P = roll.prompt_len
    rows, ams, owners, scores = [], [], [], []
    for n in range(order.shape[0]):
        uniq = torch.unique(order[n])
        if bool((uniq < 0).any()):
            raise ValueError("a completion token has no decoding step in the trace; tracerl needs the "
                             "engine's stats['trace'] of every committed position")
        rank = torch.searchsorted(uniq, order[n])  # dense rank 0..S-1
        slice_of = rank // int(shrink)
        for j in range(int(slice_of.max()) + 1):
            x = roll.sequences[n].clone()
            x[P:][slice_of >= j] = mask_id
            rows.append(x)
            ams.append(roll.attention_mask[n])
            owners.append(n)
            scores.append(slice_of == j)
    return Plan(torch.stack(rows), torch.stack(ams), torch.tensor(owners), torch.stack(scores))


def agdo_order_and_influence(model, roll: Rollouts, cfg: RLConfig, attention_fn=None) -> tuple[torch.Tensor, torch.Tensor]:
    """AGDO order ([N, G] step ids) and normalised influence ([N, G]) from the policy's attention."""
    device = next(model.parameters()).device
    fn = attention_fn or (lambda m, ids, am: head_mean_attention(m, ids, am, layer=cfg.agdo_layer))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        attn = fn(model, roll.sequences.to(device), roll.attention_mask.to(device)).cpu()
    model.train(was_training)
    P = roll.prompt_len
    N, G = roll.completion_mask.shape
    order = torch.zeros(N, G, dtype=torch.long)
    infl = torch.zeros(N, G)
    comp = torch.arange(P, P + G)
    for n in range(N):
        valid = roll.attention_mask[n].bool()
        prompt = valid[:P].nonzero().flatten()
        order[n] = masking.agdo_order(attn[n], prompt, comp, cfg.agdo_tokens_per_step)
        infl[n] = masking.attention_influence(attn[n], valid.nonzero().flatten(), comp, cfg.agdo_influence_norm)
    return order, infl


# ------------------------------------------------------------------------------------ training


class RLTrainer:
    """The RL loop (see module docstring). ``train()`` returns the log history."""

    def __init__(self, cfg: RLConfig, *, reward_fn: RewardFn | None = None,
                 model_and_tokenizer: tuple | None = None, attention_fn=None) -> None:
        from accelerate import Accelerator
        from dllm_eval.trainers.data import load_records, rl_prompts
        from dllm_eval.trainers.sft import apply_lora, load_for_training
        from transformers import get_scheduler

        cfg.validate()
        if cfg.grad_accum != 1:
            raise ValueError(f"grad_accum={cfg.grad_accum!r} is invalid for RL; accepted: 1 "
                             "(the rollout batch is batch_size x group_size per process)")
        self.cfg = cfg
        self.reward_fn = reward_fn or builtin_reward(cfg.reward)
        self.attention_fn = attention_fn
        cpu = cfg.device == "cpu" or not torch.cuda.is_available()
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision)
        model, self.tokenizer, self.adapter = model_and_tokenizer or load_for_training(cfg)
        self.records = rl_prompts(load_records(cfg.data))
        self.ref_model = None
        if cfg.beta > 0:
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False).to(self.accelerator.device)
        model = apply_lora(model, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.optim == "adamw_torch":
            opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        elif cfg.optim == "sgd":
            opt = torch.optim.SGD(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"optim={cfg.optim!r} is invalid for RL; accepted: adamw_torch, sgd")
        total = cfg.max_steps * cfg.num_iterations
        sched = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, opt, sched)
        self.step = 0
        self.log_history: list[dict] = []
        self._resume()

    # -- data
    def _batch_records(self, step: int) -> list[dict]:
        """This process's prompts of ``step`` (a seeded permutation per epoch; global batch split by rank)."""
        acc, cfg = self.accelerator, self.cfg
        global_bs = cfg.batch_size * acc.num_processes
        per_epoch = max(1, len(self.records) // global_bs)
        epoch, k = divmod(step, per_epoch)
        perm = torch.randperm(len(self.records), generator=torch.Generator().manual_seed(_seeded(cfg.seed, epoch)))
        idx = perm[k * global_bs:(k + 1) * global_bs].tolist()
        if len(idx) < global_bs:  # fewer records than a global batch: cycle
            idx = [perm[i % len(perm)].item() for i in range(k * global_bs, (k + 1) * global_bs)]
        mine = idx[acc.process_index * cfg.batch_size:(acc.process_index + 1) * cfg.batch_size]
        return [self.records[i] for i in mine]

    # -- one optimizer step
    def _plan(self, roll: Rollouts, it: int, order_infl) -> Plan:
        cfg, mask_id = self.cfg, self.adapter.mask_id
        if cfg.estimator == "d1":
            idx = [r.get("index", 0) for r in self._records for _ in range(cfg.group_size)]
            gens = [torch.Generator().manual_seed(_seeded(cfg.seed, self.step, it, i, j % cfg.group_size))
                    for j, i in enumerate(idx)]
            return plan_d1(roll, mask_id, cfg.prompt_mask_prob, gens)
        if cfg.estimator == "tracerl":
            return plan_slices(roll, roll.commit_step, mask_id, cfg.shrink)
        return plan_slices(roll, order_infl[0], mask_id, cfg.shrink)

    def _token_logps(self, model, plan: Plan, N: int, G: int, chunk: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of the plan rows in ``chunk``, scattered to [N, G] (+ which were scored)."""
        device = next(model.parameters()).device
        x = plan.inputs[chunk].to(device)
        am = plan.attention_mask[chunk].to(device)
        out = self.adapter.forward(model, x, attention_mask=None if bool(am.all()) else am)
        P = x.shape[1] - G
        owner = plan.owner[chunk]
        clean = self._roll.sequences[owner, P:].to(device)
        lp = losses.token_logprobs(out.logits[:, P:], clean)  # [m, G]
        sc = plan.score[chunk].to(device)
        own = (owner.to(device),)
        full = torch.zeros(N, G, device=device, dtype=lp.dtype).index_put(own, lp * sc, accumulate=True)
        hit = torch.zeros(N, G, device=device).index_put(own, sc.float(), accumulate=True) > 0
        return full, hit

    def _all_logps(self, model, plan: Plan, N: int, G: int) -> torch.Tensor:
        with torch.no_grad():
            total = torch.zeros(N, G, device=self.accelerator.device)
            for c in self._chunks(plan, N):
                lp, _ = self._token_logps(model, plan, N, G, c)
                total += lp
        return total

    def _chunks(self, plan: Plan, N: int) -> list[slice]:
        M, step = plan.inputs.shape[0], self.cfg.forward_batch
        return [slice(s, min(s + step, M)) for s in range(0, M, step)]

    def _update(self, plan: Plan, adv_tok: torch.Tensor, old: torch.Tensor | None,
                ref: torch.Tensor | None) -> dict[str, float]:
        cfg, acc = self.cfg, self.accelerator
        roll = self._roll
        N, G = roll.completion_mask.shape
        device = acc.device
        mask = roll.completion_mask.to(device).float()
        w = mask / mask.sum(1, keepdim=True).clamp_min(1.0) / N  # mean over tokens, then sequences
        chunks = self._chunks(plan, N)
        loss_sum, kl_sum, clip_sum = 0.0, 0.0, 0.0
        self.optimizer.zero_grad(set_to_none=True)
        for i, c in enumerate(chunks):
            ctx = acc.no_sync(self.model) if i < len(chunks) - 1 else _null()
            with ctx:
                lp, hit = self._token_logps(self.model, plan, N, G, c)
                old_c = lp.detach() if old is None else old
                ratio = torch.exp(lp - old_c)
                a = adv_tok.to(device)
                surr = torch.minimum(ratio * a, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * a)
                per_tok = -surr
                if ref is not None:
                    d = ref - lp
                    kl = torch.exp(d) - d - 1
                    per_tok = per_tok + cfg.beta * kl
                    kl_sum += float((kl.detach() * w * hit).sum())
                loss = (per_tok * w * hit).sum()
                if not torch.isfinite(loss):
                    raise losses.NonFiniteLossError(
                        f"non-finite RL loss at step {self.step + 1}; training stopped before the "
                        "optimizer step, no checkpoint was written for it. Lower --learning-rate or check the rewards."
                    )
                acc.backward(loss)
                loss_sum += float(loss.detach())
                clip_sum += float(((ratio.detach() - 1).abs() > cfg.clip_eps).float().mul(w * hit).sum())
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss_sum, "kl": kl_sum, "clip_frac": clip_sum}

    def train_step(self) -> dict[str, float]:
        cfg, acc = self.cfg, self.accelerator
        model = acc.unwrap_model(self.model)
        records = self._batch_records(self.step)
        self._records = records
        roll = rollout(model, self.adapter, self.tokenizer, records, cfg, self.step, self.reward_fn)
        self._roll = roll
        N, G = roll.completion_mask.shape
        adv = losses.group_advantages(roll.rewards, cfg.group_size, scale=cfg.scale_rewards)
        order_infl = agdo_order_and_influence(model, roll, cfg, self.attention_fn) if cfg.estimator == "agdo" else None
        if order_infl is not None:
            adv_tok = losses.shape_advantages(adv, order_infl[1], cfg.agdo_delta)
        else:
            adv_tok = adv[:, None].expand(N, G)
        plans = [self._plan(roll, it, order_infl) for it in range(cfg.num_iterations)]
        olds = [None] * cfg.num_iterations
        if cfg.num_iterations > 1:
            olds = [self._all_logps(self.model, p, N, G) for p in plans]
        refs = [self._all_logps(self.ref_model, p, N, G) if self.ref_model is not None else None for p in plans]
        stats: dict[str, float] = {}
        for it in range(cfg.num_iterations):
            stats = self._update(plans[it], adv_tok, olds[it], refs[it])
        reward = acc.gather(roll.rewards.to(acc.device)).float().mean()
        self.step += 1
        entry = {"step": self.step, "reward": float(reward), **stats,
                 "completion_tokens": float(roll.completion_mask.float().sum(1).mean())}
        self.log_history.append(entry)
        return entry

    # -- checkpoints
    def _ckpt_dir(self, step: int) -> Path:
        return Path(self.cfg.output) / f"checkpoint-{step}"

    def save_checkpoint(self) -> Path:
        acc = self.accelerator
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise losses.NonFiniteLossError(f"parameters became non-finite ({bad[0]}); the checkpoint was NOT written")
        d = self._ckpt_dir(self.step)
        acc.save_state(str(d))
        if acc.is_main_process:
            acc.unwrap_model(self.model).config.save_pretrained(d)
            (d / "trainer_state.json").write_text(json.dumps({"step": self.step, "log_history": self.log_history}))
            limit = self.cfg.save_total_limit
            ckpts = sorted(Path(self.cfg.output).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for old in ckpts[:-limit] if limit else []:
                shutil.rmtree(old)
        acc.wait_for_everyone()
        return d

    def _resume(self) -> None:
        from dllm_eval.trainers.sft import resolve_resume

        path = resolve_resume(self.cfg)
        if not path:
            return
        self.accelerator.load_state(str(path))
        state = json.loads((Path(path) / "trainer_state.json").read_text())
        self.step = int(state["step"])
        self.log_history = list(state["log_history"])

    def train(self, progress: bool | None = None) -> list[dict]:
        from tqdm.auto import tqdm

        cfg = self.cfg
        show = cfg.progress if progress is None else progress
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f"rl/{cfg.estimator}",
                   disable=not show or not self.accelerator.is_main_process)
        while self.step < cfg.max_steps:
            entry = self.train_step()
            bar.update(1)
            bar.set_postfix(reward=f"{entry['reward']:.3f}", loss=f"{entry['loss']:.3f}")
            if cfg.save_steps and self.step % cfg.save_steps == 0:
                self.save_checkpoint()
        bar.close()
        return self.log_history


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def train_rl(cfg: RLConfig, *, reward_fn: RewardFn | None = None, model_and_tokenizer: tuple | None = None,
             attention_fn=None) -> dict[str, Any]:
    """Run RL; returns ``{"output", "log_history", "trainer"}`` (the final model saved in ``output``)."""
    from dllm_eval.trainers.sft import save_final

    trainer = RLTrainer(cfg, reward_fn=reward_fn, model_and_tokenizer=model_and_tokenizer,
                        attention_fn=attention_fn)
    with torch.enable_grad():  # a caller (e.g. lm-eval) may have disabled autograd globally
        history = trainer.train()
    acc = trainer.accelerator
    final = None
    if acc.is_main_process:
        final = save_final(acc.unwrap_model(trainer.model), trainer.tokenizer, cfg.output, cfg.model)
    acc.wait_for_everyone()
    return {"output": final, "log_history": history, "trainer": trainer, "steps": math.floor(trainer.step)}
