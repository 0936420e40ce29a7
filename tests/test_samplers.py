"""Each strategy on hand-built logits / attention statistics, and the sampler registry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import pytest
import torch
from dllm_eval.samplers.base import SAMPLERS, StepState, get_sampler
from dllm_eval.samplers.config import DecodeConfig


def make_state(logits, positions=None, attn=None, attn_offset=0, step=0, generators=None):
    logits = torch.as_tensor(logits, dtype=torch.float32)
    b, n, _ = logits.shape
    x0 = logits.argmax(-1)
    p = torch.softmax(logits.double(), -1)
    conf = p.gather(-1, x0[..., None])[..., 0]
    positions = torch.arange(n)[None].expand(b, -1) if positions is None else torch.as_tensor(positions)
    return StepState(
        logits=logits, x0=x0, confidence=conf, eligible=torch.ones(b, n, dtype=torch.bool),
        positions=positions, known=torch.zeros(b, n, dtype=torch.bool), step=step, block=0,
        block_step=step, attn=attn, attn_offset=attn_offset, generators=generators,
    )


LOGITS = [[[2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [5.0, 4.9, -3.0]]]


def test_confidence_is_probability_of_proposed_token():
    s = make_state(LOGITS)
    score = get_sampler("confidence").score(s)
    e = torch.tensor([2.0, 1.0, 0.0]).double().exp()
    assert score[0, 0].item() == pytest.approx((e[0] / e.sum()).item())
    assert score[0, 1].item() == pytest.approx(1 / 3)
    assert score.argmax().item() == 0


def test_margin_is_top1_minus_top2():
    s = make_state(LOGITS)
    score = get_sampler("margin").score(s)
    assert score[0, 1].item() == pytest.approx(0.0)
    p = torch.softmax(torch.tensor([5.0, 4.9, -3.0]).double(), -1)
    assert score[0, 2].item() == pytest.approx((p[0] - p[1]).item())
    assert score[0].argmax().item() == 0  # 0.665 - 0.245 beats 0.525 - 0.475


def test_entropy_is_negative_entropy():
    s = make_state(LOGITS)
    score = get_sampler("entropy").score(s)
    assert score[0, 1].item() == pytest.approx(-torch.log(torch.tensor(3.0)).item(), abs=1e-7)
    assert score[0].argmin().item() == 1  # the uniform position is the least certain


def test_sequential_prefers_leftmost():
    s = make_state(LOGITS, positions=[[7, 8, 9]])
    assert get_sampler("sequential").score(s).tolist() == [[-7.0, -8.0, -9.0]]


def test_random_replays_recorded_draws_and_rows_are_independent():
    from dllm_eval.samplers.random import RandomSampler

    draws = torch.rand(3, 2, 10)
    s = make_state(torch.zeros(2, 3, 4), positions=[[4, 5, 6], [4, 5, 6]], step=2)
    assert torch.equal(RandomSampler(draws=draws).score(s), draws[2][:, 4:7].double())
    gens = tuple(torch.Generator().manual_seed(7) for _ in range(2))
    s = make_state(torch.zeros(2, 3, 4), generators=gens)
    a = RandomSampler().score(s)
    assert torch.equal(a[0], a[1])  # same seed per row: rows never depend on batch-mates
    with pytest.raises(ValueError, match="recorded draws"):
        RandomSampler(draws=draws).score(make_state(torch.zeros(2, 3, 4), step=5))


@dataclass
class FakeStats:
    col_sum: torch.Tensor
    row_sum: torch.Tensor | None


def test_attn_sums_columns_over_layers_at_the_block_positions():
    col = torch.tensor([[[0.1, 0.2, 0.3, 0.9, 0.0, 0.4]], [[0.0, 0.0, 0.3, 0.0, 0.5, 0.0]]])
    s = make_state(torch.zeros(1, 3, 4), positions=[[3, 4, 5]], attn=FakeStats(col, None))
    score = get_sampler("attn", DecodeConfig(sampler="attn")).score(s)
    assert score.tolist() == [[pytest.approx(0.9), pytest.approx(0.5), pytest.approx(0.4)]]
    # statistics of a forward that started at column 2: position p is at column p - 2
    s = make_state(torch.zeros(1, 2, 4), positions=[[3, 4]], attn=FakeStats(col, None), attn_offset=2)
    assert get_sampler("attn").score(s).tolist() == [[pytest.approx(0.2), pytest.approx(0.6)]]


def test_agdo_uses_last_layer_valid_attention():
    row = torch.tensor([[[9.0, 9.0, 9.0, 9.0]], [[0.1, 0.7, 0.2, 0.4]]])
    s = make_state(torch.zeros(1, 2, 4), positions=[[1, 3]], attn=FakeStats(torch.zeros(2, 1, 4), row))
    assert get_sampler("agdo").score(s).tolist() == [[pytest.approx(0.7), pytest.approx(0.4)]]


def test_attention_requests():
    from dllm_eval.samplers.agdo import AgdoSampler
    from dllm_eval.samplers.attn import AttnSampler, query_rows

    masked = torch.tensor([[False, True, True, False], [True, False, False, True]])
    known = ~masked
    req = AgdoSampler().attention_request(masked, known)
    assert req.layers == (-1,) and torch.equal(req.key_mask, known)
    req = AttnSampler(layers=(0, 1), heads=(0,), query="masked").attention_request(masked, known)
    assert req.layers == (0, 1) and req.heads == (0,)
    assert req.query_index.tolist() == [[1, 2], [0, 3]]
    assert AttnSampler().attention_request(masked, known).query_index is None
    with pytest.raises(ValueError, match="same number"):
        query_rows(torch.tensor([[True, False], [True, True]]))


def test_registry_and_did_you_mean():
    for name in SAMPLERS:
        sampler = get_sampler(name, DecodeConfig(sampler=name))
        assert sampler.name == name
        doc = importlib.import_module(SAMPLERS[name].split(":")[0]).__doc__
        assert "arXiv" in doc, f"{name} must cite its paper"
    with pytest.raises(ValueError, match="Did you mean 'margin'"):
        get_sampler("margine")
    with pytest.raises(ValueError, match="accepted: random, confidence"):
        DecodeConfig(sampler="nope")
