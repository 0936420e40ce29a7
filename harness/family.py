"""Family adapters: everything the engine, the lm-eval model and the trainers need to know about a
model family, so that none of them contains a family ``if`` or a magic token id.

``get_adapter(model_or_config, tokenizer=None)`` returns a frozen ``FamilyAdapter`` with the mask,
EOS/EoT, pad and BOS ids (read from the config, the generation config and the tokenizer, in that
order of authority for the mask and from all three for stop ids), the logit alignment (Dream's raw
``logits[:, i]`` predict token ``i + 1``, so position i is scored by raw ``i - 1``; LLaDA and SDAR
are not shifted), SDAR's block size, and a chat template (the tokenizer's, else the family's
official format).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAMILY_SPECS", "FamilyAdapter", "FamilySpec", "family_of", "get_adapter"]

# Official chat formats (used when the tokenizer carries no template, e.g. the byte tokenizer of
# the tiny test models). Written for plain role/content messages; tools are not supported here.
_LLADA_TEMPLATE = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 and bos_token %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
_QWEN2_TEMPLATE = (  # Dream: Qwen2.5 format with the default system prompt
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_QWEN3_TEMPLATE = (  # SDAR: Qwen3 format, no default system prompt
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class FamilySpec:
    """Static facts about one family (official ids are used only for the official vocabulary)."""

    name: str
    model_type: str
    default_mask_id: int
    eot_token: str  # end-of-turn token text
    official_vocab_size: int
    official_eot_id: int
    shift_logits: bool
    block_causal: bool
    chat_template: str


FAMILY_SPECS: dict[str, FamilySpec] = {
    "llada": FamilySpec("llada", "llada", 126336, "<|eot_id|>", 126464, 126348, False, False, _LLADA_TEMPLATE),
    "dream": FamilySpec("dream", "Dream", 151666, "<|im_end|>", 152064, 151645, True, False, _QWEN2_TEMPLATE),
    "sdar": FamilySpec("sdar", "sdar", 151669, "<|im_end|>", 151936, 151645, False, True, _QWEN3_TEMPLATE),
}


def family_of(config: Any) -> FamilySpec:
    """The family of a config (by ``model_type``, case-insensitive); ValueError if unknown."""
    model_type = getattr(config, "model_type", None)
    if model_type is None and isinstance(config, dict):
        model_type = config.get("model_type")
    key = str(model_type).lower()
    if key not in FAMILY_SPECS:
        accepted = ", ".join(repr(s.model_type) for s in FAMILY_SPECS.values())
        raise ValueError(f"unknown model family: config model_type={model_type!r} (accepted: {accepted})")
    return FAMILY_SPECS[key]


@dataclass(frozen=True)
class FamilyAdapter:
    """What the rest of dllm-eval asks a model family (see docs/ARCHITECTURE.md section 2)."""

    name: str
    mask_id: int
    eos_ids: tuple[int, ...]
    eot_id: int | None
    pad_id: int | None
    bos_id: int | None
    shift_logits: bool
    block_size: int | None
    supports_attention: bool = True
    chat_template: str | None = field(default=None, repr=False)

    @property
    def block_causal(self) -> bool:
        return self.block_size is not None

    def align_logits(self, raw_logits: Any) -> Any:
        """Logits where ``[:, i]`` scores position i (Dream: ``cat([raw[:, :1], raw[:, :-1]])``)."""
        if not self.shift_logits:
            return raw_logits
        import torch

        return torch.cat([raw_logits[:, :1], raw_logits[:, :-1]], dim=1)

    def forward(self, model: Any, x: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
        """Run ``model`` and return its output with ``logits`` aligned (position i scored at i).

        With Dream and a KV cache the first input position needs the raw logits of the position
        before it, which a cached forward does not compute; its aligned logits are then those of
        the position itself (as Dream's own sampler does at position 0)."""
        out = model(x, attention_mask=attention_mask, **kwargs)
        out.logits = self.align_logits(out.logits)
        return out

    def apply_chat_template(
        self, tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The chat prompt text for ``messages`` (the tokenizer's template, else the family's)."""
        template = getattr(tokenizer, "chat_template", None) or self.chat_template
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, chat_template=template
        )


def _first_int(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def _read_generation_config(config: Any) -> dict[str, Any]:
    path = getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
    if path and os.path.isfile(os.path.join(str(path), "generation_config.json")):
        with open(os.path.join(str(path), "generation_config.json")) as f:
            return json.load(f)
    return {}


def _token_id(tokenizer: Any, token: str) -> int | None:
    if tokenizer is None:
        return None
    vocab = tokenizer.get_vocab()
    return vocab.get(token)


def get_adapter(model_or_config: Any, tokenizer: Any = None, generation_config: Any = None) -> FamilyAdapter:
    """The ``FamilyAdapter`` of a native model, its config, or a config dict.

    Ids come from the config (mask, eos, pad, bos), then ``generation_config`` (given, attached to
    the model, or ``generation_config.json`` next to the config), then the tokenizer. Raises
    ValueError for an unknown family or a tokenizer that lacks the model's mask token.
    """
    config = getattr(model_or_config, "config", model_or_config)
    spec = family_of(config)
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    gen = generation_config if generation_config is not None else getattr(model_or_config, "generation_config", None)
    if gen is None:
        gen = {} if isinstance(config, dict) else _read_generation_config(config)
    gen_get = gen.get if isinstance(gen, dict) else (lambda k, d=None: getattr(gen, k, d))

    mask_id = get("mask_token_id")
    if mask_id is None:
        mask_id = gen_get("mask_token_id")
    if mask_id is None and tokenizer is not None:
        mask_id = tokenizer.mask_token_id
    if mask_id is None:
        mask_id = spec.default_mask_id
    mask_id = int(mask_id)
    vocab_size = int(get("vocab_size") or 0)
    if tokenizer is not None:
        mask_text = tokenizer.convert_ids_to_tokens(mask_id) if mask_id < len(tokenizer) else None
        tok_mask = tokenizer.mask_token_id
        if mask_text is None or (tok_mask is not None and tok_mask != mask_id):
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has no mask token with id {mask_id} "
                f"(the {spec.name} config's mask_token_id; tokenizer mask token: "
                f"{tokenizer.mask_token!r} = {tok_mask}, vocabulary size {len(tokenizer)})"
            )

    eos_config = _ids(get("eos_token_id"))
    eos_gen = _ids(gen_get("eos_token_id"))
    eos_tok = _ids(getattr(tokenizer, "eos_token_id", None))
    eot_id = _token_id(tokenizer, spec.eot_token)
    if eot_id is None and vocab_size == spec.official_vocab_size:
        eot_id = spec.official_eot_id
    if eot_id is None:  # e.g. SDAR's generation_config lists <|im_end|> before <|endoftext|>
        eot_id = next((i for i in eos_gen if i not in eos_config), None)
    eos_ids: list[int] = []
    for i in [*eos_config, *eos_gen, *eos_tok, *_ids(eot_id)]:
        if i not in eos_ids:
            eos_ids.append(i)
    if not eos_ids:
        raise ValueError(f"{spec.name}: no eos_token_id in the config, generation config or tokenizer")

    pad_id = _first_int(get("pad_token_id"))
    if pad_id is None:
        pad_id = _first_int(gen_get("pad_token_id"))
    if pad_id is None and tokenizer is not None:
        pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = eos_ids[0]
    bos_id = _first_int(gen_get("bos_token_id"))
    if bos_id is None:
        bos_id = _first_int(get("bos_token_id"))
    if bos_id is None and tokenizer is not None:
        bos_id = tokenizer.bos_token_id

    template = getattr(tokenizer, "chat_template", None) or spec.chat_template
    block_size = int(get("block_size")) if spec.block_causal else None
    return FamilyAdapter(
        name=spec.name,
        mask_id=mask_id,
        eos_ids=tuple(eos_ids),
        eot_id=eot_id,
        pad_id=pad_id,
        bos_id=bos_id,
        shift_logits=spec.shift_logits,
        block_size=block_size,
        supports_attention=True,
        chat_template=template,
    )
