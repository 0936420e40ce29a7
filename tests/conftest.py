"""Shared pytest fixtures: where ../shared is, and tiny fixture checkpoints with a tokenizer."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_shared() -> Path | None:
    env = os.environ.get("DLLM_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared", Path("/work/shared")]
    for c in candidates:
        if (c / "fixtures").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = find_shared()
    if path is None:
        pytest.skip("../shared not found (set DLLM_SHARED)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures"


def copy_fixture_with_tokenizer(src: Path, dst: Path) -> Path:
    """Copy a tiny fixture checkpoint and add a byte-level tokenizer with its special ids."""
    from dllm_eval.harness.tokenization import make_byte_tokenizer

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("golden_*"))
    cfg = json.loads((dst / "config.json").read_text())
    gen = json.loads((dst / "generation_config.json").read_text())
    eos = cfg.get("eos_token_id", gen.get("eos_token_id"))
    eos = eos[0] if isinstance(eos, list) else eos
    bos = gen.get("bos_token_id", cfg.get("bos_token_id"))
    pad = cfg.get("pad_token_id", gen.get("pad_token_id"))
    tok = make_byte_tokenizer(
        mask_token_id=cfg["mask_token_id"], eos_token_id=eos, bos_token_id=bos, pad_token_id=pad
    )
    tok.save_pretrained(dst)
    return dst


@pytest.fixture(scope="session")
def tiny_models(fixtures_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """{'llada': dir, 'dream': dir, 'sdar': dir}: fixture checkpoints plus a tokenizer."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        fam: copy_fixture_with_tokenizer(fixtures_dir / f"{fam}-tiny", root / f"{fam}-tiny")
        for fam in ("llada", "dream", "sdar")
    }
