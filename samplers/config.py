"""Every decoding option of the denoising engine, in one frozen, validated dataclass.

``DecodeConfig`` is the single source of truth for what ``dllm_eval.generate`` accepts: the
lm-eval model (``--model_args``) and the trainers derive their accepted keys from
``dataclasses.fields(DecodeConfig)``, so a new option added here is accepted everywhere.
Every field is documented below and checked in ``__post_init__``; a bad value raises a
``ValueError`` that names the option, the value and what is accepted (never a bare ``assert``,
so the checks also run under ``python -O``). Values given as strings (as lm-eval passes
``--model_args``) are converted to the field's type.

Mapping from the reference decoders (see also README "Samplers"):

==========================================  ==============================================
reference                                   DecodeConfig
==========================================  ==============================================
LLaDA ``remasking='low_confidence'``        ``sampler='confidence'``
LLaDA ``remasking='random'``                ``sampler='random'``
LLaDA ``steps / gen_length / block_length`` same names (``schedule='even'``)
LLaDA ``cfg_scale``                         ``cfg_scale``
Fast-dLLM ``threshold`` / ``factor``        ``threshold`` / ``factor`` (commit rule)
Fast-dLLM prefix / dual cache               ``kv_cache='prefix'`` / ``'dual'``
                                            (+ ``cache_extra_forward=True`` at 24cc59e)
Dream ``alg='maskgit_plus'``                ``sampler='confidence', schedule='linspace'``
Dream ``alg='topk_margin'`` / ``'entropy'`` ``sampler='margin'`` / ``'entropy'``
Dream ``max_new_tokens``, ``eps``           ``gen_length``, ``eps``
Dream ``alg_temp``                          ``alg_temp``
SDAR ``denoising_steps``                    ``steps_per_block`` (``schedule='block_even'``)
SDAR ``threshold < 1`` (bd3 dynamic)        ``threshold``, ``threshold_min='schedule'``
SDAR rootgen ``sequential``                 ``sampler='sequential'``
SDAR rootgen confidence from filtered probs ``score_filtered=True``
==========================================  ==============================================
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("even", "linspace", "block_even")
COMMIT_RULES = ("schedule", "threshold", "factor", "entropy_bound", "dominance")
THRESHOLD_MIN = ("one", "schedule")
KV_CACHE = ("none", "prefix", "dual")
ATTN_QUERY = ("all", "masked", "unmasked")


def _bad(option: str, value: Any, accepted: str, what: str = "DecodeConfig option") -> ValueError:
    return ValueError(f"{what} {option}={value!r} is invalid; accepted: {accepted}")


def to_bool(option: str, value: Any, what: str = "DecodeConfig option") -> bool:
    """``value`` as a bool (true/false, 1/0, yes/no, on/off); a ValueError naming ``what option``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _bad(option, value, "true or false", what)


def to_int(option: str, value: Any, what: str = "DecodeConfig option") -> int:
    """``value`` as an int (an int, a whole float or an integer string)."""
    if isinstance(value, bool):
        raise _bad(option, value, "an integer", what)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _bad(option, value, "an integer", what)


def to_float(option: str, value: Any, what: str = "DecodeConfig option") -> float:
    """``value`` as a float (a number or a numeric string)."""
    if isinstance(value, bool):
        raise _bad(option, value, "a number", what)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _bad(option, value, "a number", what)




def _optional(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))


def _to_int_tuple(option: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace(";", ",").replace(" ", ",").split(",") if p]
        return tuple(to_int(option, p) for p in parts)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(to_int(option, v) for v in value)
    raise _bad(option, value, "an integer or a comma-separated list of integers")


