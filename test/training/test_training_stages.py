"""The three training stages on the tiny random PaliGemma 2: what trains, what is saved, what
loads.

One module-scoped chain (stage 1 -> stage 2 LoRA / MoLE -> stage 3 on each) is trained once, a
few steps each; the tests then inspect the returned models and the saved folders.
"""

import json

import pytest
import torch
from test_training_support import (
    base_state,
    changed_base_parameters,
    logits_of,
    run_stage,
    sample_inputs,
    stage_args,
    tiny_base,
)

from training import trainable
from uservlm_ros.model import loading, mole

PROJECTOR = "model.multi_modal_projector."


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    runs = {"base": base_state()}
    runs["stage1_dir"] = root / "stage1"
    runs["stage1"] = run_stage("stage1", *stage_args("stage1", runs["stage1_dir"]))
    for method in ("lora", "mole"):
        out = root / f"stage2_{method}"
        runs[f"stage2_{method}_dir"] = out
        runs[f"stage2_{method}"] = run_stage(
            "stage2",
            *stage_args(
                "stage2", out, adapter=runs["stage1_dir"], method=method, mole_aux_loss_coef=0.1
            ),
        )
        runs[f"stage2_{method}_saved"] = {
            k: v.detach().clone() for k, v in trainable_state(runs[f"stage2_{method}"]).items()
        }
        out3 = root / f"stage3_{method}"
        runs[f"stage3_{method}_dir"] = out3
        runs[f"stage3_{method}"] = run_stage(
            "stage3", *stage_args("stage3", out3, adapter=out, train={"max_steps": 2})
        )
    return runs


def trainable_state(model) -> dict:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def test_stage1_changes_only_the_projector(chain):
    model = chain["stage1"]
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n in chain["base"] if n.startswith(PROJECTOR)
    }
    changed = changed_base_parameters(model, chain["base"])
    assert changed and all(name.startswith(PROJECTOR) for name in changed), changed
    files = {p.name for p in chain["stage1_dir"].iterdir()}
    assert {"multi_modal_projector.safetensors", "training_config.yaml", "log.jsonl"} <= files


@pytest.mark.parametrize("method", ["lora", "mole"])
def test_stage2_changes_only_adapter_weights_on_the_language_model(chain, method):
    model = chain[f"stage2_{method}"]
    trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable_names
    for name in trainable_names:
        assert (
            "language_model" in name
            and "vision" not in name
            and "multi_modal_projector" not in name
        ), name
        assert "lora_" in name or ".router." in name or ".experts." in name, name
    if method == "mole":
        assert any(".router." in n for n in trainable_names) and any(
            ".experts." in n for n in trainable_names
        )
    # base weights untouched, except the projector, which now holds the stage-1 weights
    changed = changed_base_parameters(model, chain["base"])
    assert not [n for n in changed if not n.startswith(PROJECTOR)], changed
    # adapter weights moved away from their initialisation (LoRA B / expert B start at zero)
    moved = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and ("lora_B" in n or n.endswith(".B")) and p.abs().sum() > 0
    ]
    assert moved


def test_stage2_adapter_carries_the_stage1_projector_frozen(chain):
    stage1 = chain["stage1"]
    model = chain["stage2_lora"]
    saved = dict(trainable.projector(stage1).state_dict())
    carried = {
        n: p
        for n, p in model.named_parameters()
        if "multi_modal_projector" in n and "modules_to_save" in n
    }
    assert carried and not any(p.requires_grad for p in carried.values())
    for name, param in carried.items():
        assert torch.equal(param, saved[name.split("modules_to_save.default.")[-1]])


@pytest.mark.parametrize("method", ["lora", "mole"])
def test_stage3_trains_the_stage2_adapter_and_nothing_else(chain, method):
    model = chain[f"stage3_{method}"]
    before = chain[f"stage2_{method}_saved"]
    after = trainable_state(model)
    assert set(after) == set(
        before
    )  # the same adapter parameters train, no new ones (TRL's "ref" stays frozen)
    assert any(not torch.equal(after[n].detach(), before[n]) for n in after)
    changed = changed_base_parameters(model, chain["base"])
    assert not [n for n in changed if not n.startswith(PROJECTOR)], changed
    assert not (
        chain[f"stage3_{method}_dir"] / "ref"
    ).exists()  # only the trained adapter is saved


