"""Supervised fine-tuning of diffusion LMs on the transformers ``Trainer`` (random / blockwise / AGDO masking).

Methods: LLaDA random masking ("Large Language Diffusion Models", arXiv 2502.09992), blockwise
semi-autoregressive masking (BD3-LM, arXiv 2503.09573) and AGDO attention-guided masking
("Beyond Fully Random Masking: Attention-Guided Denoising and Optimization for Diffusion Language
Models", arXiv 2606.12273); the masking and the loss weights are the pure functions of
``trainers/masking.py``.

Read top to bottom: :class:`MaskingCollator` pads a batch (responses right-padded with EOS) and,
for ``random``/``blockwise``, builds the noisy rows; for ``agdo`` it hands over the clean batch and
:meth:`DiffusionSFTTrainer.compute_loss` first runs one no-grad forward for the head-mean
attention (``trainers/attention.py``) and then builds the rows. The loss is
``sum(w · CE) / num_samples`` on the adapter-aligned logits. Everything else — gradient
accumulation, mixed precision, checkpoint rotation (``save_total_limit``), resume, logging
(tensorboard/wandb), DDP/FSDP/DeepSpeed through accelerate — is the stock ``Trainer``. LoRA goes
through peft and is merged into the saved model. Masks depend only on (seed, epoch, sample
index), so a resumed run and a run split over several processes see the same masks.

Safety: a non-finite loss raises :class:`NonFiniteLossError` (naming the step) before the
optimizer step, and ``_save_checkpoint`` refuses to write parameters that are not finite, so a
NaN never reaches a checkpoint.

Run: ``dllm-eval train sft --model DIR --data FILE.jsonl --masking agdo --max-steps 100 --output OUT``.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from dllm_eval.trainers import losses, masking
from dllm_eval.trainers.attention import head_mean_attention
from dllm_eval.trainers.config import SFTConfig
from dllm_eval.trainers.losses import NonFiniteLossError

__all__ = ["DiffusionSFTTrainer", "MaskingCollator", "NonFiniteLossError", "SFTDataset", "train_sft"]
from transformers import Trainer, TrainerCallback, TrainingArguments


class SFTDataset(torch.utils.data.Dataset):
    """Tokenised samples ``{"input_ids", "prompt_len", "index"}``."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.samples[i]


