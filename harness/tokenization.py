"""Small byte-level tokenizers for the tiny fixture and demo models.

The real checkpoints ship their own tokenizers (LLaDA: tokenizer.json; Dream and SDAR: Qwen2 BPE
vocab.json + merges.txt). The tiny random-weight fixtures and the demo model have vocabularies of
about a thousand ids and no tokenizer, so tests and the demo use a byte-level tokenizer: every
byte is one token (ids 0-255), the special tokens sit at the ids the model config names. It
round-trips any UTF-8 text and is saved/loaded as a normal ``PreTrainedTokenizerFast``.
"""

from __future__ import annotations

from typing import Any


def make_byte_tokenizer(
    *,
    mask_token_id: int,
    eos_token_id: int,
    bos_token_id: int | None = None,
    pad_token_id: int | None = None,
    extra_special: dict[str, int] | None = None,
    chat_template: str | None = None,
    model_max_length: int = 4096,
) -> Any:
    """Return a ``PreTrainedTokenizerFast`` with byte tokens 0-255 and the given special ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel's printable stand-ins for the 256 bytes, in byte order
    table = _bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    assert set(vocab) == set(byte_alphabet)
    specials = {"<|mdm_mask|>": mask_token_id, "<|endoftext|>": eos_token_id}
    if bos_token_id is not None and bos_token_id != eos_token_id:
        specials["<|startoftext|>"] = bos_token_id
    if pad_token_id is not None and pad_token_id not in specials.values():
        specials["<|pad|>"] = pad_token_id
    specials.update(extra_special or {})
    for name, idx in specials.items():
        if idx < 256:
            raise ValueError(f"special token {name!r}: id {idx} collides with the byte ids 0-255")
        vocab[name] = idx
    # fill the gaps so the saved vocabulary has no holes (these ids are never produced)
    for idx in range(256, max(vocab.values())):
        if idx not in specials.values():
            vocab[f"<|reserved_{idx}|>"] = idx
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    id_to_name = {v: k for k, v in specials.items()}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        mask_token="<|mdm_mask|>",
        eos_token="<|endoftext|>",
        bos_token=id_to_name.get(bos_token_id) if bos_token_id is not None else None,
        pad_token=id_to_name.get(pad_token_id) if pad_token_id is not None else "<|endoftext|>",
        additional_special_tokens=[n for n in specials if n not in ("<|mdm_mask|>", "<|endoftext|>")],
        model_max_length=model_max_length,
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-character table (the one ByteLevel uses)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))
