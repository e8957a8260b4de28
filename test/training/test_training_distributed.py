"""Several processes (accelerate launch, 2 CPU processes, gloo) and resuming from a checkpoint.

`accelerate launch --cpu` starts ONE process unless MPI is set up; `--multi_gpu --num_processes 2`
starts two through torchrun, and on a machine without CUDA the scripts join them in a gloo group.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_support import REPO, run_stage, stage_args

ACCELERATE = Path(sys.executable).with_name("accelerate")


def launch(module: str, *args: str, timeout=300) -> subprocess.CompletedProcess:
    command = [
        str(ACCELERATE),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        module,
        *args,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("recipe", ["stage2_mole_tiny", "stage3_dpo_tiny"])
def test_two_cpu_processes(tmp_path, recipe):
    """Stage 2 (our loop, MoLE: unused experts under DDP) and stage 3 (TRL) in 2 gloo processes."""
    if recipe == "stage3_dpo_tiny":
        start = tmp_path / "s2"
        run_stage("stage2", *stage_args("stage2", start, train={"max_steps": 1}))
        extra = ["--adapter", str(start)]
    else:
        extra = ["--adapter", "null"]
    out = tmp_path / "out"
    module = "training.stage2_instruct" if recipe.startswith("stage2") else "training.stage3_dpo"
    done = launch(
        module,
        "--config",
        f"training/configs/{recipe}.yaml",
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        *extra,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es), DistributedType.MULTI_CPU" in done.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2
    assert (out / "adapter_model.safetensors").is_file()


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    """Stopped after the step-2 checkpoint, then --resume: the same weights as one uninterrupted
    run."""
    train = {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 2}
    straight = tmp_path / "straight"
    run_stage("stage2", *stage_args("stage2", straight, train=train))
    # Simulate a crash right after the checkpoint of step 2: its folder as it was then.
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    shutil.copytree(straight / "checkpoint", interrupted / "checkpoint")
    log_lines = (straight / "log.jsonl").read_text().splitlines()
    (interrupted / "log.jsonl").write_text("\n".join(log_lines[:2]) + "\n")
    assert json.loads((interrupted / "checkpoint" / "step.json").read_text())["step"] == 2
    with pytest.raises(ValueError, match="--overwrite"):
        run_stage("stage2", *stage_args("stage2", interrupted, train=train))
    run_stage("stage2", *stage_args("stage2", interrupted, train={**train, "resume": True}))
    expected = load_file(str(straight / "adapter_model.safetensors"))
    resumed = load_file(str(interrupted / "adapter_model.safetensors"))
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.allclose(expected[key], resumed[key], atol=1e-6), key
    losses = [
        json.loads(line)["loss"] for line in (interrupted / "log.jsonl").read_text().splitlines()
    ]
    assert losses == pytest.approx([json.loads(line)["loss"] for line in log_lines], abs=1e-5)