class MaskingCollator:
    """Pads a batch and applies the masking strategy (``random``/``blockwise``; ``agdo`` in the trainer).

    Output keys: ``input_ids`` (noisy) , ``targets``, ``weights``, ``num_samples``; for ``agdo``
    instead ``clean_ids``, ``response_mask``, ``sample_ids``; with ``eos_padding='none'`` also
    ``attention_mask`` (1 = real token).
    """

    def __init__(self, config: SFTConfig, mask_id: int, eos_id: int, pad_id: int | None = None) -> None:
        self.config = config
        self.mask_id = int(mask_id)
        self.eos_id = int(eos_id)
        self.pad_id = int(eos_id if pad_id is None else pad_id)
        self.epoch = 0

    def pad(self, features: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """(ids, response mask, attention mask, sample indices) following ``eos_padding``."""
        mode = self.config.eos_padding
        L = max(len(f["input_ids"]) for f in features)
        if mode == "max_length":
            L = max(L, self.config.max_length)
        fill = self.pad_id if mode == "none" else self.eos_id
        ids = torch.full((len(features), L), fill, dtype=torch.long)
        resp = torch.zeros(len(features), L, dtype=torch.bool)
        am = torch.ones(len(features), L, dtype=torch.long)
        for b, f in enumerate(features):
            n = len(f["input_ids"])
            ids[b, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
            if mode == "none":
                resp[b, f["prompt_len"]:n] = True
                am[b, n:] = 0
            else:
                resp[b, f["prompt_len"]:] = True  # response, its EOS and the EOS padding
        return ids, resp, am, [int(f["index"]) for f in features]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        ids, resp, am, index = self.pad(features)
        cfg = self.config
        extra = {"attention_mask": am} if cfg.eos_padding == "none" else {}
        if cfg.masking == "agdo":
            return {"clean_ids": ids, "response_mask": resp, "sample_ids": torch.tensor(index), **extra}
        gens = masking.sample_generators(cfg.seed, self.epoch, index)
        if cfg.masking == "random":
            rows = masking.random_masking(ids, resp, self.mask_id, eps=cfg.mask_eps, generators=gens)
        else:
            rows = masking.blockwise_masking(ids, resp, self.mask_id, block_size=cfg.block_size,
                                             eps=cfg.mask_eps, generators=gens)
        return {"input_ids": rows.input_ids, "targets": rows.targets, "weights": rows.weights,
                "num_samples": torch.tensor(rows.num_samples), **extra}


class _EpochCallback(TrainerCallback):
    """Tells the collator which epoch it is in (masks are seeded by (seed, epoch, index))."""

    def __init__(self, collator: MaskingCollator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(math.floor((state.epoch or 0.0) + 1e-6))


class DiffusionSFTTrainer(Trainer):
    """``Trainer`` with the masked-diffusion loss; see the module docstring."""

    def __init__(self, *args: Any, adapter: Any, sft_config: SFTConfig, collator: MaskingCollator,
                 attention_fn=None, **kwargs: Any) -> None:
        super().__init__(*args, data_collator=collator, **kwargs)
        self.adapter = adapter
        self.sft_config = sft_config
        self.collator = collator
        self.attention_fn = attention_fn or (
            lambda model, ids, am: head_mean_attention(model, ids, am, layer=sft_config.agdo_layer)
        )
        self.model_accepts_loss_kwargs = False  # loss is normalised per sample, Trainer divides by accumulation
        self.add_callback(_EpochCallback(collator))

    def _agdo_rows(self, model, inputs: dict[str, Any]) -> dict[str, Any]:
        cfg = self.sft_config
        ids = inputs["clean_ids"]
        am = inputs.get("attention_mask")
        was_training = model.training
        model.eval()
        with torch.no_grad():
            attn = self.attention_fn(model, ids, am)
        model.train(was_training)
        gens = masking.sample_generators(cfg.seed, self.collator.epoch, inputs["sample_ids"].tolist())
        rows = masking.agdo_masking(
            ids.cpu(), inputs["response_mask"].cpu(), attn.cpu(), self.collator.mask_id,
            tokens_per_step=cfg.agdo_tokens_per_step, gamma=cfg.agdo_gamma,
            rows_per_sample=cfg.agdo_rows_per_sample, influence_norm=cfg.agdo_influence_norm,
            valid_mask=None if am is None else am.cpu().bool(), generators=gens,
        )
        dev = ids.device
        extra = {} if am is None else {"attention_mask": am[rows.sample_index.to(am.device)]}
        return {"input_ids": rows.input_ids.to(dev), "targets": rows.targets.to(dev),
                "weights": rows.weights.to(dev), "num_samples": torch.tensor(rows.num_samples), **extra}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "clean_ids" in inputs:
            inputs = self._agdo_rows(model, inputs)
        out = self.adapter.forward(model, inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
        logits = out.logits if hasattr(out, "logits") else out[0] if isinstance(out, tuple) else out
        loss = losses.weighted_masked_ce(logits, inputs["targets"], inputs["weights"],
                                         int(inputs["num_samples"]))
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"non-finite training loss ({float(loss.detach())}) at step {self.state.global_step + 1}; "
                "training stopped before the optimizer step, no checkpoint was written for it. "
                "Lower --learning-rate, enable --max-grad-norm, or check the data and dtype."
            )
        return (loss, out) if return_outputs else loss

    def _save_checkpoint(self, model, trial):
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(
                f"parameters became non-finite at step {self.state.global_step} ({bad[0]}"
                f"{' and others' if len(bad) > 1 else ''}); the checkpoint was NOT written."
            )
        return super()._save_checkpoint(model, trial)


def training_arguments(cfg: Any, *, use_cpu: bool | None = None) -> TrainingArguments:
    """transformers ``TrainingArguments`` from a trainer config (shared by SFT and RL)."""
    report = [r.strip() for r in cfg.report_to.split(",") if r.strip() and r.strip() != "none"]
    if use_cpu is None:
        use_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=cfg.output,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        optim=cfg.optim,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else 0.0,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=cfg.save_steps if cfg.save_steps > 0 else 500,
        save_total_limit=cfg.save_total_limit or None,
        save_safetensors=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=report or "none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        bf16=cfg.mixed_precision == "bf16",
        fp16=cfg.mixed_precision == "fp16",
        use_cpu=use_cpu,
        disable_tqdm=not cfg.progress,
        deepspeed=cfg.deepspeed or None,
        fsdp=cfg.fsdp or "",
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_dir=os.path.join(cfg.output, "logs"),
    )


def apply_lora(model, cfg: Any):
    """Wrap ``model`` with a peft LoRA adapter when ``cfg.lora_r > 0``."""
    if cfg.lora_r <= 0:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ValueError("lora_r > 0 needs the 'peft' package (pip install dllm-eval[lora])") from exc
    targets: Any = cfg.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none")
    return get_peft_model(model, lcfg)


def save_final(model, tokenizer, output: str | Path, source: str | Path | None = None) -> Path:
    """Save the model in its family's official format (LoRA merged) plus the tokenizer.

    ``generation_config.json`` of the ``source`` checkpoint (special ids the samplers read) is
    copied when the model did not write one."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteLossError(f"refusing to save non-finite parameters ({bad[0]})")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    src_gen = Path(source) / "generation_config.json" if source else None
    if src_gen is not None and src_gen.is_file() and not (out / "generation_config.json").exists():
        shutil.copyfile(src_gen, out / "generation_config.json")
    return out


def resolve_resume(cfg: Any) -> str | bool | None:
    """``resume``: '' → None, 'auto' → newest checkpoint in ``output`` (None if there is none), else the path."""
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(cfg.output) if os.path.isdir(cfg.output) else None
    if not os.path.isdir(cfg.resume):
        raise ValueError(f"resume={cfg.resume!r}: no such checkpoint folder; accepted: a folder, 'auto' or ''")
    return cfg.resume


def load_for_training(cfg: Any):
    """(model, tokenizer, adapter) through ``dllm_eval.load``; the tokenizer is required.

    The weights go straight to this process's device (``cfg.device``, else ``cuda:LOCAL_RANK``
    when CUDA is available, else CPU)."""
    import dllm_eval

    device = cfg.device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    model, tokenizer, adapter = dllm_eval.load(cfg.model, dtype=cfg.dtype, device=device)
    if tokenizer is None:
        raise ValueError(f"model={cfg.model!r} has no tokenizer; training needs one in the checkpoint folder")
    return model, tokenizer, adapter


def train_sft(cfg: SFTConfig, *, callbacks: list | None = None, attention_fn=None,
              model_and_tokenizer: tuple | None = None) -> dict[str, Any]:
    """Run SFT; returns ``{"output", "log_history", "global_step", "trainer"}``."""
    from dllm_eval.trainers.data import load_records, tokenize_sft

    cfg.validate()
    torch.manual_seed(cfg.seed)
    model, tokenizer, adapter = model_and_tokenizer or load_for_training(cfg)
    eos = adapter.eos_ids[0] if adapter.eos_ids else tokenizer.eos_token_id
    samples = tokenize_sft(load_records(cfg.data), tokenizer, eos, cfg.max_length)
    collator = MaskingCollator(cfg, adapter.mask_id, eos, adapter.pad_id)
    model = apply_lora(model, cfg)
    trainer = DiffusionSFTTrainer(
        model=model,
        args=training_arguments(cfg),
        train_dataset=SFTDataset(samples),
        adapter=adapter,
        sft_config=cfg,
        collator=collator,
        attention_fn=attention_fn,
        callbacks=callbacks,
    )
    with torch.enable_grad():  # a caller (e.g. lm-eval) may have disabled autograd globally
        result = trainer.train(resume_from_checkpoint=resolve_resume(cfg))
    final = None
    if trainer.is_world_process_zero():
        final = save_final(trainer.accelerator.unwrap_model(trainer.model), tokenizer, cfg.output, cfg.model)
    trainer.accelerator.wait_for_everyone()
    return {"output": final, "log_history": trainer.state.log_history,
            "global_step": result.global_step, "trainer": trainer}
