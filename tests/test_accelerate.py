"""Data-parallel evaluation: ``accelerate launch`` with 2 CPU processes gives the same metrics and
the same per-document outputs as one process.

accelerate 1.x's ``--cpu`` launcher starts a single process (several only through ``mpirun``),
so the 2-process CPU run uses the torchrun-based launcher: ``accelerate launch --multi_gpu
--num_processes 2`` (no GPU needed; the ``dllm`` model asks accelerate for a CPU/gloo group when
CUDA is absent). The test checks that the run really had a world size of 2.
"""

from __future__ import annotations

import socket

import pytest
from dllm_eval.tests.test_lm import (
    BIN,
    cli_args,
    read_output,
    run_cmd,
    write_tiny_tasks,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny_tasks(tmp_path):
    return write_tiny_tasks(tmp_path / "tasks")


@pytest.mark.slow
def test_two_cpu_processes_match_one(tiny_models, tiny_tasks, tmp_path):
    import dllm_eval  # noqa: F401
    import lm_eval
    from lm_eval.tasks import TaskManager

    model_args = "sampler=margin,batch_size=2"
    out = tmp_path / "dp2"
    # (one launch: the rank that finished first used to abort at interpreter teardown with a
    # live gloo group, ~1 launch in 6; DLLM now destroys the process group at exit)
    run_cmd([
        str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "lm_eval", *cli_args(tiny_models["llada"], tiny_tasks, out, model_args),
    ])
    results, samples = read_output(out)
    assert results["config"]["world_size"] == 2

    # the same evaluation in one process
    margs = dict(item.split("=", 1) for item in cli_args(tiny_models["llada"], tiny_tasks, out, model_args)[3].split(","))
    single = lm_eval.simple_evaluate(
        model="dllm", model_args=margs, tasks=["tiny_gen_t", "tiny_mc_t"], limit=4, log_samples=True,
        task_manager=TaskManager(include_path=str(tiny_tasks), include_defaults=False), device="cpu",
    )
    assert single["config"]["world_size"] == 1
    for task in ("tiny_gen_t", "tiny_mc_t"):
        assert results["results"][task] == single["results"][task]
        one = sorted(single["samples"][task], key=lambda r: r["doc_id"])
        two = samples[task]
        assert [r["doc_id"] for r in two] == [r["doc_id"] for r in one] == [0, 1, 2, 3]
        assert [r["filtered_resps"] for r in two] == _jsonable([r["filtered_resps"] for r in one])
    # both ranks' work is counted
    assert results["config"]["generated_rows"] == single["config"]["generated_rows"] == 4


def _jsonable(obj):
    """The single-process samples as the CLI writes them (tuples -> lists, values -> strings)."""
    if isinstance(obj, (list, tuple)):
        return [_jsonable(x) for x in obj]
    if isinstance(obj, (bool, float, int)) and not isinstance(obj, str):
        return str(obj)
    return obj
