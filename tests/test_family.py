"""Family adapters, tokenizers and ``dllm_eval.load``.

Truth: the fixture configs/generation configs (ids given in fixtures/README.md), the released
tokenizer files in ../shared/models (mask ids 151666 for Dream and 151669 for SDAR, as the issue
states), the released chat templates (tokenizer_config.json / chat_template.jinja) for the
adapters' fallback templates, and the golden logits for Dream's shift.
"""

from __future__ import annotations

import json
from pathlib import Path

import dllm_eval
import pytest
import torch
from dllm_eval.harness.family import FAMILY_SPECS, get_adapter
from dllm_eval.harness.loading import load_config, load_tokenizer
from dllm_eval.harness.tokenization import make_byte_tokenizer
from safetensors.torch import load_file

MESSAGES = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture(scope="module")
def qwen_tokenizers(shared_dir: Path) -> dict[str, object]:
    return {
        name: load_tokenizer(shared_dir / "models" / name) for name in ("Dream-v0-Instruct-7B", "SDAR-4B-Chat")
    }


def test_load_tiny_models(tiny_models: dict[str, Path]) -> None:
    expected = {
        # name: (mask, eos_ids, eot, pad, bos, shift, block)
        "llada": (1010, (1001,), None, 1001, 1000, False, None),
        "dream": (1010, (1000,), None, 1000, 1000, True, None),
        "sdar": (1010, (1000, 1002), 1002, 1000, 1000, False, 4),
    }
    for fam, folder in tiny_models.items():
        model, tok, adapter = dllm_eval.load(folder, dtype="float32")
        assert type(model).__name__ == {"llada": "LLaDAModelLM", "dream": "DreamModel", "sdar": "SDARForCausalLM"}[fam]
        assert not model.training and model.dtype == torch.float32
        assert tok is not None and tok.mask_token_id == 1010
        got = (adapter.mask_id, adapter.eos_ids, adapter.eot_id, adapter.pad_id, adapter.bos_id,
               adapter.shift_logits, adapter.block_size)
        assert got == expected[fam], fam
        assert adapter.name == fam and adapter.supports_attention
        assert adapter.block_causal == (fam == "sdar")


def test_align_logits_and_forward(tiny_models: dict[str, Path], fixtures_dir: Path) -> None:
    raw = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    for fam, folder in tiny_models.items():
        model, _, adapter = dllm_eval.load(folder)
        aligned = adapter.align_logits(raw)
        if fam == "dream":  # position i scored by raw i-1, position 0 by raw 0
            assert torch.equal(aligned[:, 0], raw[:, 0])
            assert torch.equal(aligned[:, 1:], raw[:, :-1])
        else:
            assert aligned is raw
        g = load_file(str(fixtures_dir / f"{fam}-tiny" / "golden_forward.safetensors"))
        with torch.no_grad():
            out = adapter.forward(model, g["input_ids"], attention_mask=g.get("attention_mask"))
        ref = g["logits"]
        if fam == "dream":
            ref = torch.cat([ref[:, :1], ref[:, :-1]], dim=1)
        assert (out.logits - ref).abs().max() <= 1e-4


def test_qwen_tokenizers_without_remote_code(qwen_tokenizers, shared_dir: Path) -> None:
    dream, sdar = qwen_tokenizers["Dream-v0-Instruct-7B"], qwen_tokenizers["SDAR-4B-Chat"]
    assert dream.mask_token_id == 151666 and dream.convert_ids_to_tokens(151666) == "<|mask|>"
    assert sdar.mask_token_id == 151669 and sdar.convert_ids_to_tokens(151669) == "<|MASK|>"
    # a round trip through the BPE (vocab.json + merges.txt)
    text = "Diffusion models decode in parallel: 2+2=4."
    for tok in (dream, sdar):
        assert tok.decode(tok(text)["input_ids"]) == text
    a_dream = get_adapter(load_config(shared_dir / "models" / "Dream-v0-Instruct-7B"), dream)
    assert (a_dream.mask_id, a_dream.eos_ids, a_dream.eot_id, a_dream.pad_id) == (151666, (151643, 151645), 151645, 151643)
    a_sdar = get_adapter(load_config(shared_dir / "models" / "SDAR-4B-Chat"), sdar)
    assert (a_sdar.mask_id, a_sdar.eos_ids, a_sdar.eot_id, a_sdar.block_size) == (151669, (151643, 151645), 151645, 4)
    assert a_dream.shift_logits and not a_sdar.shift_logits
    # chat templates come from the model folder
    prompt = a_dream.apply_chat_template(dream, MESSAGES)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert a_sdar.apply_chat_template(sdar, MESSAGES) == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_real_llada_config_ids(shared_dir: Path) -> None:
    folder = shared_dir / "models" / "LLaDA-8B-Instruct"
    assert load_tokenizer(folder) is None  # only tokenizer_config.json is stored here
    adapter = get_adapter(load_config(folder))
    # eot <|eot_id|> 126348 is known for the official vocabulary; bos from generation_config.json
    assert (adapter.mask_id, adapter.eos_ids, adapter.eot_id, adapter.pad_id, adapter.bos_id) == (
        126336, (126081, 126348), 126348, 126081, 126080,
    )
    assert not adapter.shift_logits and adapter.block_size is None


@pytest.mark.parametrize("fam", ["llada", "dream", "sdar"])
def test_fallback_chat_templates_match_official(shared_dir: Path, fam: str) -> None:
    """The adapters' own templates (used when a tokenizer has none) render plain conversations
    exactly like the released templates."""
    folder = {"llada": "LLaDA-8B-Instruct", "dream": "Dream-v0-Instruct-7B", "sdar": "SDAR-4B-Chat"}[fam]
    path = shared_dir / "models" / folder
    official = json.loads((path / "tokenizer_config.json").read_text()).get("chat_template")
    if (path / "chat_template.jinja").is_file():
        official = (path / "chat_template.jinja").read_text()
    spec = FAMILY_SPECS[fam]
    tok = make_byte_tokenizer(mask_token_id=1010, eos_token_id=1001, bos_token_id=1000)
    conversations = [
        MESSAGES,
        [{"role": "system", "content": "Be brief."}, *MESSAGES],
        [*MESSAGES, {"role": "assistant", "content": "4"}, {"role": "user", "content": " And 3+3? "}],
    ]
    for messages in conversations:
        for gen_prompt in (True, False):
            if fam == "llada" and not gen_prompt:
                continue  # LLaDA's released template always appends the assistant header
            mine = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt, chat_template=spec.chat_template)
            ref = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt, chat_template=official)
            assert mine == ref


def test_adapter_errors(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"model_type='gpt2'.*accepted: 'llada', 'Dream', 'sdar'"):
        get_adapter({"model_type": "gpt2"})
    config = load_config(tiny_models["dream"])
    wrong_mask = make_byte_tokenizer(mask_token_id=1011, eos_token_id=1000)
    with pytest.raises(ValueError, match="no mask token with id 1010"):
        get_adapter(config, wrong_mask)
    short = make_byte_tokenizer(mask_token_id=300, eos_token_id=301)
    with pytest.raises(ValueError, match="no mask token with id 1010"):
        get_adapter(config, short)
    # config dicts work too (model_type is matched case-insensitively)
    adapter = get_adapter({"model_type": "dream", "mask_token_id": 7, "eos_token_id": 3, "vocab_size": 10})
    assert (adapter.name, adapter.mask_id, adapter.eos_ids, adapter.pad_id) == ("dream", 7, (3,), 3)