@pytest.mark.parametrize(
    "stage", ["stage1", "stage2_lora", "stage2_mole", "stage3_lora", "stage3_mole"]
)
def test_saved_output_loads_exactly_and_changes_the_engines_output(chain, stage):
    from uservlm_ros.engines.vlm import VLMConfig, VLMEngine

    out = chain[f"{stage}_dir"]
    kind = "projector" if stage == "stage1" else stage.split("_")[1]
    assert loading.detect_adapter_type(out) == kind
    base, processor = tiny_base()
    inputs = sample_inputs(processor)
    loaded, _, info = loading.load_model(
        "tiny-random-paligemma2", str(out), offline_fallback=False
    )
    assert info.adapter_type == kind
    # save/load reproduces the trained model's outputs exactly
    assert torch.equal(logits_of(loaded, inputs), logits_of(chain[stage], inputs))
    assert not torch.allclose(logits_of(loaded, inputs), logits_of(base, inputs))
    engine = VLMEngine(
        VLMConfig(
            base_model="tiny-random-paligemma2",
            adapter=str(out),
            offline_fallback=False,
            max_new_tokens=8,
        )
    )
    engine.load()
    plain = VLMEngine(
        VLMConfig(base_model="tiny-random-paligemma2", adapter=None, max_new_tokens=8)
    )
    plain.load()
    image = inputs_image()
    assert engine.info.adapter_type == kind and engine.placeholder
    assert (
        engine.answer("How do I make the text bigger?", image).text
        != plain.answer("How do I make the text bigger?", image).text
    )


def inputs_image():
    import numpy as np
    from PIL import Image
    from test_training_support import DATA

    return np.asarray(Image.open(DATA / "images" / "hopper_face.jpg").convert("RGB"))


def test_outputs_record_the_resolved_config_and_data_report(chain):
    import yaml

    for stage in ("stage1", "stage2_lora", "stage2_mole", "stage3_lora", "stage3_mole"):
        folder = chain[f"{stage}_dir"]
        config = yaml.safe_load((folder / "training_config.yaml").read_text())
        assert config["output_dir"] == str(folder) and config["seed"] == 0
        report = json.loads((folder / "data_report.json").read_text())
        assert report["skipped"] == 0 and report["kept"] == report["rows"]
    assert (
        yaml.safe_load((chain["stage2_mole_dir"] / "training_config.yaml").read_text())["method"]
        == "mole"
    )


def test_mole_router_and_experts_saved_and_used(chain):
    model = chain["stage2_mole"]
    layers = mole.mole_layers(model)
    assert layers and all(layer.router.weight.requires_grad for layer in layers)
    summary = json.loads((chain["stage2_mole_dir"] / "train_summary.json").read_text())
    assert len(summary["expert_usage"]) == len(layers)
    assert (chain["stage2_mole_dir"] / "mole_experts.safetensors").is_file()


def test_loss_falls_on_a_tiny_overfit_set(tmp_path):
    out = tmp_path / "overfit"
    run_stage(
        "stage2",
        *stage_args(
            "stage2",
            out,
            data={"max_rows": 2},
            train={"max_steps": 25, "learning_rate": 1e-2},
            method="lora",
        ),
    )
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 25
    # The tiny model cannot get far: its final RMSNorm and tied, frozen random embeddings keep the
    # logits nearly uniform (loss ~ ln(vocab) = 7.9). A clear, steady fall is what is checked.
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses


def test_mole_router_gets_gradient_and_the_balance_loss_spreads_the_load(tmp_path):
    """Toy task: the instruct set, 20 steps. Without the balancing loss the top-1 router of the
    random
    tiny model sends every token of a layer to one expert; with it no expert takes most of the
    load."""
    from test_training_support import DATA

    from training.batches import make_sft_collate
    from training.rows import DataArgs, load_examples

    _, processor = tiny_base()
    examples, _ = load_examples(
        DataArgs(dataset=str(DATA / "instruct.jsonl")), "instruct", log=lambda m: None
    )
    batch = make_sft_collate(processor, "instruct")([examples[i] for i in range(len(examples))])

    def max_share_per_layer(coef):
        model = run_stage(
            "stage2",
            *stage_args(
                "stage2",
                tmp_path / f"mole_{coef}",
                method="mole",
                train={"max_steps": 20, "learning_rate": 3e-3},
                mole_aux_loss_coef=coef,
            ),
        )
        mole.reset_expert_usage(model)
        model.train()
        output = model(**batch)
        (output.loss + mole.mole_aux_loss(model)).backward()
        for layer in mole.mole_layers(model):
            assert (
                layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0
            )
        return [max(usage) / sum(usage) for usage in mole.expert_usage(model)]

    assert max(max_share_per_layer(0.0)) > 0.95  # collapsed
    assert max(max_share_per_layer(100.0)) < 0.6  # spread (1/3 would be perfect)


def test_trainable_parameter_counts_at_paligemma2_3b():
    """Meta-device 3B model, the stages' own set-up functions; numbers checked by hand:
    projector 1152*2304 + 2304; LoRA r per layer r*(in+out) over q,k,v,o,gate,up,down x 26
    layers."""
    from training.count_params import counts

    projector, lora, mole_ = [trainable_count for _, trainable_count, _ in counts(16, 32)]
    assert projector == 1152 * 2304 + 2304
    lora_per_layer = 16 * ((2304 + 2048) + 2 * (2304 + 1024) + (2048 + 2304) + 3 * (2304 + 9216))
    assert lora == 26 * lora_per_layer
    attention = 16 * ((2304 + 2048) + 2 * (2304 + 1024) + (2048 + 2304))
    experts = 3 * 16 * 3 * (2304 + 9216) + 3 * 2304  # 3 experts x (gate, up, down) + router
    assert mole_ == 26 * (attention + experts)
