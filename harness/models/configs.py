"""Configuration classes of the native LLaDA, Dream and SDAR models.

Each class accepts the official ``config.json`` of its family unchanged (including ``auto_map`` and
training-only keys, which are kept and written back by ``save_pretrained``) and adds read-only
aliases under the common names the shared model code uses (``hidden_size``,
``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``intermediate_size``,
``num_hidden_layers``, ``rms_norm_eps``, ``rope_theta``). This module imports transformers but no
model code; ``model_type`` values are the official ones (``llada``, ``Dream``, ``sdar``).
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

__all__ = ["LLaDAConfig", "DreamConfig", "SDARConfig", "CONFIG_CLASSES"]


class LLaDAConfig(PretrainedConfig):
    """LLaDA (GSAI-ML/LLaDA-8B-*) configuration with the official key names."""

    model_type = "llada"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        d_model: int = 4096,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        n_layers: int = 32,
        mlp_hidden_size: int | None = 12288,
        mlp_ratio: int = 4,
        vocab_size: int = 126464,
        embedding_size: int | None = 126464,
        max_sequence_length: int = 4096,
        rope_theta: float = 500000.0,
        rms_norm_eps: float = 1e-5,
        mask_token_id: int = 126336,
        weight_tying: bool = False,
        include_bias: bool = False,
        include_qkv_bias: bool = False,
        activation_type: str = "silu",
        block_type: str = "llama",
        layer_norm_type: str = "rms",
        rope: bool = True,
        alibi: bool = False,
        attention_layer_norm: bool = False,
        scale_logits: bool = False,
        input_emb_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.n_layers = n_layers
        self.mlp_hidden_size = mlp_hidden_size
        self.mlp_ratio = mlp_ratio
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.max_sequence_length = max_sequence_length
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.mask_token_id = mask_token_id
        self.weight_tying = weight_tying
        self.include_bias = include_bias
        self.include_qkv_bias = include_qkv_bias
        self.activation_type = activation_type
        self.block_type = block_type
        self.layer_norm_type = layer_norm_type
        self.rope = rope
        self.alibi = alibi
        self.attention_layer_norm = attention_layer_norm
        self.scale_logits = scale_logits
        self.input_emb_norm = input_emb_norm
        kwargs.pop("tie_word_embeddings", None)
        super().__init__(tie_word_embeddings=weight_tying, **kwargs)

    def check_supported(self) -> None:
        """Raise ValueError for official options the native model does not implement."""
        unsupported = {
            "block_type": (self.block_type, "llama"),
            "layer_norm_type": (self.layer_norm_type, "rms"),
            "activation_type": (self.activation_type, "silu"),
            "rope": (self.rope, True),
            "alibi": (self.alibi, False),
            "attention_layer_norm": (self.attention_layer_norm, False),
            "include_bias": (self.include_bias, False),
            "scale_logits": (self.scale_logits, False),
            "input_emb_norm": (self.input_emb_norm, False),
        }
        for key, (value, accepted) in unsupported.items():
            if value != accepted:
                raise ValueError(
                    f"LLaDA config option {key}={value!r} is not supported by the native model "
                    f"(accepted: {accepted!r}, as in the released LLaDA checkpoints)"
                )

    # common names used by the shared model code
    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def num_key_value_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def intermediate_size(self) -> int:
        return self.mlp_hidden_size or self.mlp_ratio * self.d_model

    @property
    def padded_vocab_size(self) -> int:
        return self.embedding_size or self.vocab_size


_QWEN_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
    "mask_token_id", "use_sliding_window", "sliding_window",
)


class _QwenLikeConfig(PretrainedConfig):
    """Fields and checks shared by the Qwen-layout families (Dream: Qwen2, SDAR: Qwen3)."""

    family = ""

    def _set_qwen_fields(self, values: dict[str, Any]) -> None:
        """Store the shared constructor arguments (``values``: the subclass ``__init__``'s locals)."""
        for name in _QWEN_FIELDS:
            setattr(self, name, values[name])
        self.num_key_value_heads = values["num_key_value_heads"] or values["num_attention_heads"]

    def check_supported(self) -> None:
        """Raise ValueError for official options the native model does not implement."""
        _check_qwen_like(self, self.family)


class DreamConfig(_QwenLikeConfig):
    """Dream (Dream-org/Dream-v0-*) configuration: Qwen2 layout with a mask token."""

    model_type = "Dream"
    family = "Dream"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 152064,
        hidden_size: int = 3584,
        intermediate_size: int = 18944,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 28,
        num_key_value_heads: int | None = 4,
        hidden_act: str = "silu",
        max_position_embeddings: int = 131072,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 1000000.0,
        rope_scaling: dict | None = None,
        mask_token_id: int = 151666,
        use_sliding_window: bool = False,
        sliding_window: int | None = None,
        tie_word_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        self._set_qwen_fields(locals())
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class SDARConfig(_QwenLikeConfig):
    """SDAR (JetAstra/SDAR-*) configuration: Qwen3 layout, block-causal with ``block_size``."""

    model_type = "sdar"
    family = "SDAR"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 151936,
        hidden_size: int = 4096,
        intermediate_size: int = 22016,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = 32,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 32768,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
        rope_scaling: dict | None = None,
        attention_bias: bool = False,
        block_size: int = 4,
        mask_token_id: int = 151669,
        use_sliding_window: bool = False,
        sliding_window: int | None = None,
        tie_word_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        self._set_qwen_fields(locals())
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.attention_bias = attention_bias
        self.block_size = block_size
        # The official file asks for flex_attention (its training path). The native model always
        # uses SDPA (plus exact statistics on request), so the request is kept under another name
        # instead of making transformers demand flex-attention support.
        requested = kwargs.pop("attn_implementation", None)
        if requested is not None:
            self.reference_attn_implementation = requested
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    def check_supported(self) -> None:
        """Raise ValueError for official options the native model does not implement."""
        super().check_supported()
        if self.attention_bias:
            raise ValueError("SDAR config option attention_bias=True is not supported (accepted: false)")
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(
                f"SDAR config option block_size={self.block_size!r} is invalid (accepted: int >= 1)"
            )


def _check_qwen_like(cfg: PretrainedConfig, family: str) -> None:
    if cfg.hidden_act != "silu":
        raise ValueError(f"{family} config option hidden_act={cfg.hidden_act!r} is not supported (accepted: 'silu')")
    if cfg.rope_scaling not in (None, {}):
        raise ValueError(f"{family} config option rope_scaling={cfg.rope_scaling!r} is not supported (accepted: null)")
    if cfg.use_sliding_window:
        raise ValueError(f"{family} config option use_sliding_window=True is not supported (accepted: false)")
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ValueError(
            f"{family} config: num_attention_heads={cfg.num_attention_heads} is not a multiple of "
            f"num_key_value_heads={cfg.num_key_value_heads}"
        )


CONFIG_CLASSES: dict[str, type[PretrainedConfig]] = {
    LLaDAConfig.model_type: LLaDAConfig,
    DreamConfig.model_type: DreamConfig,
    SDARConfig.model_type: SDARConfig,
}
