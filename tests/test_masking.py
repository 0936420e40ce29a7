"""Golden-value tests of the masking strategies and losses (trainers/masking.py, trainers/losses.py).

Expected values are computed by hand in the comments (hand-made attention matrix → greedy order,
influence normalisations, weights), or are properties the estimator must satisfy (unbiasedness of
the 1/p weighting over many draws).
"""

from __future__ import annotations

import math

import pytest
import torch
from dllm_eval.trainers import losses, masking

MASK = 99

# 5 positions: prompt 0,1; response 2,3,4. Rows = queries, columns = keys (each row sums to 1).
A = torch.tensor(
    [
        [0.5, 0.2, 0.1, 0.1, 0.1],
        [0.2, 0.4, 0.2, 0.1, 0.1],
        [0.1, 0.1, 0.2, 0.5, 0.1],
        [0.3, 0.3, 0.1, 0.2, 0.1],
        [0.2, 0.1, 0.6, 0.0, 0.1],
    ]
)
PROMPT = torch.tensor([0, 1])
RESP = torch.tensor([2, 3, 4])


def test_agdo_order_greedy_hand_matrix():
    # step 0: S = A[resp][:, U={0,1}].sum = [0.2, 0.6, 0.3] -> position 3
    # step 1: U={0,1,3}: S_2 = 0.2+0.5 = 0.7, S_4 = 0.3+0.0 = 0.3 -> position 2
    # step 2: position 4.   (A static, non-greedy ranking would give 3, 4, 2.)
    steps = masking.agdo_order(A, PROMPT, RESP, 1)
    assert steps.tolist() == [1, 0, 2]
    # n = 2: step 0 takes the two best of [0.2, 0.6, 0.3] -> {3, 4}; step 1 -> {2}
    assert masking.agdo_order(A, PROMPT, RESP, 2).tolist() == [1, 0, 0]
    # ties are broken by the earlier position
    flat = torch.full((4, 4), 0.25)
    assert masking.agdo_order(flat, torch.tensor([0]), torch.tensor([1, 2, 3]), 1).tolist() == [0, 1, 2]


def test_influence_normalisations():
    # I_k = column sums over all 5 query rows: col2 = 1.2, col3 = 0.9, col4 = 0.5
    q = torch.arange(5)
    none = masking.attention_influence(A, q, RESP, "none")
    assert torch.allclose(none, torch.tensor([1.2, 0.9, 0.5]), atol=1e-6)
    mean = masking.attention_influence(A, q, RESP, "mean")
    assert torch.allclose(mean, torch.tensor([1.2, 0.9, 0.5]) / (2.6 / 3), atol=1e-6)
    assert torch.allclose(masking.attention_influence(A, q, RESP, "max"), torch.tensor([1.0, 0.75, 0.5 / 1.2]), atol=1e-6)
    assert torch.allclose(masking.attention_influence(A, q, RESP, "sum"), torch.tensor([1.2, 0.9, 0.5]) / 2.6, atol=1e-6)
    with pytest.raises(ValueError, match="agdo_influence_norm='l2'"):
        masking.attention_influence(A, q, RESP, "l2")


def test_agdo_rows_and_weights():
    ids = torch.tensor([[10, 11, 12, 13, 14]])
    resp = torch.tensor([[False, False, True, True, True]])
    rows = masking.agdo_masking(ids, resp, A[None], MASK, tokens_per_step=1, gamma=0.5,
                                rows_per_sample=3, influence_norm="mean")
    # order: step0 = pos 3, step1 = pos 2, step2 = pos 4; T = 3, rows = 3, |answer| = 3 -> factor 1/3
    assert rows.num_samples == 1 and rows.sample_index.tolist() == [0, 0, 0]
    assert rows.input_ids.tolist() == [
        [10, 11, MASK, MASK, MASK],  # step 0: steps >= 0 masked
        [10, 11, MASK, 13, MASK],  # step 1: pos 2 and pos 4 masked
        [10, 11, 12, 13, MASK],  # step 2: pos 4 masked
    ]
    assert rows.targets.tolist() == [
        [-100, -100, -100, 13, -100],
        [-100, -100, 12, -100, -100],
        [-100, -100, -100, -100, 14],
    ]
    i_mean = [1.2 / (2.6 / 3), 0.9 / (2.6 / 3), 0.5 / (2.6 / 3)]
    expect = torch.zeros(3, 5)
    expect[0, 3] = (1 + 0.5 * i_mean[1]) / 3  # 0.50641
    expect[1, 2] = (1 + 0.5 * i_mean[0]) / 3  # 0.56410
    expect[2, 4] = (1 + 0.5 * i_mean[2]) / 3  # 0.42949
    assert torch.allclose(rows.weights, expect, atol=1e-6)
    assert abs(float(rows.weights[0, 3]) - 0.506410) < 1e-5

    # one row per sample: the weight carries T / rows = 3
    one = masking.agdo_masking(ids, resp, A[None], MASK, gamma=0.0, rows_per_sample=1,
                               generators=[torch.Generator().manual_seed(0)])
    assert one.input_ids.shape == (1, 5)
    assert math.isclose(float(one.weights.sum()), 3 / 3 * 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="agdo_rows_per_sample=0"):
        masking.agdo_masking(ids, resp, A[None], MASK, rows_per_sample=0)


