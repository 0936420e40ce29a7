"""The lm-eval model ``dllm``: masked diffusion LMs (LLaDA, Dream, SDAR) behind lm-eval's ``LM`` API.

    lm_eval --model dllm --model_args pretrained=GSAI-ML/LLaDA-8B-Instruct,sampler=margin,steps=128 \\
        --tasks gsm8k --batch_size 8 --output_path out/
    accelerate launch --multi_gpu --num_processes 2 -m lm_eval --model dllm ...   # data parallel
    torchrun --nproc_per_node 2 -m lm_eval --model dllm ...                         # same

Data parallelism: one model per process, lm-eval splits the documents by rank; on a machine
without CUDA the processes form a CPU (gloo) group (accelerate 1.x's ``--cpu`` launcher starts a
single process, so use ``--multi_gpu`` or torchrun there too).

* ``generate_until``: requests are grouped by their generation kwargs, sorted by prompt length
  (longest first) and batched (``batch_size`` int, ``auto`` or ``auto:N``); prompts are
  left-padded, decoded by the one denoising engine (``dllm_eval.generate``) and cut at the first
  EOS/EoT id and at every ``until`` string. Decoding options are resolved per request as
  explicit ``model_args`` > the request's ``gen_kwargs`` (``max_gen_toks`` -> ``gen_length``,
  ``do_sample``/``temperature``, and any ``DecodeConfig`` field) > the family defaults
  (``dllm_eval.harness.model_args.FAMILY_DEFAULTS``) > ``DecodeConfig`` defaults. When the
  length comes from ``max_gen_toks`` it is rounded up to whole blocks and the output is cut
  back to ``max_gen_toks`` tokens.
* ``loglikelihood``: the Monte Carlo ELBO of LLaDA (Nie et al., "Large Language Diffusion
  Models", arXiv:2502.09992; its lower-variance form with a uniform mask count), as in LLaDA's
  and Dream's lm-eval evaluations:
  ``log p(y|x) >= E_l E_M [ (L/l) * sum_{i in M} log p(y_i | x, y with M masked) ]`` with
  ``l`` uniform on ``1..L`` (``L`` = continuation length) and ``M`` a uniform subset of size
  ``l`` of the continuation (the prompt is never masked). The ``mc_num`` draws of ``l`` are
  stratified (``l_j = floor(((u + j/mc_num) mod 1) * L) + 1``, one uniform ``u``), so each
  draw is marginally uniform (unbiased) and the set covers all mask ratios. Random draws come
  from a CPU generator seeded from ``seed`` and the request's tokens, so the estimate is
  deterministic for a seed, independent of order, batch and rank. Optional guidance
  (``ll_cfg_scale``): ``un + (s+1)(cond - un)`` with the prompt masked in ``un``. Dream's
  shifted logits are aligned by the family adapter. ``is_greedy`` is computed by greedy
  low-confidence unmasking of the continuation, one token per forward (LLaDA's evaluation);
  ``greedy_check=false`` skips it (then always False). Block-causal models (SDAR) get the
  block-diffusion bound: the sum over the continuation's attention blocks of each block's ELBO
  given the clean earlier blocks, and block-by-block greedy unmasking.
* ``loglikelihood_rolling``: the same ELBO summed over lm-eval's disjoint rolling windows, i.e.
  a lower bound of the log-likelihood (perplexities derived from it are upper bounds).
* ``request_cache=DIR``: resumable per-request cache keyed by the model identity and every
  option (``dllm_eval.harness.cache``); a run killed at any point resumes without recomputing.

``get_model_info`` reports the family, sampler, every decoding option used, NFE and
tokens-per-forward totals (summed over ranks) and the request-cache counts.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from dllm_eval.harness.cache import RequestCache, canonical_json, checkpoint_fingerprint
from dllm_eval.harness.model_args import (
    DEFAULT_GEN_LENGTH,
    FAMILY_DEFAULTS,
    LOGLIKELIHOOD_KEYS,
    ModelArgs,
    decode_config_class,
    parse_batch_size,
    parse_model_args,
)
from lm_eval.api.model import TemplateLM
from tqdm import tqdm

logger = logging.getLogger(__name__)

REQUEST_KEYS = ("until", "max_gen_toks", "do_sample", "temperature")
DEFAULT_SEED = 1234  # lm-eval's default seed; makes random samplers reproducible


def resolve_decode_options(
    explicit: dict[str, Any],
    family: str,
    gen_kwargs: dict[str, Any] | None = None,
    block_size: int | None = None,
) -> tuple[dict[str, Any], int | None]:
    """Decoding options for one request, and the token budget to cut the output to (or None).

    Precedence: ``explicit`` (model_args) > ``gen_kwargs`` (the task) > family defaults >
    ``DecodeConfig`` defaults. Raises ValueError for an unknown gen_kwargs key.
    """
    names = set(decode_config_class().option_names())
    gen_kwargs = dict(gen_kwargs or {})
    unknown = [k for k in gen_kwargs if k not in REQUEST_KEYS and k not in names]
    if unknown:
        raise ValueError(
            f"generation kwarg {unknown[0]!r} (value {gen_kwargs[unknown[0]]!r}) is not supported by "
            f"the dllm model; accepted: {', '.join(REQUEST_KEYS)} and the decoding options "
            f"{', '.join(sorted(names))}"
        )
    opts: dict[str, Any] = {}
    # task-level decoding options
    for key, value in gen_kwargs.items():
        if key in names:
            opts[key] = value
    if "temperature" in gen_kwargs or "do_sample" in gen_kwargs:
        do_sample = gen_kwargs.get("do_sample")
        temp = gen_kwargs.get("temperature")
        if do_sample is False or (isinstance(do_sample, str) and do_sample.lower() == "false"):
            opts["temperature"] = 0.0
        elif temp is not None:
            opts["temperature"] = float(temp)
        elif do_sample:
            opts["temperature"] = 1.0
    opts.update(explicit)

    budget: int | None = None
    if "gen_length" not in opts:
        max_gen = gen_kwargs.get("max_gen_toks")
        budget = int(max_gen) if max_gen is not None else None
        opts["gen_length"] = budget if budget is not None else DEFAULT_GEN_LENGTH
    gen_length = int(opts["gen_length"])
    defaults = FAMILY_DEFAULTS.get(family, {})
    if "block_length" not in opts and "block_length" in defaults:
        bl = block_size if defaults["block_length"] == "block_size" else defaults["block_length"]
        if bl is not None:
            bl = min(int(bl), gen_length)  # a block longer than the answer is one block
        opts["block_length"] = bl
    bl = opts.get("block_length")
    if bl is not None and budget is not None:
        gen_length = -(-gen_length // int(bl)) * int(bl)  # whole blocks; the output is cut back
        opts["gen_length"] = gen_length
    for key, value in defaults.items():
        if key in opts or key not in names:
            continue
        if key == "steps" and "steps_per_block" in opts:
            continue
        if key == "steps_per_block" and "steps" in opts:
            continue
        if value == "gen_length":
            value = gen_length
        elif value == "block_length":
            value = opts.get("block_length") or gen_length
        elif value == "block_size":
            value = block_size
        opts[key] = value
    opts.setdefault("seed", DEFAULT_SEED)
    if budget is not None and budget >= gen_length:
        budget = None
    return opts, budget


def cache_identity(
    args: ModelArgs,
    family: str,
    checkpoint: dict[str, Any],
    dtype: str,
    tokenizer: dict[str, Any],
    max_length: int,
    block_size: int | None = None,
) -> dict[str, Any]:
    """Everything that can change a cached answer (see ``dllm_eval.harness.cache``)."""
    from dllm_eval import __version__

    base, _ = resolve_decode_options(args.decode, family, {}, block_size)
    base_config = decode_config_class()(**base)
    return {
        "dllm_eval": __version__,
        "checkpoint": checkpoint,
        "dtype": dtype,
        "family": family,
        "tokenizer": tokenizer,
        "max_length": max_length,
        "decode_explicit": dict(sorted(args.decode.items())),
        "decode_family_defaults": FAMILY_DEFAULTS.get(family, {}),
        "decode_base": dataclasses.asdict(base_config),
        "loglikelihood": {s.name: getattr(args, s.name) for s in LOGLIKELIHOOD_KEYS},
        "loglikelihood_seed": ll_seed(args),
    }


def _available_device(device: str) -> str:
    """lm-eval's default ``--device cuda:0`` on a machine without CUDA becomes ``cpu`` (warned)."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("device=%s requested by lm-eval but CUDA is not available; using cpu", device)
        return "cpu"
    return device


