"""``dllm_eval.load``: a native model, its tokenizer and its family adapter from a checkpoint folder.

The folder (or hub id) holds the official ``config.json`` and safetensors weights (single file or
sharded with an index). The model class is chosen from ``model_type`` (``llada``, ``Dream``,
``sdar``), never from remote code. Tokenizers load from the same folder without remote code:
``tokenizer.json`` if present, else Qwen2's BPE files ``vocab.json`` + ``merges.txt`` (Dream and
SDAR ship those with remote tokenizer classes). Importing this module registers the families with
transformers' Auto classes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dllm_eval.harness.models import FAMILIES, register_auto_classes

__all__ = ["DTYPES", "load", "load_config", "load_model", "load_tokenizer"]

DTYPES = ("auto", "float32", "bfloat16", "float16")

register_auto_classes()


def _resolve(pretrained: str | os.PathLike) -> Path:
    path = Path(pretrained)
    if path.is_dir():
        return path
    try:  # a hub id: download (or reuse the cached) snapshot
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub comes with transformers
        raise ValueError(f"pretrained={str(pretrained)!r} is not a folder") from err
    try:
        return Path(snapshot_download(str(pretrained), allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]))
    except Exception as err:
        raise ValueError(
            f"pretrained={str(pretrained)!r} is neither a local folder nor a downloadable hub model: {err}"
        ) from err


def load_config(pretrained: str | os.PathLike) -> Any:
    """The native config of a checkpoint folder (ValueError for an unknown family)."""
    from dllm_eval.harness.family import family_of
    from dllm_eval.harness.models import configs

    path = _resolve(pretrained)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"pretrained={str(pretrained)!r}: no config.json in {path}")
    raw = json.loads(config_file.read_text())
    spec = family_of(raw)
    config_cls = getattr(configs, FAMILIES[spec.model_type][0])
    config = config_cls.from_pretrained(path)
    config.name_or_path = str(path)  # where get_adapter finds generation_config.json
    return config


def load_model(pretrained: str | os.PathLike, dtype: str = "auto", device: str | Any = "cpu") -> Any:
    """The native model of a checkpoint folder, in eval mode, on ``device``."""
    import torch
    from dllm_eval.harness import models

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported (accepted: {', '.join(DTYPES)})")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device (accepted: 'cpu', 'cuda', 'cuda:N', ...)") from err
    path = _resolve(pretrained)
    config = load_config(path)
    model_cls = getattr(models, FAMILIES[config.model_type][1])
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    if not any(path.glob("*.safetensors")):
        raise ValueError(f"pretrained={str(pretrained)!r}: no *.safetensors weights in {path}")
    # device_map puts each tensor straight on the device (no full CPU copy of a large model)
    model = model_cls.from_pretrained(path, config=config, dtype=torch_dtype, device_map=str(device))
    # one device is a plain placement, not a dispatch: without the record, Trainer / accelerate
    # move and wrap the model as usual (DDP, FSDP)
    if len(set(map(str, (getattr(model, "hf_device_map", None) or {}).values()))) == 1:
        del model.hf_device_map
    return model.eval()


def load_tokenizer(pretrained: str | os.PathLike) -> Any | None:
    """The tokenizer of a checkpoint folder, or None if it has no tokenizer files."""
    import transformers

    path = _resolve(pretrained)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the remote tokenizer classes named in the config
    try:
        if (path / "tokenizer.json").is_file():
            return transformers.PreTrainedTokenizerFast.from_pretrained(path)
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return transformers.Qwen2TokenizerFast.from_pretrained(path)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return None


def load(
    pretrained: str | os.PathLike, dtype: str = "auto", device: str | Any = "cpu"
) -> tuple[Any, Any | None, Any]:
    """``(model, tokenizer, adapter)`` for a checkpoint folder or hub id.

    dtype: "auto" (the checkpoint's ``torch_dtype``), "float32", "bfloat16" or "float16".
    The tokenizer is None if the folder has none. ValueError for an unknown family, missing or
    mis-shaped weights, or a tokenizer without the model's mask token."""
    from dllm_eval.harness.family import get_adapter

    model = load_model(pretrained, dtype=dtype, device=device)
    tokenizer = load_tokenizer(pretrained)
    path = _resolve(pretrained)
    gen = {}
    if (path / "generation_config.json").is_file():
        gen = json.loads((path / "generation_config.json").read_text())
    adapter = get_adapter(model, tokenizer, generation_config=gen)
    return model, tokenizer, adapter
