"""SFT on the tiny fixture models (CPU, seconds): loss falls, resume == uninterrupted, NaN guard,
checkpoints in the official format that load back with ``dllm_eval.load``, LoRA merged on save."""

from __future__ import annotations

import json
from pathlib import Path

import dllm_eval
import pytest
import torch
from dllm_eval.trainers.config import SFTConfig
from dllm_eval.trainers.sft import NonFiniteLossError, train_sft
from safetensors import safe_open
from transformers import TrainerCallback

WORDS = ["apple", "berry", "cherry", "date"]


def write_toy_data(path: Path, n: int = 16) -> Path:
    with path.open("w") as f:
        for i in range(n):
            if i % 3 == 2:
                rec = {"messages": [{"role": "user", "content": f"Q{i % 4}:"},
                                    {"role": "assistant", "content": WORDS[i % 4]}]}
            else:
                rec = {"prompt": f"Q{i % 4}:", "response": WORDS[i % 4]}
            f.write(json.dumps(rec) + "\n")
    return path


def make_cfg(tmp_path: Path, model_dir: Path, name: str, **kw) -> SFTConfig:
    data = tmp_path / "toy.jsonl"
    if not data.exists():
        write_toy_data(data)
    base = dict(model=str(model_dir), data=str(data), output=str(tmp_path / name), max_steps=12,
                learning_rate=3e-3, batch_size=4, logging_steps=1, progress=False, block_size=2,
                device="cpu", seed=3)
    base.update(kw)
    return SFTConfig(**base)


def losses_of(result) -> list[float]:
    return [h["loss"] for h in result["log_history"] if "loss" in h]


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("masking", ["random", "blockwise", "agdo"])
def test_sft_loss_falls(tmp_path, tiny_models, masking):
    cfg = make_cfg(tmp_path, tiny_models["llada"], masking, masking=masking, max_steps=30,
                   agdo_rows_per_sample=2, agdo_tokens_per_step=2)
    res = train_sft(cfg)
    ls = losses_of(res)
    assert len(ls) == 30
    first, last = sum(ls[:5]) / 5, sum(ls[-5:]) / 5
    # measured: random ~ 15 -> 1, blockwise ~ 13 -> 1.5, agdo ~ 35 -> 2 (the tiny random model starts far off)
    assert last < 0.4 * first, (masking, ls)


def test_sft_dream_family_loss_falls(tmp_path, tiny_models):
    # Dream's logits are right-shifted; the adapter aligns them, the trainer has no family `if`
    res = train_sft(make_cfg(tmp_path, tiny_models["dream"], "dream", max_steps=25))
    ls = losses_of(res)
    assert sum(ls[-5:]) / 5 < 0.5 * sum(ls[:5]) / 5, ls


class _Kill(TrainerCallback):
    """Simulates a crash in the middle of step ``at`` (after the previous checkpoint was written)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.at:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("masking", ["random", "agdo"])
def test_kill_and_resume_equals_uninterrupted(tmp_path, tiny_models, masking):
    # 16 samples / batch 4 = 4 steps per epoch: the resume point (step 6) is mid-epoch 2
    kw = dict(masking=masking, max_steps=10, save_steps=3, save_total_limit=2, lr_scheduler="linear",
              warmup_steps=2)
    full = train_sft(make_cfg(tmp_path, tiny_models["llada"], "full", **kw))
    ref = params(full["trainer"].model)

    out = "killed"
    with pytest.raises(KeyboardInterrupt):
        train_sft(make_cfg(tmp_path, tiny_models["llada"], out, **kw), callbacks=[_Kill(8)])
    ckpts = sorted(p.name for p in (tmp_path / out).glob("checkpoint-*"))
    assert ckpts == ["checkpoint-3", "checkpoint-6"]  # rotation kept 2, nothing written for step 7-8
    resumed = train_sft(make_cfg(tmp_path, tiny_models["llada"], out, resume="auto", **kw))
    assert resumed["global_step"] == 10
    got = params(resumed["trainer"].model)
    diff = max(float((got[k] - ref[k]).abs().max()) for k in ref)
    assert diff <= 1e-6, diff
    # and it actually trained (not a no-op)
    start = params(dllm_eval.load(str(tiny_models["llada"]))[0])
    assert max(float((start[k] - ref[k]).abs().max()) for k in ref) > 1e-3


class _NaNForward:
    """Forward hook that turns the logits into NaN from the ``at``-th training forward on."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, module, args, output):
        self.calls += 1
        if self.calls >= self.at:
            output.logits = output.logits * float("nan")
        return output


