"""Flat, documented configuration dataclasses of the SFT and RL trainers.

Every field has a default and a ``help`` text (``field(metadata={"help": ...})``); the
``dllm-eval train`` command builds its flags from these fields, so a config file (YAML or JSON
with the same keys) and command-line overrides cover every option. Validation happens in
``validate()`` with ValueErrors that name the option, the bad value and the accepted values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from dllm_eval.trainers.masking import INFLUENCE_NORMS, MASKING_STRATEGIES

RL_ESTIMATORS = ("d1", "tracerl", "agdo")
EOS_PADDING = ("batch", "max_length", "none")
DTYPES = ("float32", "bfloat16", "float16")
RL_REWARDS = ("math", "code", "exact", "contains")


def _h(text: str, default=None, **kw):
    return field(default=default, metadata={"help": text}, **kw)


@dataclass
class _Common:
    model: str = _h("checkpoint folder or hub id to start from (loaded with dllm_eval.load)", "")
    data: str = _h("training data: a JSONL file (prompt/response or chat messages) or hf:NAME[:SPLIT]", "")
    output: str = _h("output folder: checkpoints (checkpoint-N/) and the final model", "")
    max_steps: int = _h("number of optimizer steps", 100)
    learning_rate: float = _h("peak learning rate", 1e-5)
    optim: str = _h("optimizer (transformers OptimizerNames: adamw_torch, sgd, adafactor, ...; RL: adamw_torch or sgd)", "adamw_torch")
    weight_decay: float = _h("AdamW weight decay", 0.0)
    warmup_steps: int = _h("linear warm-up steps", 0)
    lr_scheduler: str = _h("transformers lr scheduler name (constant, linear, cosine, ...)", "constant")
    max_grad_norm: float = _h("gradient clipping norm (0 disables)", 1.0)
    batch_size: int = _h("samples per device per micro-batch", 4)
    grad_accum: int = _h("gradient accumulation steps (global batch = batch_size x grad_accum x processes)", 1)
    max_length: int = _h("maximum tokens per sample (prompt + response); longer samples are cut", 512)
    seed: int = _h("random seed (data order, masks, rollouts)", 0)
    dtype: str = _h("parameter dtype when loading: float32, bfloat16 or float16", "float32")
    mixed_precision: str = _h("autocast: no, bf16 or fp16", "no")
    save_steps: int = _h("save a checkpoint every N steps (0: only at the end)", 0)
    save_total_limit: int = _h("keep at most N checkpoints (0: keep all)", 2)
    logging_steps: int = _h("log every N steps", 10)
    report_to: str = _h("logging back-ends: none, tensorboard, wandb (comma separated)", "none")
    resume: str = _h("resume from a checkpoint folder, or 'auto' for the newest in output, or '' for none", "")
    lora_r: int = _h("LoRA rank (0: full fine-tuning); the adapter is merged into the saved model", 0)
    lora_alpha: int = _h("LoRA alpha", 16)
    lora_dropout: float = _h("LoRA dropout", 0.0)
    lora_target_modules: str = _h("comma-separated module names for LoRA, or 'all-linear'", "all-linear")
    deepspeed: str = _h("DeepSpeed config file (passed to transformers TrainingArguments)", "")
    fsdp: str = _h("FSDP options string (passed to transformers TrainingArguments), e.g. 'full_shard auto_wrap'", "")
    gradient_checkpointing: bool = _h("enable gradient checkpointing if the model supports it", False)
    device: str = _h("device for single-process runs without accelerate: '' = auto (cuda if available)", "")
    progress: bool = _h("show a tqdm progress bar", True)

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is invalid; accepted: {', '.join(DTYPES)}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision={self.mixed_precision!r} is invalid; accepted: no, bf16, fp16")
        for name in ("max_steps", "batch_size", "grad_accum", "max_length"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid; accepted: an integer >= 1")
        for name in ("save_steps", "save_total_limit", "lora_r", "warmup_steps"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid; accepted: an integer >= 0")
        if not self.model:
            raise ValueError("model='' is invalid; accepted: a checkpoint folder or hub id (--model)")
        if not self.data:
            raise ValueError("data='' is invalid; accepted: a JSONL file or hf:NAME[:SPLIT] (--data)")
        if not self.output:
            raise ValueError("output='' is invalid; accepted: an output folder (--output)")


@dataclass
class SFTConfig(_Common):
    """Supervised fine-tuning of a diffusion LM with a masking strategy (see trainers/masking.py)."""

    masking: str = _h("masking strategy: random (LLaDA), blockwise (semi-AR) or agdo (attention-guided)", "random")
    mask_eps: float = _h("minimum mask probability eps: p = (1 - eps) t + eps, t ~ U(0, 1)", 1e-3)
    block_size: int = _h("blockwise masking: tokens per block", 32)
    agdo_tokens_per_step: int = _h("agdo: response tokens added to the order per step (n)", 1)
    agdo_gamma: float = _h("agdo: loss weight 1 + gamma * I_k on attention-critical tokens", 1.0)
    agdo_layer: int = _h("agdo: layer whose head-mean attention builds the order (-1 = last)", -1)
    agdo_rows_per_sample: int = _h("agdo: training rows (denoising steps) drawn per sample", 1)
    agdo_influence_norm: str = _h("agdo: influence normalisation: mean, max, sum or none", "mean")
    eos_padding: str = _h("response padding: batch (EOS to the longest sample of the micro-batch, trained as response: LLaDA), "
                          "max_length (EOS to max_length for every sample: LLaDA's preprocessing, independent of batching), "
                          "none (pad id, excluded from loss and attention)", "batch")

    def validate(self) -> None:
        super().validate()
        if self.masking not in MASKING_STRATEGIES:
            raise ValueError(f"masking={self.masking!r} is invalid; accepted: {', '.join(MASKING_STRATEGIES)}")
        if self.agdo_influence_norm not in INFLUENCE_NORMS:
            raise ValueError(
                f"agdo_influence_norm={self.agdo_influence_norm!r} is invalid; accepted: {', '.join(INFLUENCE_NORMS)}"
            )
        if self.eos_padding not in EOS_PADDING:
            raise ValueError(f"eos_padding={self.eos_padding!r} is invalid; accepted: {', '.join(EOS_PADDING)}")
        if not 0.0 <= self.mask_eps < 1.0:
            raise ValueError(f"mask_eps={self.mask_eps!r} is invalid; accepted: 0 <= mask_eps < 1")
        for name in ("block_size", "agdo_tokens_per_step", "agdo_rows_per_sample"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid; accepted: an integer >= 1")
        if self.agdo_gamma < 0:
            raise ValueError(f"agdo_gamma={self.agdo_gamma!r} is invalid; accepted: a number >= 0")


@dataclass
class RLConfig(_Common):
    """Group-relative policy optimisation for diffusion LMs (see trainers/rl.py)."""

    estimator: str = _h("sequence log-prob estimator: d1 (one step), tracerl (decoding trace) or agdo (attention order)", "d1")
    reward: str = _h("reward: math (math-verify), code (sandbox tests), exact or contains (answer string), or module:function(records, texts, ids) -> list[float]", "math")
    group_size: int = _h("completions sampled per prompt", 8)
    num_iterations: int = _h("policy updates per batch of rollouts (mu); >1 makes the clipped ratio active", 1)
    clip_eps: float = _h("PPO clip range of the probability ratio", 0.2)
    beta: float = _h("KL penalty weight to the reference policy (0: no reference model)", 0.0)
    scale_rewards: bool = _h("divide advantages by the group std (GRPO); False = Dr. GRPO", True)
    prompt_mask_prob: float = _h("d1: probability of masking each prompt token in the one-step estimate", 0.15)
    shrink: int = _h("tracerl/agdo: consecutive decoding steps merged into one training slice", 1)
    agdo_tokens_per_step: int = _h("agdo: completion tokens per order step (n)", 1)
    agdo_layer: int = _h("agdo: attention layer (-1 = last)", -1)
    agdo_delta: float = _h("agdo: advantage shaping A' = A + sign(A) * delta * I_k", 0.1)
    agdo_influence_norm: str = _h("agdo: influence normalisation: mean, max, sum or none", "mean")
    decode: str = _h("decoding options for rollouts as KEY=VALUE,... (DecodeConfig fields, e.g. sampler=confidence,gen_length=64,steps=64,temperature=1.0)", "")
    gen_length: int = _h("completion length of rollouts (overrides decode)", 64)
    temperature: float = _h("rollout sampling temperature (overrides decode)", 1.0)
    forward_batch: int = _h("rows per training forward: estimator rows run in chunks of this size, one backward each", 64)
    batch_size: int = _h("prompts per step (each gets group_size completions)", 2)
    learning_rate: float = _h("peak learning rate (AdamW)", 1e-6)

    def validate(self) -> None:
        super().validate()
        if self.estimator not in RL_ESTIMATORS:
            raise ValueError(f"estimator={self.estimator!r} is invalid; accepted: {', '.join(RL_ESTIMATORS)}")
        if self.reward not in RL_REWARDS and ":" not in self.reward:
            raise ValueError(f"reward={self.reward!r} is invalid; accepted: {', '.join(RL_REWARDS)} or module:function")
        if self.agdo_influence_norm not in INFLUENCE_NORMS:
            raise ValueError(
                f"agdo_influence_norm={self.agdo_influence_norm!r} is invalid; accepted: {', '.join(INFLUENCE_NORMS)}"
            )
        for name in ("group_size", "num_iterations", "shrink", "agdo_tokens_per_step", "gen_length", "forward_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid; accepted: an integer >= 1")
        if not 0.0 <= self.prompt_mask_prob < 1.0:
            raise ValueError(f"prompt_mask_prob={self.prompt_mask_prob!r} is invalid; accepted: 0 <= p < 1")
        for name in ("deepspeed", "fsdp"):
            if getattr(self, name):
                raise ValueError(f"{name}={getattr(self, name)!r} is not used by RL; accepted: '' "
                                 "(configure DeepSpeed/FSDP with `accelerate config` + `accelerate launch`)")
        if self.report_to not in ("", "none"):
            raise ValueError(f"report_to={self.report_to!r} is not supported by RL; accepted: none "
                             "(the log history is returned and saved in each checkpoint's trainer_state.json)")
        if self.gradient_checkpointing:
            raise ValueError("gradient_checkpointing=True is not supported by RL; accepted: False")
        if self.beta < 0 or self.clip_eps <= 0:
            raise ValueError(f"beta={self.beta!r}, clip_eps={self.clip_eps!r}; accepted: beta >= 0, clip_eps > 0")


def field_help(cls) -> dict[str, tuple[object, str]]:
    """{name: (default, help)} of a config dataclass (used by the CLI and the docs)."""
    return {f.name: (f.default, f.metadata.get("help", "")) for f in fields(cls)}


def from_dict(cls, values: dict):
    """Build a config from a dict, rejecting unknown keys with a 'did you mean' hint."""
    import difflib

    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {cls.__name__} option {key!r}; accepted: {', '.join(sorted(known))}.{hint}")
    return cls(**values)
