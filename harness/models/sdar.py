"""Native SDAR (JetAstra/SDAR-*-Chat; Cheng et al., "SDAR: A Synergistic Diffusion-AutoRegression
Paradigm for Scalable Sequence Generation", arXiv:2510.06303).

Qwen3 layout and official names (as Dream without q/k/v biases, plus per-head
``self_attn.q_norm`` / ``self_attn.k_norm`` applied before RoPE; explicit ``head_dim``).
Attention is block-causal with ``config.block_size``: a query in block ``a`` (absolute position
``// block_size``) may attend keys of blocks ``b <= a``. That pattern is applied over absolute
positions whenever no 3-D/4-D mask is given, so with a prefix cache and the input being the current
block it is unrestricted. Logits are not shifted.
"""

from __future__ import annotations

import torch
from dllm_eval.harness.models.common import DiffusionLM
from dllm_eval.harness.models.configs import SDARConfig
from dllm_eval.harness.models.dream import QwenBody
from torch import nn

__all__ = ["SDARConfig", "SDARForCausalLM", "block_causal_mask"]


def block_causal_mask(q_positions: torch.Tensor, n_keys: int, block_size: int) -> torch.Tensor:
    """``[n, n_keys]`` bool: query at absolute position p may attend key j iff
    ``j // block_size <= p // block_size``."""
    keys = torch.arange(n_keys, device=q_positions.device)
    return (keys[None, :] // block_size) <= (q_positions[:, None] // block_size)


class SDARForCausalLM(DiffusionLM):
    """SDAR block-diffusion LM (model_type ``sdar``)."""

    config_class = SDARConfig
    _no_split_modules = ["QwenLayer"]

    def __init__(self, config: SDARConfig) -> None:
        super().__init__(config)
        self.model = QwenBody(config, qkv_bias=bool(config.attention_bias), qk_norm=True)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _parts(self):  # noqa: ANN202
        return self.model.embed_tokens, self.model.layers, self.model.norm, self.lm_head

    def default_attention_mask(
        self, q_positions: torch.Tensor, n_keys: int, device: torch.device
    ) -> torch.Tensor | None:
        return block_causal_mask(q_positions, n_keys, int(self.config.block_size))