def test_nan_loss_stops_with_clear_error_and_no_corrupt_checkpoint(tmp_path, tiny_models):
    model, tok, adapter = dllm_eval.load(str(tiny_models["llada"]))
    model.register_forward_hook(_NaNForward(5))
    cfg = make_cfg(tmp_path, tiny_models["llada"], "nan", max_steps=10, save_steps=2)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at step 5"):
        train_sft(cfg, model_and_tokenizer=(model, tok, adapter))
    out = tmp_path / "nan"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (out / "model.safetensors").exists()  # no final model
    m2, _, _ = dllm_eval.load(str(out / "checkpoint-4"))
    assert all(torch.isfinite(p).all() for p in m2.parameters())


class _PoisonParams(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 2:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("inf")


def test_non_finite_parameters_never_reach_a_checkpoint(tmp_path, tiny_models):
    cfg = make_cfg(tmp_path, tiny_models["llada"], "inf", max_steps=6, save_steps=2)
    with pytest.raises(NonFiniteLossError, match="checkpoint was NOT written"):
        train_sft(cfg, callbacks=[_PoisonParams()])
    assert not list((tmp_path / "inf").glob("checkpoint-*"))


def test_checkpoint_is_official_format_and_loads(tmp_path, tiny_models, fixtures_dir):
    res = train_sft(make_cfg(tmp_path, tiny_models["llada"], "fmt", max_steps=5, save_steps=5))
    out = Path(res["output"])
    with safe_open(str(out / "model.safetensors"), "pt") as a, \
            safe_open(str(fixtures_dir / "llada-tiny" / "model.safetensors"), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())  # official parameter names
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "llada" and cfg["mask_token_id"] == 1010
    assert (out / "generation_config.json").exists() and (out / "tokenizer.json").exists()
    model, tok, adapter = dllm_eval.load(str(out))
    trained = res["trainer"].model.eval()
    x = torch.tensor([tok("Q1:")["input_ids"] + [adapter.mask_id] * 5])
    with torch.no_grad():
        assert torch.allclose(model(x).logits, trained(x).logits, atol=1e-5)
    m_ck, _, _ = dllm_eval.load(str(out / "checkpoint-5"))
    assert all(torch.equal(p, q) for p, q in zip(m_ck.parameters(), model.parameters()))


def test_lora_is_merged_on_save(tmp_path, tiny_models, fixtures_dir):
    pytest.importorskip("peft")
    res = train_sft(make_cfg(tmp_path, tiny_models["llada"], "lora", max_steps=8, lora_r=4,
                             lora_alpha=8, learning_rate=1e-2))
    out = Path(res["output"])
    with safe_open(str(out / "model.safetensors"), "pt") as a, \
            safe_open(str(fixtures_dir / "llada-tiny" / "model.safetensors"), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())  # no lora_A / lora_B: merged
        q = "model.transformer.blocks.0.q_proj.weight"
        assert float((a.get_tensor(q) - b.get_tensor(q)).abs().max()) > 1e-4  # the update is in
        e = "model.transformer.wte.weight"
        assert torch.equal(a.get_tensor(e), b.get_tensor(e))  # frozen (not a LoRA target)
    dllm_eval.load(str(out))


def test_config_errors_name_the_option(tmp_path, tiny_models):
    with pytest.raises(ValueError, match="masking='bert'.*random, blockwise, agdo"):
        train_sft(make_cfg(tmp_path, tiny_models["llada"], "x", masking="bert"))
    with pytest.raises(ValueError, match="data=.*no such file"):
        train_sft(make_cfg(tmp_path, tiny_models["llada"], "x", data=str(tmp_path / "none.jsonl")))


_DDP_SCRIPT = """
import sys
from dllm_eval.trainers.config import SFTConfig
from dllm_eval.trainers.sft import train_sft
model, data, out, bs, masking = sys.argv[1:6]
train_sft(SFTConfig(model=model, data=data, output=out, masking=masking, max_steps=6, batch_size=int(bs),
                    learning_rate=3e-3, logging_steps=1, progress=False, device="cpu", seed=3,
                    eos_padding="max_length", max_length=16,
                    agdo_tokens_per_step=2))
"""


@pytest.mark.slow
@pytest.mark.parametrize("masking", ["random", "agdo"])
def test_two_processes_equal_one_process_with_same_global_batch(tmp_path, tiny_models, masking):
    """torchrun (the Trainer runs DDP through accelerate, gloo on CPU): 2 processes x batch 2 vs
    1 process x batch 4. Same samples, same masks (seeded per sample), same loss normalisation, so
    the parameters agree to float rounding (AdamW, 6 steps: measured max |diff| 2.6e-6; all-reduce
    sums in another order). ``eos_padding='max_length'`` makes each sample's EOS tail independent
    of its batch-mates (with 'batch' padding the answer length, and so the loss, depends on how the
    global batch is split: measured 1.5e-2 apart)."""
    import os
    import socket
    import subprocess
    import sys

    script = tmp_path / "ddp_train.py"
    script.write_text(_DDP_SCRIPT)
    data = write_toy_data(tmp_path / "toy.jsonl")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def run(nproc: int, bs: int, name: str) -> Path:
        out = tmp_path / name
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={free_port()}", str(script), str(tiny_models["llada"]), str(data), str(out),
               str(bs), masking]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return out

    one = dllm_eval.load(str(run(1, 4, "one")))[0].state_dict()
    two = dllm_eval.load(str(run(2, 2, "two")))[0].state_dict()
    start = dllm_eval.load(str(tiny_models["llada"]))[0].state_dict()
    assert max(float((one[k] - start[k]).abs().max()) for k in one) > 1e-3  # it trained
    diff = max(float((one[k] - two[k]).abs().max()) for k in one)
    assert diff < 2e-5, diff