def test_random_masking_weights_are_one_over_p():
    ids = torch.arange(20).view(2, 10)
    resp = torch.zeros(2, 10, dtype=torch.bool)
    resp[:, 4:] = True  # 6 answer tokens
    # eps close to 1 -> p in [0.999, 1]: every answer token masked, weight 1/(p*6) ~ 1/6
    rows = masking.random_masking(ids, resp, MASK, eps=0.999, generators=torch.Generator().manual_seed(1))
    assert (rows.input_ids[:, 4:] == MASK).all() and (rows.input_ids[:, :4] == ids[:, :4]).all()
    assert (rows.targets[:, 4:] == ids[:, 4:]).all() and (rows.targets[:, :4] == -100).all()
    w = rows.weights[:, 4:]
    assert ((w >= 1 / 6 - 1e-7) & (w <= 1 / (0.999 * 6) + 1e-7)).all()
    assert (rows.weights[:, :4] == 0).all()
    with pytest.raises(ValueError, match="mask_eps=1.5"):
        masking.random_masking(ids, resp, MASK, eps=1.5)


@pytest.mark.parametrize("strategy", ["random", "blockwise"])
def test_weighting_is_unbiased(strategy):
    # E[sum_k w_k c_k] over masks must equal the mean of c over the answer (per-token NLL scale)
    torch.manual_seed(0)
    n_ans, prompt = 7, 3
    c = torch.rand(n_ans) + 0.5
    ids = torch.arange(prompt + n_ans)[None].repeat(4000, 1)
    resp = torch.zeros_like(ids, dtype=torch.bool)
    resp[:, prompt:] = True
    gen = torch.Generator().manual_seed(3)
    if strategy == "random":
        rows = masking.random_masking(ids, resp, MASK, eps=0.05, generators=gen)
    else:
        rows = masking.blockwise_masking(ids, resp, MASK, block_size=3, eps=0.05, generators=gen)
    est = (rows.weights[:, prompt:] * c).sum(1).mean()
    assert abs(float(est) - float(c.mean())) < 0.05 * float(c.mean())


def test_blockwise_layout():
    ids = torch.arange(8)[None]
    resp = torch.tensor([[False] * 3 + [True] * 5])  # answer positions 3..7, blocks {3,4} {5,6} {7}
    seen = set()
    for s in range(40):
        rows = masking.blockwise_masking(ids, resp, MASK, block_size=2, eps=0.999,
                                         generators=torch.Generator().manual_seed(s))
        x = rows.input_ids[0].tolist()
        tgt = rows.targets[0]
        first = min(i for i in range(8) if x[i] == MASK)
        assert first in (3, 5, 7)
        assert x[:first] == list(range(first)) and all(v == MASK for v in x[first:])
        active = {3: [3, 4], 5: [5, 6], 7: [7]}[first]
        assert (tgt != -100).nonzero().flatten().tolist() == active
        w = rows.weights[0, active]
        # 3 blocks, p in [0.999, 1], |answer| = 5 -> weight 3 / (p * 5)
        assert ((w >= 0.6 - 1e-6) & (w <= 0.6 / 0.999 + 1e-6)).all()
        seen.add(first)
    assert seen == {3, 5, 7}
    with pytest.raises(ValueError, match="block_size=0"):
        masking.blockwise_masking(ids, resp, MASK, block_size=0)


