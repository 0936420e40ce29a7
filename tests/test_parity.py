"""``dllm-eval parity``: every golden case of the three fixture families is reproduced exactly
(output ids and NFE), through the CLI entry point."""

from __future__ import annotations

import io
import json

import pytest
from dllm_eval import cli
from dllm_eval.samplers import parity


def test_case_mapping_documents_the_reference_options():
    llada = {"settings": {"function": "generate", "source": "ML-GSAI/LLaDA@x:generate.py", "args": {
        "steps": 8, "gen_length": 8, "block_length": 4, "temperature": 0.0, "cfg_scale": 1.0,
        "remasking": "low_confidence", "mask_id": 7}}}
    opts = parity.case_options(llada)
    assert opts["sampler"] == "confidence" and opts["schedule"] == "even" and opts["cfg_scale"] == 1.0
    dream = {"settings": {"function": "DreamModel.diffusion_generate", "args": {
        "max_new_tokens": 8, "steps": 8, "alg": "topk_margin", "alg_temp": 0.0}}}
    opts = parity.case_options(dream)
    assert opts["sampler"] == "margin" and opts["schedule"] == "linspace" and opts["gen_length"] == 8
    with pytest.raises(ValueError, match="alg='origin'"):
        parity.case_options({"id": "x", "settings": {"function": "diffusion_generate", "args": {"alg": "origin"}}})


@pytest.mark.parametrize("family", ["llada", "dream", "sdar"])
def test_one_case_per_family_is_identical(fixtures_dir, family, tmp_path):
    # quick tier: the first case of each golden file, through run_golden
    golden = fixtures_dir / f"{family}-tiny" / "golden_generate.json"
    first = json.loads(golden.read_text())[-1]["id"]
    out = io.StringIO()
    ok, total = parity.run_golden(golden, only=first, out=out)
    assert (ok, total) == (1, 1), out.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llada", "dream", "sdar"])
def test_cli_every_golden_case_identical(fixtures_dir, family, capsys):
    golden = fixtures_dir / f"{family}-tiny" / "golden_generate.json"
    n_cases = len(json.loads(golden.read_text()))
    code = cli.main(["parity", str(golden), "--model", str(golden.parent)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = printed.strip().splitlines()
    assert lines[-1] == f"{n_cases}/{n_cases} cases identical"
    assert sum(line.startswith("IDENTICAL") for line in lines) == n_cases


def test_cli_exit_code_on_mismatch(fixtures_dir, tmp_path, capsys):
    golden = fixtures_dir / "dream-tiny" / "golden_generate.json"
    case = json.loads(golden.read_text())[1]
    case["output_ids"][0][-1] = (case["output_ids"][0][-1] + 1) % 1000  # corrupt the reference
    bad = tmp_path / "golden_generate.json"
    bad.write_text(json.dumps([case]))
    code = cli.main(["parity", str(bad), "--model", str(golden.parent)])
    printed = capsys.readouterr().out
    assert code == 1
    assert "DIFFERENT" in printed and printed.strip().endswith("0/1 cases identical")
