"""Native Dream (Dream-org/Dream-v0-Base/Instruct-7B; Ye et al., "Dream 7B: Diffusion Large
Language Models", arXiv:2508.15487).

Qwen2 layout and official names: ``model.embed_tokens``, ``model.layers.{i}.self_attn.{q,k,v}_proj``
(with biases), ``self_attn.o_proj``, ``mlp.{gate,up,down}_proj``, ``input_layernorm``,
``post_attention_layernorm``, ``model.norm``, ``lm_head``. Attention is bidirectional (a mask only
comes from padding). The model returns RAW logits, where ``logits[:, i]`` predicts token ``i + 1``;
the family adapter shifts them (position i is scored by raw ``i - 1``).
"""

from __future__ import annotations

from dllm_eval.harness.models.common import DecoderLayer, DiffusionLM, RMSNorm
from dllm_eval.harness.models.configs import DreamConfig
from torch import nn

__all__ = ["DreamConfig", "DreamModel", "QwenLayer"]


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, bias: bool, qk_norm_eps: float | None) -> None:
        super().__init__()
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)
        if qk_norm_eps is not None:
            self.q_norm = RMSNorm(head_dim, qk_norm_eps)
            self.k_norm = RMSNorm(head_dim, qk_norm_eps)


class _MLP(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)


class QwenLayer(DecoderLayer):
    """Qwen2 (``qkv_bias``) / Qwen3 (``qk_norm``) decoder layer under the official names."""

    ROLES = {
        "attn_norm": "input_layernorm",
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "mlp_norm": "post_attention_layernorm",
        "gate": "mlp.gate_proj",
        "up": "mlp.up_proj",
        "down": "mlp.down_proj",
    }

    def __init__(self, config, qkv_bias: bool, qk_norm: bool) -> None:  # noqa: ANN001
        super().__init__(config.num_attention_heads, config.num_key_value_heads, config.head_dim, rope_full_precision=False)
        eps = config.rms_norm_eps
        self.self_attn = _Attention(
            config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
            qkv_bias, eps if qk_norm else None,
        )
        self.mlp = _MLP(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps)
        if qk_norm:
            self.ROLES = {**QwenLayer.ROLES, "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm"}


class QwenBody(nn.Module):
    """``embed_tokens``, ``layers``, ``norm`` (the ``model.`` part of Qwen-layout checkpoints)."""

    def __init__(self, config, qkv_bias: bool, qk_norm: bool) -> None:  # noqa: ANN001
        super().__init__()
        self.padding_idx = getattr(config, "pad_token_id", None)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(QwenLayer(config, qkv_bias, qk_norm) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class DreamModel(DiffusionLM):
    """Dream masked-diffusion LM (model_type ``Dream``); raw, unshifted logits."""

    config_class = DreamConfig
    _no_split_modules = ["QwenLayer"]

    def __init__(self, config: DreamConfig) -> None:
        super().__init__(config)
        self.model = QwenBody(config, qkv_bias=True, qk_norm=False)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _parts(self):  # noqa: ANN202
        return self.model.embed_tokens, self.model.layers, self.model.norm, self.lm_head