def test_sample_generators_depend_on_index_not_batch():
    a = masking.sample_generators(5, 0, [3, 4])
    b = masking.sample_generators(5, 0, [4])
    assert torch.equal(torch.rand(3, generator=a[1]), torch.rand(3, generator=b[0]))
    c = masking.sample_generators(5, 1, [4])
    assert not torch.equal(torch.rand(3, generator=masking.sample_generators(5, 0, [4])[0]),
                           torch.rand(3, generator=c[0]))


def test_weighted_ce_hand_value():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))
    targets = torch.tensor([[0, -100]])
    w = torch.tensor([[2.0, 5.0]])
    # only position 0 counts: 2 * -log(0.5) / 1 sample
    assert math.isclose(float(losses.weighted_masked_ce(logits, targets, w, 1)), 2 * math.log(2), rel_tol=1e-6)
    targets = torch.tensor([[1, 2]])
    v = (2 * -math.log(0.25) + 5 * -math.log(0.8)) / 2
    assert math.isclose(float(losses.weighted_masked_ce(logits, targets, w, 2)), v, rel_tol=1e-6)


def test_group_advantages_and_shaping():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0])
    adv = losses.group_advantages(r, 3, eps=0.0)
    # group 1: mean 1/3, std (unbiased) = sqrt(1/3) ; group 2: mean 4/3, std sqrt(4/3)
    s1, s2 = math.sqrt(1 / 3), math.sqrt(4 / 3)
    exp = [2 / 3 / s1, -1 / 3 / s1, -1 / 3 / s1, -4 / 3 / s2, 2 / 3 / s2, 2 / 3 / s2]
    assert torch.allclose(adv, torch.tensor(exp), atol=1e-6)
    shaped = losses.shape_advantages(torch.tensor([1.0, -2.0, 0.0]), torch.tensor([[0.5, 2.0]] * 3), 0.1)
    assert torch.allclose(shaped, torch.tensor([[1.05, 1.2], [-2.05, -2.2], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="group_size=4"):
        losses.group_advantages(r, 4)


def test_clipped_policy_loss_hand_values():
    logp = torch.log(torch.tensor([[0.6, 0.5]]))
    old = torch.log(torch.tensor([[0.4, 0.5]]))
    mask = torch.tensor([[1.0, 1.0]])
    # token 0: ratio 1.5, A = 1 -> min(1.5, 1.2) = 1.2 ; token 1: ratio 1 -> 1 ; loss = -(1.2+1)/2
    loss, stats = losses.clipped_policy_loss(logp, old, torch.tensor([1.0]), mask, clip_eps=0.2)
    assert math.isclose(float(loss), -1.1, rel_tol=1e-6)
    assert math.isclose(stats["clip_frac"], 0.5)
    # negative advantage: min(-1.5, -1.2) = -1.5 -> unclipped
    loss, _ = losses.clipped_policy_loss(logp, old, torch.tensor([-1.0]), mask, clip_eps=0.2)
    assert math.isclose(float(loss), (1.5 + 1.0) / 2, rel_tol=1e-6)
    # k3 KL with ref = old: exp(d) - d - 1, d = log(0.4/0.6)
    d = math.log(0.4 / 0.6)
    loss_kl, stats = losses.clipped_policy_loss(logp, old, torch.tensor([0.0]), mask, ref_logp=old, beta=0.5)
    assert math.isclose(float(loss_kl), 0.5 * (math.exp(d) - d - 1) / 2, rel_tol=1e-5)


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_head_mean_attention_matches_reference_probabilities(tiny_models, fixtures_dir, family):
    # AGDO's A = head mean of the reference code's recorded attention probabilities (golden)
    import dllm_eval
    from dllm_eval.trainers.attention import head_mean_attention
    from safetensors.torch import load_file

    gold = load_file(str(fixtures_dir / f"{family}-tiny" / "golden_forward.safetensors"))
    model, _, _ = dllm_eval.load(str(tiny_models[family]))
    ids = gold["input_ids"]
    for layer in (-1, 0):
        got = head_mean_attention(model.eval(), ids, layer=layer, chunk_rows=16)
        want = gold["attn_probs"][layer].mean(1)  # [layers, B, H, L, L] -> [B, L, L]
        assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())