@dataclass(frozen=True)
class DecodeConfig:
    """All options of one masked-diffusion decoding run (see the module docstring for the mapping
    from LLaDA, Fast-dLLM, Dream and SDAR arguments)."""

    gen_length: int = 128
    """Number of tokens to generate after the prompt (block-causal models such as SDAR round the
    sequence up to whole blocks, as the reference does)."""
    steps: int = 128
    """Total denoising steps over all blocks (LLaDA convention); must be divisible by the number
    of blocks and at most ``gen_length``. Ignored when ``steps_per_block`` is given."""
    block_length: int | None = None
    """Semi-autoregressive block size; ``None`` = one block of ``gen_length``. ``gen_length``
    must be divisible by it."""
    steps_per_block: int | None = None
    """Denoising steps per block (SDAR ``denoising_steps``); overrides ``steps``. At most
    ``block_length``."""
    schedule: str = "even"
    """How many tokens the ``schedule`` commit rule unmasks per step. ``even``: LLaDA, the block's
    masks split evenly over its steps (remainder to the first steps). ``linspace``: Dream,
    ``t = linspace(1, eps, steps+1)`` in float32, ``k = int(n_masked * (1 - t[i+1]/t[i]))``, the
    last step commits the rest (quirk kept: step 0 commits 0 tokens when steps == gen_length).
    ``block_even``: SDAR, ``block_length`` (not the mask count) split evenly over the steps."""
    eps: float = 1e-3
    """Final time of the ``linspace`` schedule (Dream ``eps``), in (0, 1)."""
    sampler: str = "confidence"
    """Strategy that orders the masked positions: random, confidence, margin, entropy,
    sequential, attn, agdo (see ``dllm_eval.samplers.base.SAMPLERS``)."""
    commit: str | None = None
    """Commit rule: ``schedule`` (top-k by score, k from ``schedule``), ``threshold``
    (Fast-dLLM: every token whose confidence >= ``threshold`` plus the best ones, see
    ``threshold_min``), ``factor`` (Fast-dLLM parallel factor), ``entropy_bound`` (EB-sampler),
    ``dominance`` (Attn-Sampler parallel: confident tokens scored above every non-confident
    one). ``None`` picks ``threshold``/``factor``/``entropy_bound`` when that option is set,
    else ``schedule``."""
    threshold: float | None = None
    """Confidence threshold in (0, 1] for the ``threshold`` and ``dominance`` rules."""
    threshold_min: str = "one"
    """Fewest tokens a threshold step commits: ``one`` (Fast-dLLM, the best token) or
    ``schedule`` (SDAR bd3 dynamic: the schedule's count, by score)."""
    factor: float | None = None
    """Fast-dLLM factor f > 0: commit the top n tokens while the i-th best confidence >= 1 - f/(i+1)."""
    entropy_bound: float | None = None
    """EB-sampler bound gamma >= 0: commit the longest prefix (in score order) whose summed
    entropy minus its largest entropy is <= gamma (at least one token)."""
    alg_temp: float = 0.0
    """Dream ``alg_temp``: when > 0 the schedule rule samples positions from
    ``softmax(score / alg_temp)`` instead of taking the top-k."""
    temperature: float = 0.0
    """Token sampling temperature; 0 = argmax. > 0: Gumbel-max in float64 (LLaDA)."""
    top_p: float | None = None
    """Nucleus filter for token choice, in (0, 1]."""
    top_k: int | None = None
    """Top-k filter for token choice (>= 1)."""
    score_filtered: bool = False
    """Score with the tempered, top-k/top-p filtered distribution instead of the raw softmax
    (SDAR rootgen quirk: with top_k=1 every confidence is exactly 1.0)."""
    cfg_scale: float = 0.0
    """Unsupervised classifier-free guidance (LLaDA): logits = un + (cfg+1)(cond - un), the
    unconditional pass has the prompt replaced by masks. Needs ``kv_cache='none'``."""
    logits_eos_inf: bool = False
    """LLaDA eval control: the EOS logit is set to -inf, so EOS is never proposed."""
    confidence_eos_eot_inf: bool = False
    """LLaDA eval control: positions proposing EOS/EoT get score -inf (committed last)."""
    stop_on_eos: bool = False
    """After each block, a row whose generated tokens contain a stop id stops; its remaining
    masks are filled with the pad id (SDAR stops this way)."""
    early_stop: bool = False
    """After each step, a row whose committed tokens hold a stop id at generated column j with no
    mask left before j stops: its remaining masks are filled with the pad id and it costs no
    more denoising (the loop ends once every row stopped). The answer up to the first stop id
    is exactly what ``early_stop=False`` gives (committed tokens never change); only the
    tokens after it differ (pad instead of what later steps would have committed)."""
    stop_ids: tuple[int, ...] | None = None
    """Stop ids for ``stop_on_eos``, ``early_stop`` and the EOS controls; ``None`` = the adapter's ``eos_ids``."""
    seed: int | None = None
    """Seed of the random draws (Gumbel noise, random scores, alg_temp); each row has its own
    generator seeded with it, so a row's tokens never depend on its batch-mates."""
    kv_cache: str | None = None
    """``none`` | ``prefix`` | ``dual`` (Fast-dLLM semantics); ``None`` = ``none``, or ``prefix``
    for block-causal models (SDAR), which always decode with their cache."""
    cache_extra_forward: bool = False
    """Fast-dLLM (NVlabs/Fast-dLLM@24cc59e) quirk of its prefix/dual cache loops: after a block's
    full forward at least one cached forward runs, even when the full forward already completed
    the block (it commits nothing and costs one NFE). Off by default; ``dllm-eval parity`` turns
    it on for those cases."""
    attn_layers: tuple[int, ...] = (-1,)
    """Layers whose attention the ``attn`` sampler sums (negative = from the end)."""
    attn_heads: tuple[int, ...] | None = None
    """Query heads averaged by the attention samplers; ``None`` = all heads."""
    attn_query: str = "all"
    """Query rows whose attention columns the ``attn`` sampler sums: all | masked | unmasked."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("gen_length", "steps"):
            set_(self, name, to_int(name, getattr(self, name)))
        for name in ("block_length", "steps_per_block", "top_k", "seed"):
            value = getattr(self, name)
            set_(self, name, None if _optional(value) else to_int(name, value))
        for name in ("eps", "alg_temp", "temperature", "cfg_scale"):
            set_(self, name, to_float(name, getattr(self, name)))
        for name in ("threshold", "factor", "entropy_bound", "top_p"):
            value = getattr(self, name)
            set_(self, name, None if _optional(value) else to_float(name, value))
        for name in ("score_filtered", "logits_eos_inf", "confidence_eos_eot_inf", "stop_on_eos",
                     "early_stop", "cache_extra_forward"):
            set_(self, name, to_bool(name, getattr(self, name)))
        set_(self, "attn_layers", _to_int_tuple("attn_layers", self.attn_layers))
        if not _optional(self.attn_heads):
            set_(self, "attn_heads", _to_int_tuple("attn_heads", self.attn_heads))
        else:
            set_(self, "attn_heads", None)
        if not _optional(self.stop_ids):
            set_(self, "stop_ids", _to_int_tuple("stop_ids", self.stop_ids))
        else:
            set_(self, "stop_ids", None)
        for name in ("commit", "kv_cache"):
            value = getattr(self, name)
            set_(self, name, None if _optional(value) else str(value).strip())
        for name in ("schedule", "sampler", "threshold_min", "attn_query"):
            set_(self, name, str(getattr(self, name)).strip())
        self._validate()

    def _validate(self) -> None:
        if self.gen_length < 1:
            raise _bad("gen_length", self.gen_length, "an integer >= 1")
        bl = self.block_length
        if bl is not None and not 1 <= bl <= self.gen_length:
            raise _bad("block_length", bl, f"None or an integer in [1, gen_length={self.gen_length}]")
        if bl is not None and self.gen_length % bl:
            raise ValueError(
                f"DecodeConfig option gen_length={self.gen_length} is not divisible by "
                f"block_length={bl}; accepted: a gen_length that is a multiple of block_length"
            )
        num_blocks = self.gen_length // self.block_size
        if self.steps_per_block is None:
            if self.steps < 1 or self.steps > self.gen_length:
                raise _bad(
                    "steps", self.steps,
                    f"an integer in [1, gen_length={self.gen_length}] (steps > tokens to generate)",
                )
            if self.steps % num_blocks:
                raise ValueError(
                    f"DecodeConfig option steps={self.steps} is not divisible by the number of "
                    f"blocks {num_blocks} (gen_length={self.gen_length} / block_length="
                    f"{self.block_size}); accepted: a multiple of {num_blocks}"
                )
        elif not 1 <= self.steps_per_block <= self.block_size:
            raise _bad(
                "steps_per_block", self.steps_per_block,
                f"None or an integer in [1, block_length={self.block_size}] (steps > tokens)",
            )
        if self.schedule not in SCHEDULES:
            raise _bad("schedule", self.schedule, ", ".join(SCHEDULES))
        if not 0.0 < self.eps < 1.0:
            raise _bad("eps", self.eps, "a number in (0, 1)")
        from dllm_eval.samplers.base import check_sampler_name

        check_sampler_name(self.sampler)
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise _bad("threshold", self.threshold, "None or a number in (0, 1]")
        if self.factor is not None and not self.factor > 0:
            raise _bad("factor", self.factor, "None or a number > 0")
        if self.entropy_bound is not None and not self.entropy_bound >= 0:
            raise _bad("entropy_bound", self.entropy_bound, "None or a number >= 0")
        commit = self.commit
        if commit is None:
            chosen = [n for n in ("threshold", "factor", "entropy_bound") if getattr(self, n) is not None]
            if len(chosen) > 1:
                raise ValueError(
                    f"DecodeConfig options {', '.join(chosen)} select different commit rules; "
                    f"accepted: set one of them, or name the rule with commit= ({', '.join(COMMIT_RULES)})"
                )
            commit = chosen[0] if chosen else "schedule"
            object.__setattr__(self, "commit", commit)
        if commit not in COMMIT_RULES:
            close = difflib.get_close_matches(commit, COMMIT_RULES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _bad("commit", commit, ", ".join(COMMIT_RULES) + hint)
        needs = {"threshold": "threshold", "dominance": "threshold", "factor": "factor",
                 "entropy_bound": "entropy_bound"}
        if commit in needs and getattr(self, needs[commit]) is None:
            raise ValueError(
                f"DecodeConfig option commit={commit!r} needs {needs[commit]}=...; accepted: "
                f"{needs[commit]} set ({'a number in (0, 1]' if needs[commit] == 'threshold' else 'a number > 0'})"
            )
        for name, rules in (("threshold", ("threshold", "dominance")), ("factor", ("factor",)),
                            ("entropy_bound", ("entropy_bound",))):
            if getattr(self, name) is not None and commit not in rules:
                raise ValueError(
                    f"DecodeConfig option {name}={getattr(self, name)!r} has no effect with "
                    f"commit={commit!r}; accepted: commit in {rules} or {name}=None"
                )
        if self.threshold_min not in THRESHOLD_MIN:
            raise _bad("threshold_min", self.threshold_min, ", ".join(THRESHOLD_MIN))
        if self.alg_temp < 0:
            raise _bad("alg_temp", self.alg_temp, "a number >= 0")
        if self.alg_temp > 0 and commit != "schedule":
            raise _bad("alg_temp", self.alg_temp, f"0 unless commit='schedule' (commit={commit!r})")
        if self.temperature < 0:
            raise _bad("temperature", self.temperature, "a number >= 0")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise _bad("top_p", self.top_p, "None or a number in (0, 1]")
        if self.top_k is not None and self.top_k < 1:
            raise _bad("top_k", self.top_k, "None or an integer >= 1")
        if self.cfg_scale < 0:
            raise _bad("cfg_scale", self.cfg_scale, "a number >= 0")
        if self.kv_cache is not None and self.kv_cache not in KV_CACHE:
            raise _bad("kv_cache", self.kv_cache, "None, " + ", ".join(KV_CACHE))
        if self.cfg_scale > 0 and self.kv_cache in ("prefix", "dual"):
            raise _bad("cfg_scale", self.cfg_scale, f"0 with kv_cache={self.kv_cache!r} (guidance needs kv_cache='none')")
        if self.attn_query not in ATTN_QUERY:
            raise _bad("attn_query", self.attn_query, ", ".join(ATTN_QUERY))
        if not self.attn_layers:
            raise _bad("attn_layers", self.attn_layers, "at least one layer index")
        if self.seed is not None and self.seed < 0:
            raise _bad("seed", self.seed, "None or an integer >= 0")

    @property
    def block_size(self) -> int:
        """The effective block length (``gen_length`` when ``block_length`` is None)."""
        return self.block_length or self.gen_length

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_size

    @property
    def block_steps(self) -> int:
        """Denoising steps per block."""
        return self.steps_per_block or self.steps // self.num_blocks

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Public option names (what ``--model_args`` and ``generate(**options)`` accept)."""
        return tuple(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))

    @classmethod
    def from_options(cls, **options: Any) -> DecodeConfig:
        """Build a config from keyword options; unknown names raise with a "did you mean"."""
        names = cls.option_names()
        for key in options:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"unknown decoding option {key!r}; accepted: {', '.join(names)}.{hint}"
                )
        return cls(**options)

    def replace(self, **changes: Any) -> DecodeConfig:
        """A copy with some options changed (validated again)."""
        base = {n: getattr(self, n) for n in self.option_names()}
        if self.commit is not None and "commit" not in changes:
            # let an explicitly changed threshold/factor/bound re-derive the rule
            if any(k in changes for k in ("threshold", "factor", "entropy_bound")):
                base["commit"] = None
        base.update(changes)
        return DecodeConfig.from_options(**base)
