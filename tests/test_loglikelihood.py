"""Monte Carlo ELBO loglikelihood of the ``dllm`` lm-eval model.

The truth is an exact enumeration on the tiny fixture models: for a continuation of length L
the ELBO is ``sum_l 1/L * mean_{|M|=l} (L/l) * sum_{i in M} log p(y_i | x, y_{not M})``, computed
here from the RAW model logits with the family's alignment done by hand (Dream: position i is
scored by raw logits i-1), independently of the adapter and of the estimator's code.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from dllm_eval.harness.lm import DLLM

PREFIX_TEXT, TARGET_TEXT = "Q: x\nA:", " ok"


@pytest.fixture(scope="module")
def lms(tiny_models):
    return {
        fam: DLLM(pretrained=str(tiny_models[fam]), dtype="float32", device="cpu", mc_num=12, mc_batch_size=512)
        for fam in ("llada", "dream", "sdar")
    }


def _raw_logprobs(lm: DLLM, x: torch.Tensor, shift: bool, n_prefix: int, cfg: float = 0.0) -> torch.Tensor:
    """log-probs [B, n, V] scoring position i, from the raw model output (alignment by hand)."""
    with torch.no_grad():
        raw = lm.model(x).logits.float()
        if cfg > 0:
            un = x.clone()
            un[:, :n_prefix] = lm.adapter.mask_id
            raw_un = lm.model(un).logits.float()
            raw = raw_un + (cfg + 1) * (raw - raw_un)
    if shift:  # raw[:, i] predicts token i + 1
        raw = torch.cat([raw[:, :1], raw[:, :-1]], dim=1)
    return torch.log_softmax(raw, dim=-1)


def exact_elbo(lm: DLLM, prefix: list[int], target: list[int], shift: bool, cfg: float = 0.0,
               block_size: int | None = None):
    """(ELBO, per-draw variance) by enumerating every mask set of the continuation; with a
    ``block_size`` (block-causal SDAR) the sum of each block's ELBO, other blocks clean."""
    length, n_prefix = len(target), len(prefix)
    groups: dict[int, list[int]] = {}
    for i in range(length):
        groups.setdefault((n_prefix + i) // block_size if block_size else 0, []).append(i)
    mean = var = 0.0
    for unit in groups.values():
        size = len(unit)
        values_by_count = {}
        for count in range(1, size + 1):
            vals = []
            for subset in itertools.combinations(unit, count):
                x = torch.tensor([prefix + target])
                for i in subset:
                    x[0, n_prefix + i] = lm.adapter.mask_id
                logp = _raw_logprobs(lm, x, shift, n_prefix, cfg)[0]
                s = sum(float(logp[n_prefix + i, target[i]]) for i in subset)
                vals.append(size / count * s)
            values_by_count[count] = vals
        m = sum(sum(v) / len(v) for v in values_by_count.values()) / size
        second = sum(sum(x * x for x in v) / len(v) for v in values_by_count.values()) / size
        mean += m
        var += second - m * m
    return mean, var


def _tokens(lm: DLLM):
    prefix, target = lm._encode_pair(PREFIX_TEXT, TARGET_TEXT)
    assert len(target) == 3
    return prefix, target


def _with(lm: DLLM, **changes) -> DLLM:
    """The same loaded model with other loglikelihood options (no reload)."""
    clone = object.__new__(DLLM)
    clone.__dict__.update(lm.__dict__)
    decode = dict(lm.args.decode)
    if "seed" in changes:
        decode["seed"] = changes.pop("seed")
    clone.args = dataclasses.replace(lm.args, decode=decode, **changes)
    clone._stats = dict(lm._stats)
    return clone


@pytest.mark.parametrize("family", ["llada", "dream", "sdar"])
def test_estimate_converges_to_exact_enumeration(lms, family):
    lm = lms[family]
    prefix, target = _tokens(lm)
    block = lm.model.config.block_size if family == "sdar" else None
    if block:  # the continuation straddles two attention blocks
        assert (len(prefix)) // block != (len(prefix) + len(target) - 1) // block
    exact, var = exact_elbo(lm, prefix, target, shift=(family == "dream"), block_size=block)
    assert var > 0
    errors = {}
    for n in (3, 384):
        errs = [abs(_with(lm, seed=s).elbo(prefix, target, mc_num=n) - exact) for s in range(4)]
        errors[n] = sum(errs) / len(errs)
        # stratified over l: never worse than i.i.d. draws; 4 sigma of the i.i.d. estimator
        assert max(errs) <= 4 * math.sqrt(var / n) + 1e-4, (n, errs, var)
    assert errors[384] < 0.35 * errors[3]


def test_guided_estimate_converges_to_exact_guided_elbo(lms):
    lm = _with(lms["llada"], ll_cfg_scale=1.0)
    prefix, target = _tokens(lm)
    exact, var = exact_elbo(lm, prefix, target, shift=False, cfg=1.0)
    plain, _ = exact_elbo(lm, prefix, target, shift=False)
    assert abs(exact - plain) > 1e-3  # guidance changes the value
    est = lm.elbo(prefix, target, mc_num=768)
    assert abs(est - exact) <= 4 * math.sqrt(var / 768) + 1e-4


def test_deterministic_for_a_seed_and_independent_of_chunking(lms):
    lm = lms["llada"]
    prefix, target = _tokens(lm)
    a = lm.elbo(prefix, target, mc_num=12)
    assert lm.elbo(prefix, target, mc_num=12) == a
    assert _with(lm, mc_batch_size=5).elbo(prefix, target, mc_num=12) == pytest.approx(a, abs=1e-5)
    assert _with(lm, seed=99).elbo(prefix, target, mc_num=12) != a


def test_prompt_never_masked_and_mask_counts_are_stratified(lms, monkeypatch):
    lm = lms["llada"]
    prefix, target = _tokens(lm)
    seen = []
    original = lm.adapter.forward

    def spy(model, x, *args, **kwargs):
        seen.append(x.clone())
        return original(model, x, *args, **kwargs)

    monkeypatch.setattr(type(lm.adapter), "forward", lambda self, model, x, *a, **k: spy(model, x, *a, **k))
    lm.elbo(prefix, target, mc_num=12)
    x = torch.cat(seen)
    assert x.shape[0] == 12
    mask_id = lm.adapter.mask_id
    assert not (x[:, : len(prefix)] == mask_id).any()
    assert torch.equal(x[:, : len(prefix)], torch.tensor(prefix).expand(12, -1))
    counts = sorted((x[:, len(prefix):] == mask_id).sum(dim=1).tolist())
    assert counts == [1] * 4 + [2] * 4 + [3] * 4  # 12 draws = 4 per mask count
    unmasked = x[:, len(prefix):] != mask_id
    assert torch.equal(x[:, len(prefix):][unmasked], torch.tensor(target).expand(12, -1)[unmasked])


def _greedy_by_hand(lm: DLLM, prefix: list[int], length: int, shift: bool, block_size: int | None) -> list[int]:
    n_prefix = len(prefix)
    x = torch.tensor([prefix + [lm.adapter.mask_id] * length])
    for _ in range(length):
        probs = _raw_logprobs(lm, x, shift, n_prefix)[0, n_prefix:].exp()
        conf, tok = probs.max(dim=-1)
        masked = (x[0, n_prefix:] == lm.adapter.mask_id).tolist()
        conf[[not m for m in masked]] = -1
        if block_size:  # block by block: only the first block with masks
            first = min((n_prefix + i) // block_size for i, m in enumerate(masked) if m)
            for i in range(length):
                if (n_prefix + i) // block_size != first:
                    conf[i] = -1
        pos = int(conf.argmax())
        x[0, len(prefix) + pos] = tok[pos]
    return x[0, len(prefix):].tolist()


@pytest.mark.parametrize("family", ["llada", "dream", "sdar"])
def test_is_greedy(lms, family):
    lm = lms[family]
    prefix, _ = _tokens(lm)
    block = lm.model.config.block_size if family == "sdar" else None
    greedy = _greedy_by_hand(lm, prefix, 3, shift=(family == "dream"), block_size=block)
    assert lm.greedy_matches(prefix, greedy)
    other = list(greedy)
    other[1] = (other[1] + 1) % 256
    assert not lm.greedy_matches(prefix, other)


def test_lm_eval_entry_points(lms):
    from lm_eval.api.instance import Instance

    lm = lms["llada"]
    prefix, target = _tokens(lm)
    reqs = [Instance("loglikelihood", {}, (PREFIX_TEXT, TARGET_TEXT), 0),
            Instance("loglikelihood", {}, ("", "abc"), 1)]
    (ll, greedy), (ll_empty, _) = lm.loglikelihood(reqs, disable_tqdm=True)
    assert ll == lm.elbo(prefix, target) and greedy == lm.greedy_matches(prefix, target)
    assert ll_empty == lm.elbo([lm.prefix_token_id], lm.tok_encode("abc", add_special_tokens=False))
    # rolling: one window for a short text; disjoint windows summed for a long one
    (rolling,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("abcdef",), 0)], disable_tqdm=True)
    assert rolling == lm.elbo([lm.prefix_token_id], lm.tok_encode("abcdef", add_special_tokens=False))
    short = _with(lm, max_length=4)
    short.max_length = 4
    tokens = lm.tok_encode("abcdefghij", add_special_tokens=False)
    (total,) = short.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("abcdefghij",), 0)],
                                           disable_tqdm=True)
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    windows = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, lm.prefix_token_id, 4, 1)]
    assert len(windows) == 3 and sum(len(p) for _, p in windows) == len(tokens)
    expected = sum(short.elbo(ctx, pred) for ctx, pred in windows)
    assert total == pytest.approx(expected, abs=1e-9)