def ll_seed(args: ModelArgs) -> int:
    seed = args.decode.get("seed")
    return DEFAULT_SEED if seed is None else int(seed)


class DLLM(TemplateLM):
    """lm-eval model for masked diffusion LMs; see the module docstring."""

    backend = "causal"

    def __init__(
        self, pretrained: str | None = None, harness_defaults: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__()
        # lm-eval's --batch_size/--max_batch_size/--device arrive as harness_defaults (see
        # create_from_arg_obj); explicit model_args win over them
        soft = {k: v for k, v in (harness_defaults or {}).items() if v is not None and k not in kwargs}
        self.args = parse_model_args({"pretrained": pretrained, **soft, **kwargs})
        if "device" in soft and self.args.device is not None:
            self.args = dataclasses.replace(self.args, device=_available_device(self.args.device))
        import dllm_eval

        self.accelerator = None
        self._setup_device_and_ranks(self.args.device)
        self.model, tokenizer, self.adapter = dllm_eval.load(
            self.args.pretrained, dtype=self.args.dtype, device=self._device
        )
        if self.args.tokenizer is not None:
            from dllm_eval.harness.family import get_adapter
            from dllm_eval.harness.loading import load_tokenizer

            tokenizer = load_tokenizer(self.args.tokenizer)
            if tokenizer is None:
                raise ValueError(f"model_args tokenizer={self.args.tokenizer!r}: no tokenizer files found there")
            self.adapter = get_adapter(self.model, tokenizer)
        if tokenizer is None:
            raise ValueError(
                f"pretrained={self.args.pretrained!r} has no tokenizer files; accepted: a checkpoint "
                "with tokenizer.json or vocab.json+merges.txt, or model_args tokenizer=<folder>"
            )
        self.tokenizer = tokenizer
        self.max_length = self.args.max_length or self._config_max_length()
        self._batch_mode, self._batch_value = parse_batch_size(self.args.batch_size)
        self._auto_batch: int | None = None
        # fail fast on an invalid option combination (with a typical request)
        cfg_cls = decode_config_class()
        cfg_cls(**resolve_decode_options(self.args.decode, self.adapter.name, {}, self.adapter.block_size)[0])
        # nfe: model forward calls (a batch forward counts once); nfe_rows: forwards summed over
        # the rows that were still decoding (per-sample NFE = nfe_rows / generated_rows)
        self._stats = {"nfe": 0, "nfe_rows": 0, "tokens_committed": 0, "generated_rows": 0, "ll_forwards": 0}
        self._global_stats: dict[str, Any] | None = None
        self._configs_used: dict[str, dict[str, Any]] = {}
        self.request_cache: RequestCache | None = None
        if self.args.request_cache:
            self.request_cache = RequestCache(self.args.request_cache, self._identity())
        self._cache_counts = {"hits": 0, "computed": 0}

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> DLLM:
        from dllm_eval.harness.model_args import parse_arg_string

        return cls.create_from_arg_obj(parse_arg_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict | None = None) -> DLLM:
        """Build from model_args; lm-eval's own ``batch_size``/``max_batch_size``/``device``
        (always passed, ``--device`` defaults to ``cuda:0``) only fill keys model_args lacks."""
        return cls(**dict(arg_dict), harness_defaults=dict(additional_config or {}))

    # ------------------------------------------------------------------ devices and ranks

    def _setup_device_and_ranks(self, device: str | None) -> None:
        import torch

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            from accelerate import Accelerator

            # cpu=True: gloo process group (accelerate only forms a CPU group when asked)
            use_cpu = (device or "").startswith("cpu") or not torch.cuda.is_available()
            self.accelerator = Accelerator(cpu=use_cpu)
            # tear the process group down before the interpreter does: a rank that finishes
            # first and exits with a live gloo group aborts ("terminate called without an
            # active exception", SIGABRT), which fails the whole launch (~1 run in 6 on CPU)
            atexit.register(_destroy_process_group)
            if self.accelerator.num_processes != world:
                raise RuntimeError(
                    f"WORLD_SIZE={world} but accelerate formed a group of {self.accelerator.num_processes}; "
                    "launch with `accelerate launch --multi_gpu --num_processes N -m lm_eval ...` "
                    "(also on CPU-only machines) or `torchrun --nproc_per_node N -m lm_eval ...`"
                )
            self._rank = self.accelerator.process_index
            self._world_size = self.accelerator.num_processes
            if device is not None and device.split(":")[0] != self.accelerator.device.type:
                logger.warning("device=%s ignored under accelerate; using %s", device, self.accelerator.device)
            acc_device = torch.device(self.accelerator.device)
            # accelerate names the CPU "cpu:0" under a gloo group; loaders want plain "cpu"
            self._device = torch.device("cpu") if acc_device.type == "cpu" else acc_device
        else:
            self._rank, self._world_size = 0, 1
            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            elif device.startswith("cuda") and not torch.cuda.is_available():
                raise ValueError(f"model_args device={device!r} is not available on this machine; accepted: cpu")
            self._device = torch.device(device)

    def all_gather(self, tensor: Any) -> Any:
        return self.accelerator.gather(tensor) if self.accelerator is not None else tensor

    def gather_object(self, obj: Any, dst: int = 0) -> Any:
        if self._world_size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self._world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ tokenizer facts

    @property
    def eot_token_id(self) -> int:
        return self.adapter.eos_ids[0]

    @property
    def prefix_token_id(self) -> int:
        return self.adapter.bos_id if self.adapter.bos_id is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "tokenizer")).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        if add_special_tokens is None:
            bos = getattr(self.tokenizer, "bos_token", None)
            add_special_tokens = not (bos and string.startswith(bos))
        return list(self.tokenizer(string, add_special_tokens=add_special_tokens)["input_ids"])

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if chat_template is False or chat_template is None:
            return None
        return getattr(self.tokenizer, "chat_template", None) or self.adapter.chat_template

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render a chat; with ``add_generation_prompt=False`` (lm-eval's ``gen_prefix``) a final
        assistant message is continued rather than closed."""
        template = getattr(self.tokenizer, "chat_template", None) or self.adapter.chat_template
        continue_final = (
            not add_generation_prompt and bool(chat_history) and chat_history[-1].get("role") == "assistant"
        )
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final,
            chat_template=template,
        )

    def _config_max_length(self) -> int:
        cfg = self.model.config
        for name in ("max_position_embeddings", "max_sequence_length", "n_positions"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 4096

    # ------------------------------------------------------------------ generation

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        items = []
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            items.append((i, context, gen_kwargs, self.tok_encode(context)))
        groups: dict[str, list[tuple]] = {}
        for item in items:
            groups.setdefault(canonical_json(item[2]), []).append(item)
        results: list[str | None] = [None] * len(items)
        pbar = tqdm(total=len(items), desc="dllm generate_until", disable=disable_tqdm or self.rank != 0)
        for group in groups.values():
            gen_kwargs = group[0][2]
            opts, budget = resolve_decode_options(
                self.args.decode, self.adapter.name, gen_kwargs, self.adapter.block_size
            )
            config = decode_config_class()(**opts)
            self._configs_used[canonical_json(dataclasses.asdict(config))] = dataclasses.asdict(config)
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            group.sort(key=lambda it: (-len(it[3]), it[0]))
            bs = self._batch_size(config)
            for start in range(0, len(group), bs):
                batch = group[start : start + bs]
                cached = [self._cache_get("generate_until", (it[1], it[2])) for it in batch]
                if all(hit for hit, _ in cached):
                    for it, (_, text) in zip(batch, cached):
                        results[it[0]] = text
                    self._cache_counts["hits"] += len(batch)
                    pbar.update(len(batch))
                    continue
                texts = self._generate_batch([it[3] for it in batch], config, until, budget)
                self._cache_counts["computed"] += len(batch)
                for it, text, (hit, _) in zip(batch, texts, cached):
                    results[it[0]] = text
                    if not hit:
                        self._cache_put("generate_until", (it[1], it[2]), text)
                    self.cache_hook.add_partial("generate_until", (it[1], it[2]), text)
                pbar.update(len(batch))
        pbar.close()
        self._sync_stats()
        return [r if r is not None else "" for r in results]

    def _generate_batch(
        self, prompts: list[list[int]], config: Any, until: list[str], budget: int | None
    ) -> list[str]:
        import dllm_eval
        import torch

        keep = max(1, self.max_length - config.gen_length)
        prompts = [p[-keep:] for p in prompts]
        width = max(len(p) for p in prompts)
        pad = self.adapter.pad_id if self.adapter.pad_id is not None else self.eot_token_id
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            input_ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p) :] = 1
        attention_mask = mask.to(self._device) if bool((mask == 0).any()) else None
        with torch.no_grad():
            res = dllm_eval.generate(
                self.model, input_ids.to(self._device), attention_mask=attention_mask,
                adapter=self.adapter, config=config,
            )
        self._stats["nfe"] += int(res.nfe)
        self._stats["nfe_rows"] += int(sum(res.stats["nfe_rows"]))
        self._stats["tokens_committed"] += int(res.stats["tokens_committed"])
        self._stats["generated_rows"] += len(prompts)
        stops = set(self.adapter.eos_ids) | set(config.stop_ids or ())
        out = []
        for row in res.sequences[:, width:].tolist():
            if budget is not None:
                row = row[:budget]
            cut = next((i for i, t in enumerate(row) if t in stops or t == self.adapter.mask_id), len(row))
            text = self.tok_decode(row[:cut])
            for stop in until:
                if stop:
                    text = text.split(stop)[0]
            out.append(text)
        return out

    def _batch_size(self, config: Any) -> int:
        if self._batch_mode == "fixed":
            return self._batch_value
        if self._auto_batch is None:
            self._auto_batch = self._detect_batch_size(config)
        return self._auto_batch

    def _detect_batch_size(self, config: Any) -> int:
        """Largest power-of-two batch (<= max_batch_size) whose full-length forward fits on the
        accelerator; on CPU min(max_batch_size, 8) (no memory probe)."""
        import torch

        limit = self.args.max_batch_size
        if self._device.type != "cuda":
            return min(limit, 8)
        rows_per_item = 2 if config.cfg_scale > 0 else 1
        bs = 1 << (limit.bit_length() - 1)
        while bs > 1:
            try:
                x = torch.full((bs * rows_per_item, self.max_length), self.adapter.mask_id, device=self._device)
                with torch.no_grad():
                    self.adapter.forward(self.model, x)
                del x
                torch.cuda.empty_cache()
                break
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                bs //= 2
        if self._world_size > 1:  # every rank uses the smallest
            sizes = self.gather_object(bs)
            bs = min(sizes)
        logger.info("batch_size=auto -> %d", bs)
        return bs

    # ------------------------------------------------------------------ loglikelihood

    def _loglikelihood_tokens(self, requests: list[Any], disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = []
        for (context, continuation), ctx_enc, cont_enc in tqdm(
            requests, desc="dllm loglikelihood", disable=disable_tqdm or self.rank != 0
        ):
            hit, value = self._cache_get("loglikelihood", (context, continuation))
            if hit:
                self._cache_counts["hits"] += 1
                result = (float(value[0]), bool(value[1]))
            else:
                self._cache_counts["computed"] += 1
                ll = self.elbo(ctx_enc, cont_enc)
                greedy = self.greedy_matches(ctx_enc, cont_enc) if self.args.greedy_check else False
                result = (ll, greedy)
                self._cache_put("loglikelihood", (context, continuation), list(result))
            out.append(result)
            self.cache_hook.add_partial("loglikelihood", (context, continuation), result)
        self._sync_stats()
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for req in tqdm(requests, desc="dllm loglikelihood_rolling", disable=disable_tqdm or self.rank != 0):
            (string,) = req.args
            hit, value = self._cache_get("loglikelihood_rolling", (string,))
            if hit:
                self._cache_counts["hits"] += 1
                total = float(value)
            else:
                self._cache_counts["computed"] += 1
                windows = get_rolling_token_windows(
                    token_list=self.tok_encode(string, add_special_tokens=False),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
                total = sum(self.elbo(ctx, pred) for ctx, pred in map(make_disjoint_window, windows))
                self._cache_put("loglikelihood_rolling", (string,), total)
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        self._sync_stats()
        return out

    def _request_generator(self, prefix: Sequence[int], target: Sequence[int]) -> Any:
        import torch

        digest = hashlib.sha256(canonical_json([ll_seed(self.args), list(prefix), list(target)]).encode()).digest()
        return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def _fit(self, prefix: Sequence[int], target: Sequence[int]) -> tuple[list[int], list[int]]:
        target = list(target)[-self.max_length :]
        keep = max(1, self.max_length - len(target))
        prefix = list(prefix)[-keep:] if prefix else [self.prefix_token_id]
        return prefix, target

    def _logits(self, x: Any, n_prefix: int) -> Any:
        """Aligned float32 logits of ``x`` (with guidance when ``ll_cfg_scale`` > 0)."""
        import torch

        scale = self.args.ll_cfg_scale
        with torch.no_grad():
            if scale > 0:
                un = x.clone()
                un[:, :n_prefix] = self.adapter.mask_id
                logits = self.adapter.forward(self.model, torch.cat([x, un])).logits.float()
                cond, uncond = logits.chunk(2)
                logits = uncond + (scale + 1) * (cond - uncond)
            else:
                logits = self.adapter.forward(self.model, x).logits.float()
        self._stats["ll_forwards"] += 1
        return logits

    def _units(self, n_prefix: int, length: int) -> list[list[int]]:
        """Continuation indices scored together: all of them (bidirectional families), or one
        group per attention block for block-causal families (SDAR: blocks of ``block_size``
        absolute positions), each scored with the earlier blocks clean."""
        if not self.adapter.block_causal:
            return [list(range(length))]
        size = int(self.adapter.block_size)
        units: dict[int, list[int]] = {}
        for i in range(length):
            units.setdefault((n_prefix + i) // size, []).append(i)
        return list(units.values())

    def elbo(self, prefix: Sequence[int], target: Sequence[int], mc_num: int | None = None) -> float:
        """Monte Carlo ELBO of ``log p(target | prefix)`` (see the module docstring).

        For block-causal models the bound is the sum over the continuation's blocks of each
        block's ELBO given the clean earlier blocks (one row per block and draw; block-causal
        attention keeps later blocks out of view)."""
        import torch

        prefix, target = self._fit(prefix, target)
        n_prefix, length = len(prefix), len(target)
        if length == 0:
            return 0.0
        n = mc_num or self.args.mc_num
        gen = self._request_generator(prefix, target)
        rows, weights = [], []
        for unit in self._units(n_prefix, length):
            size = len(unit)
            u = torch.rand((), generator=gen, dtype=torch.float64)
            strata = torch.remainder(u + torch.arange(n, dtype=torch.float64) / n, 1.0)
            counts = (strata * size).floor().long().clamp(max=size - 1) + 1  # l_j in 1..|unit|
            order = torch.rand((n, size), generator=gen).argsort(dim=1).argsort(dim=1)
            masked = torch.zeros((n, length), dtype=torch.bool)
            masked[:, unit] = order < counts[:, None]  # a uniform subset of size l_j per row
            rows.append(masked)
            weights.append(size / counts.double())
        masked_all, weight_all = torch.cat(rows), torch.cat(weights)
        seq = torch.tensor(prefix + target, dtype=torch.long, device=self._device)
        tgt = seq[n_prefix:]
        total = 0.0
        step = self.args.mc_batch_size
        for start in range(0, masked_all.shape[0], step):
            m = masked_all[start : start + step].to(self._device)
            x = seq.repeat(m.shape[0], 1)
            x[:, n_prefix:][m] = self.adapter.mask_id
            logp = torch.log_softmax(self._logits(x, n_prefix)[:, n_prefix:], dim=-1)
            token_logp = logp.gather(-1, tgt.expand(m.shape[0], -1)[..., None])[..., 0].double()
            total += float(((token_logp * m).sum(dim=1) * weight_all[start : start + step].to(self._device)).sum())
        return total / n

    def greedy_matches(self, prefix: Sequence[int], target: Sequence[int]) -> bool:
        """True if greedy low-confidence unmasking (one token per forward) yields ``target``."""
        import torch

        prefix, target = self._fit(prefix, target)
        n_prefix = len(prefix)
        x = torch.tensor([prefix + [self.adapter.mask_id] * len(target)], device=self._device)
        tgt = torch.tensor(target, device=self._device)
        units = self._units(n_prefix, len(target))
        for _ in range(len(target)):
            logits = self._logits(x, n_prefix)[0, n_prefix:]
            probs = torch.softmax(logits, dim=-1)
            conf, tok = probs.max(dim=-1)
            still = x[0, n_prefix:] == self.adapter.mask_id
            # block-causal models: only the first block that still has masks
            unit = next(u for u in units if bool(still[u].any()))
            allowed = torch.zeros_like(still)
            allowed[unit] = True
            conf = torch.where(still & allowed, conf, torch.full_like(conf, -1.0))
            pos = int(conf.argmax())
            if int(tok[pos]) != int(tgt[pos]):
                return False
            x[0, n_prefix + pos] = tok[pos]
        return True

    # ------------------------------------------------------------------ cache and info

    def _identity(self) -> dict[str, Any]:
        local = self.args.pretrained if os.path.isdir(self.args.pretrained) else None
        folder = local
        if folder is None:  # a hub id: fingerprint the snapshot folder it was loaded from
            from dllm_eval.harness import loading

            try:
                folder = str(loading._resolve(self.args.pretrained))
            except ValueError:
                folder = None
        checkpoint = {
            "pretrained": os.path.abspath(local) if local else self.args.pretrained,
            "commit": getattr(self.model.config, "_commit_hash", None),
            "files": checkpoint_fingerprint(folder) if folder else None,
        }
        tok_src = self.args.tokenizer
        tokenizer = {
            "name": getattr(self.tokenizer, "name_or_path", None),
            "vocab_size": len(self.tokenizer),
            "files": checkpoint_fingerprint(tok_src) if tok_src and os.path.isdir(tok_src) else None,
        }
        return cache_identity(
            self.args, self.adapter.name, checkpoint, str(self.model.dtype), tokenizer,
            self.max_length, self.adapter.block_size,
        )

    def _cache_get(self, reqtype: str, args: Any) -> tuple[bool, Any]:
        if self.request_cache is None:
            return False, None
        return self.request_cache.get(reqtype, args)

    def _cache_put(self, reqtype: str, args: Any, result: Any) -> None:
        if self.request_cache is not None:
            self.request_cache.put(reqtype, args, result)

    def _sync_stats(self) -> None:
        local = {**self._stats, **self._cache_counts}
        if self._world_size > 1:
            gathered = self.gather_object(local)
            self._global_stats = {k: sum(g[k] for g in gathered) for k in local}
        else:
            self._global_stats = local

    def get_model_info(self) -> dict[str, Any]:
        """Reproducibility record merged into lm-eval's results ``config``."""
        stats = self._global_stats or {**self._stats, **self._cache_counts}
        rows = stats["generated_rows"]
        configs = list(self._configs_used.values())
        base, _ = resolve_decode_options(self.args.decode, self.adapter.name, {}, self.adapter.block_size)
        info = {
            "model_family": self.adapter.name,
            "pretrained": self.args.pretrained,
            "model_dtype": str(self.model.dtype),
            "model_num_parameters": sum(p.numel() for p in self.model.parameters()),
            "sampler": (configs[0]["sampler"] if configs else base.get("sampler", "confidence")),
            "decode_options_explicit": dict(self.args.decode),
            "decode_configs": configs or [dataclasses.asdict(decode_config_class()(**base))],
            "loglikelihood": {s.name: getattr(self.args, s.name) for s in LOGLIKELIHOOD_KEYS}
            | {"seed": ll_seed(self.args)},
            "nfe_total": stats["nfe"],
            "loglikelihood_forwards": stats["ll_forwards"],
            "generated_rows": rows,
            "nfe_per_sample": (stats["nfe_rows"] / rows) if rows else None,
            # per sequence: tokens committed / forwards that sequence took part in
            "tokens_per_forward": (stats["tokens_committed"] / stats["nfe_rows"]) if stats["nfe_rows"] else None,
            "world_size": self._world_size,
            "request_cache": (
                {"dir": str(self.request_cache.dir), "model_key": self.request_cache.key,
                 "hits": stats["hits"], "computed": stats["computed"]}
                if self.request_cache is not None else None
            ),
        }
        return info


def _destroy_process_group() -> None:
    """At exit: destroy the default process group if one is still up (see ``DLLM.__init__``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
