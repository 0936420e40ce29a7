"""Native LLaDA (GSAI-ML/LLaDA-8B-Base/Instruct; Nie et al., "Large Language Diffusion Models",
arXiv:2502.09992).

Layout and parameter names of the official checkpoints: ``model.transformer.wte``, blocks
``model.transformer.blocks.{i}.{attn_norm, q_proj, k_proj, v_proj, attn_out, ff_norm, ff_proj
(SiLU gate), up_proj, ff_out}``, ``model.transformer.ln_f`` and the head
``model.transformer.ff_out``. Bidirectional attention, RoPE applied in float32, logits not shifted.
The forward itself is the shared one in ``common.py``.
"""

from __future__ import annotations

from dllm_eval.harness.models.common import DecoderLayer, DiffusionLM, RMSNorm
from dllm_eval.harness.models.configs import LLaDAConfig
from torch import nn

__all__ = ["LLaDAConfig", "LLaDAModelLM"]


class LLaDABlock(DecoderLayer):
    """One LLaDA "llama" block under its official names."""

    ROLES = {
        "attn_norm": "attn_norm",
        "q": "q_proj",
        "k": "k_proj",
        "v": "v_proj",
        "o": "attn_out",
        "mlp_norm": "ff_norm",
        "gate": "ff_proj",
        "up": "up_proj",
        "down": "ff_out",
    }

    def __init__(self, config: LLaDAConfig) -> None:
        d, hd = config.d_model, config.head_dim
        kv = config.num_key_value_heads
        super().__init__(config.n_heads, kv, hd, rope_full_precision=True)
        qkv_bias = bool(config.include_qkv_bias)
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, config.n_heads * hd, bias=qkv_bias)
        self.k_proj = nn.Linear(d, kv * hd, bias=qkv_bias)
        self.v_proj = nn.Linear(d, kv * hd, bias=qkv_bias)
        self.attn_out = nn.Linear(config.n_heads * hd, d, bias=False)
        self.ff_proj = nn.Linear(d, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(d, config.intermediate_size, bias=False)
        self.ff_out = nn.Linear(config.intermediate_size, d, bias=False)


class _LLaDAInner(nn.Module):
    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        modules = {
            "wte": nn.Embedding(config.padded_vocab_size, config.d_model),
            "blocks": nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
            "ln_f": RMSNorm(config.d_model, config.rms_norm_eps),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        self.transformer = nn.ModuleDict(modules)


class LLaDAModelLM(DiffusionLM):
    """LLaDA masked-diffusion LM (model_type ``llada``)."""

    config_class = LLaDAConfig
    _no_split_modules = ["LLaDABlock"]
    rope_full_precision = True

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__(config)
        self.model = _LLaDAInner(config)
        self.post_init()

    def _parts(self):  # noqa: ANN202
        t = self.model.transformer
        head = t["wte"] if self.config.weight_tying else t["ff_out"]
        return t["wte"], t["blocks"], t["ln_f"], head
