"""Commit rules on hand-built scores: which positions are chosen, ineligible never chosen, at
least one token in threshold modes; Dream's float32 schedule against the golden traces."""

from __future__ import annotations

import json
import math

import pytest
import torch
from dllm_eval.samplers import commit as C
from dllm_eval.samplers.base import StepState
from dllm_eval.samplers.config import DecodeConfig


def state(conf, eligible=None, logits=None, scores_shape=None):
    conf = torch.tensor(conf, dtype=torch.float64)
    b, n = conf.shape
    eligible = torch.ones(b, n, dtype=torch.bool) if eligible is None else torch.tensor(eligible)
    logits = torch.zeros(b, n, 4) if logits is None else logits
    return StepState(
        logits=logits, x0=torch.zeros(b, n, dtype=torch.long), confidence=conf, eligible=eligible,
        positions=torch.arange(n)[None].expand(b, -1), known=torch.zeros(b, n, dtype=torch.bool),
        step=0, block=0, block_step=0,
    )


def chosen(mask):
    return [torch.nonzero(r).flatten().tolist() for r in mask]


def test_even_split_remainder_to_first_steps():
    assert C.even_split(torch.tensor([7, 8, 2]), 3).tolist() == [[3, 2, 2], [3, 3, 2], [1, 1, 0]]


def test_linspace_count_reproduces_dream_golden_schedule(fixtures_dir):
    cases = json.loads((fixtures_dir / "dream-tiny" / "golden_generate.json").read_text())
    for case in cases:
        steps = case["settings"]["args"]["steps"]
        masked = torch.tensor([case["settings"]["args"]["max_new_tokens"]] * 2)
        for i, t in enumerate(case["trace"]):
            k = C.linspace_count(masked, i, steps, 1e-3)
            assert k.tolist() == [t["n_transfer"]] * 2, (case["id"], i)
            masked = masked - k
        assert masked.tolist() == [0, 0]


def test_linspace_step0_quirk_commits_zero():
    # 32 masks, 32 steps: 32 * (1 - t1/t0) = 0.999 in float32 -> 0 tokens at step 0
    assert C.linspace_count(torch.tensor([32]), 0, 32, 1e-3).tolist() == [0]


def test_top_k_never_picks_ineligible_even_when_k_is_too_large():
    scores = torch.tensor([[0.9, 0.1, 0.8, float("-inf")]], dtype=torch.float64)
    eligible = torch.tensor([[False, True, True, True]])
    out = C.top_k_mask(scores, eligible, torch.tensor([5]))
    assert chosen(out) == [[1, 2, 3]]  # the eligible -inf still ranks above the ineligible 0.9
    out = C.top_k_mask(scores, eligible, torch.tensor([1]))
    assert chosen(out) == [[2]]


def test_threshold_rule_fast_dllm_and_sdar():
    s = state([[0.95, 0.50, 0.92, 0.10]], eligible=[[False, True, True, True]])
    one = torch.tensor([1])
    # 0.95 is ineligible; 0.92 >= 0.9 is committed
    assert chosen(C.threshold_mask(s.confidence, s.confidence, s.eligible, 0.9, one)) == [[2]]
    # nothing above tau: the best eligible one anyway (Fast-dLLM "at least one")
    assert chosen(C.threshold_mask(s.confidence, s.confidence, s.eligible, 0.99, one)) == [[2]]
    # SDAR: fewer than k above tau -> top k
    assert chosen(C.threshold_mask(s.confidence, s.confidence, s.eligible, 0.9, torch.tensor([2]))) == [[1, 2]]
    # SDAR: at least k above tau -> all of those
    assert chosen(C.threshold_mask(s.confidence, s.confidence, s.eligible, 0.3, torch.tensor([1]))) == [[1, 2]]


@pytest.mark.parametrize(
    "conf, expected",
    [
        ([0.9, 0.3, 0.2, 0.1], 1),  # 0.3 < 1 - 1/3: stop after the first
        ([0.9, 0.8, 0.3], 3),  # fails at the last candidate: the reference still takes all
        ([0.99, 0.98, 0.97, 0.1], 4),  # same quirk
        ([0.99, 0.98, 0.5, 0.4, 0.1], 2),  # 0.5 < 1 - 1/4
        ([0.2], 1),
    ],
)
def test_factor_rule_matches_fast_dllm_counts(conf, expected):
    s = state([conf])
    out = C.factor_mask(s.confidence, s.confidence, s.eligible, 1.0)
    assert chosen(out) == [list(range(expected))]


def test_entropy_bound_prefix():
    # position j is uniform over 1, 2, 4 tokens: entropies 0, ln 2, ln 4
    logits = torch.full((1, 3, 4), -1e9)
    logits[0, 0, 0] = 0
    logits[0, 1, :2] = 0
    logits[0, 2, :] = 0
    s = state([[0.9, 0.5, 0.25]], logits=logits)
    scores = torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64)
    # prefix of 3: ln2 + ln4 + 0 - ln4 = 0.693 > 0.5
    assert chosen(C.entropy_bound_mask(scores, s, s.eligible, 0.5)) == [[0, 1]]
    assert chosen(C.entropy_bound_mask(scores, s, s.eligible, 0.7)) == [[0, 1, 2]]
    # reversed order: the first (ln 4) alone has excess 0, then ln4 + ln2 - ln4 = 0.693
    assert chosen(C.entropy_bound_mask(-scores, s, s.eligible, 0.5)) == [[2]]
    assert math.isclose(math.log(2), 0.6931, rel_tol=1e-3)


def test_dominance_rule():
    s = state([[0.90, 0.20, 0.95, 0.99]])
    scores = torch.tensor([[5.0, 4.0, 3.0, 6.0]], dtype=torch.float64)
    one = torch.tensor([1])
    # the only non-confident token scores 4: confident tokens scored above it are 0 and 3
    assert chosen(C.dominance_mask(scores, s.confidence, s.eligible, 0.8, one)) == [[0, 3]]
    # the top attention token is not confident: nothing dominates, commit the top one
    scores = torch.tensor([[1.0, 9.0, 3.0, 2.0]], dtype=torch.float64)
    assert chosen(C.dominance_mask(scores, s.confidence, s.eligible, 0.8, one)) == [[1]]


def test_alg_temp_samples_k_eligible_positions():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3]], dtype=torch.float64)
    eligible = torch.tensor([[True, False, True, True, True]])
    gens = (torch.Generator().manual_seed(0),)
    for _ in range(20):
        out = C.sample_k_mask(scores, eligible, torch.tensor([2]), 0.5, gens)
        picked = chosen(out)[0]
        assert len(picked) == 2 and 1 not in picked
    # a small temperature is (almost surely) the top-k
    out = C.sample_k_mask(scores, eligible, torch.tensor([2]), 0.01, gens)
    assert chosen(out) == [[2, 3]]


def test_select_threshold_rule_commits_at_least_one_per_row():
    cfg = DecodeConfig(gen_length=4, steps=4, threshold=0.99)
    s = state([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]],
              eligible=[[True, True, False, False], [False, False, False, True]])
    out = C.select(cfg, s.confidence, s, torch.tensor([0, 0]))
    assert chosen(out) == [[1], [3]]


def test_schedule_count_never_exceeds_masks():
    cfg = DecodeConfig(gen_length=8, steps=2, schedule="block_even", block_length=8)
    plan = C.plan_block(cfg, torch.tensor([3]), 8, 2)
    assert plan.tolist() == [[4, 4]]
    assert C.schedule_count(cfg, 0, 2, plan, torch.tensor([3])).tolist() == [3]