@pytest.mark.parametrize("mode", ["batch", "max_length", "none"])
def test_collator_padding_modes(mode):
    from dllm_eval.trainers.sft import MaskingCollator

    cfg = SFTConfig(model="m", data="d", output="o", eos_padding=mode, max_length=6, mask_eps=0.999)
    col = MaskingCollator(cfg, mask_id=9, eos_id=7, pad_id=8)
    feats = [{"input_ids": [1, 2, 3, 7], "prompt_len": 2, "index": 0},
             {"input_ids": [1, 4, 7], "prompt_len": 2, "index": 1}]
    out = col(feats)
    L = 6 if mode == "max_length" else 4
    assert out["input_ids"].shape == (2, L)
    answer = {"batch": [2, 2], "max_length": [4, 4], "none": [2, 1]}[mode]
    # p ~ 1: every answer token masked with weight 1/(p*|answer|) ~ 1/|answer|
    assert (out["targets"] != -100).sum(1).tolist() == answer
    assert torch.allclose(out["weights"].sum(1), torch.ones(2), atol=2e-3)
    if mode == "none":
        assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
        assert out["input_ids"][1, 3] == 8  # pad id, not a mask, no loss
    else:
        assert "attention_mask" not in out
        assert out["targets"][1, 3] == 7  # EOS padding is trained (LLaDA)
