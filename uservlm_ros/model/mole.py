"""Sparse Mixture of LoRA Experts (MoLE) for the language model of PaliGemma 2, training-ready.

The paper's stage-2 MoLE variant: LoRA on the attention projections of the language model, plus
K LoRA experts on every decoder layer's feed-forward network, chosen per token by a top-1 router::

    k* = argmax_k softmax(W_g h)_k                         (router, per token)
    FFN'(h) = down'(act(gate'(h)) * up'(h))                 gate' = gate + p_k* * B_k* A_k* ...

i.e. the selected expert's low-rank updates of gate_proj, up_proj and down_proj are added, scaled
by the router probability ``p_k*`` of that expert. That scaling is what makes the router trainable
(Switch Transformer): a plain argmax, as upstream used, has no gradient. A Switch load-balancing
loss ``K * sum_i f_i * P_i`` (f_i: fraction of tokens routed to expert i, P_i: mean router
probability of expert i) is computed on every forward; :func:`mole_aux_loss` returns its mean over
layers (1.0 when perfectly balanced) for the training loop to add with a small coefficient.

Upstream defects fixed here: the router gets gradient and a balancing loss; router and expert
weights are saved (PEFT only keeps ``lora_`` keys, so they live in their own file, see
:func:`save_mole`); decoder layers are found by structure, not by the attribute path
``model.language_model.model.layers`` that broke in transformers 4.52; LoRA is restricted to the
language model (the same q/k/v/o names also exist in the SigLIP vision tower).

Hyper-parameters: the paper states r = alpha = 32 while the upstream code and model cards use
r 16 / alpha 32. We follow the paper (``MoLEConfig`` defaults), for attention LoRA and experts.

Typical training use::

    model = get_mole_model(base_model, MoLEConfig(num_experts=3))   # PeftModel, base frozen
    out = model(**batch)
    loss = out.loss + 0.01 * mole_aux_loss(model)
    ...
    save_mole(model, "adapters/mole")                               # PEFT files + MoLE files
    model = load_mole(fresh_base_model, "adapters/mole")            # for inference
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from uservlm_ros.model.errors import VLMLoadError

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
FFN_MODULES = ("gate_proj", "up_proj", "down_proj")
MOLE_CONFIG_FILE = "mole_config.json"
MOLE_WEIGHTS_FILE = "mole_experts.safetensors"
MOLE_FORMAT = "uservlm_ros.mole"
MOLE_FORMAT_VERSION = 1


@dataclasses.dataclass
class MoLEConfig:
    num_experts: int = 3
    r: int = 32
    alpha: float = 32.0
    dropout: float = 0.05
    # Small router weights: near-uniform routing at the start of training.
    router_init_std: float = 0.02
    # "lora": B = 0, so a fresh adapter leaves the model unchanged (standard LoRA; the router
    # starts receiving gradient once B has moved). "random": B random too (tests, demos).
    init: str = "lora"

    def __post_init__(self):
        if self.num_experts < 1 or self.r < 1:
            raise ValueError("num_experts and r must be >= 1")
        if self.init not in ("lora", "random"):
            raise ValueError(f"init must be 'lora' or 'random', got {self.init!r}")


# --------------------------------------------------------------------------- finding the layers


def find_decoder_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The language model's decoder layers, in order, found by structure.

    A decoder layer has ``self_attn`` and an ``mlp`` with gate/up/down projections. SigLIP's layers
    (mlp = fc1/fc2) do not qualify; anything under a vision module is excluded as well.
    """
    layers = []
    for name, module in model.named_modules():
        mlp = getattr(module, "mlp", None)
        if (
            hasattr(module, "self_attn")
            and mlp is not None
            and all(hasattr(mlp, proj) for proj in FFN_MODULES)
            and "vision" not in name
        ):
            layers.append((name, module))
    if not layers:
        raise ValueError(
            "no language-model decoder layers (self_attn + gated mlp) found in the model"
        )
    return layers


def language_model_target_regex(model: nn.Module, modules=ATTENTION_MODULES) -> str:
    """A PEFT ``target_modules`` regex matching ``modules`` in the language model only."""
    model = _unwrap_peft(model)
    parents = {name.rsplit(".", 1)[0] for name, _ in find_decoder_layers(model)}
    if len(parents) != 1:
        raise ValueError(f"decoder layers found under several parents: {sorted(parents)}")
    prefix = re.escape(parents.pop())
    return rf"{prefix}\.\d+\.(?:.*\.)?(?:{'|'.join(re.escape(m) for m in modules)})"


def attention_lora_config(
    model: nn.Module,
    r=32,
    alpha=32.0,
    dropout=0.05,
    init_lora_weights=True,
    modules=ATTENTION_MODULES,
):
    """``LoraConfig`` for the language model's attention (or any of its ``modules``)."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=language_model_target_regex(model, modules),
        init_lora_weights=init_lora_weights,
        bias="none",
        task_type="CAUSAL_LM",
    )


# --------------------------------------------------------------------------- the MoLE modules


class _TokenMask:
    """Which positions are real tokens, captured from the model's ``attention_mask`` argument.

    Only routing statistics and the balancing loss use it (padding should not count as load);
    routing itself is per token and needs no mask.
    """

    def __init__(self):
        self.attention_mask = None

    def for_hidden(self, hidden: torch.Tensor):
        mask = self.attention_mask
        if mask is None or mask.dim() != 2 or mask.shape[0] != hidden.shape[0]:
            return None
        if mask.shape[1] < hidden.shape[1]:
            return None
        # With a KV cache the layer only sees the newest positions: the mask's last columns.
        return mask[:, -hidden.shape[1] :].to(device=hidden.device, dtype=torch.bool)


class LoRAExperts(nn.Module):
    """K low-rank updates of one linear layer, stacked: A is (K*r, in), B is (out, K*r).

    ``forward(x, gate)`` returns ``sum_k gate_k * scaling * B_k A_k x``; with a one-hot gate scaled
    by the router probability this is the selected expert's update. Weights are float32 whatever
    the base dtype (as PEFT does for LoRA), the result is cast back.
    """

    def __init__(self, base: nn.Linear, cfg: MoLEConfig, generator=None):
        super().__init__()
        self.num_experts, self.r = cfg.num_experts, cfg.r
        self.scaling = cfg.alpha / cfg.r
        rows = cfg.num_experts * cfg.r
        A = torch.empty(rows, base.in_features)
        B = torch.zeros(base.out_features, rows)
        # Same initialisation as PEFT's LoRA A (kaiming uniform, a = sqrt(5)).
        nn.init.kaiming_uniform_(A, a=math.sqrt(5), generator=generator)
        if cfg.init == "random":
            nn.init.kaiming_uniform_(B, a=math.sqrt(5), generator=generator)
        device = base.weight.device
        self.A = nn.Parameter(A.to(device))
        self.B = nn.Parameter(B.to(device))
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        h = F.linear(self.dropout(x.to(self.A.dtype)), self.A)
        h = (h.unflatten(-1, (self.num_experts, self.r)) * gate.unsqueeze(-1).to(h.dtype)).flatten(
            -2
        )
        return (F.linear(h, self.B) * self.scaling).to(x.dtype)


class MoLEFeedForward(nn.Module):
    """A gated FFN (gate/up/down + act_fn, as in Gemma 2) with K LoRA experts and a top-1 router.

    It takes over the original MLP's projections under the same attribute names, so the base
    weights keep their parameter names (``...mlp.gate_proj.weight``); the new parameters are
    ``...mlp.router.weight`` and ``...mlp.experts.<proj>.A/B``.
    """

    def __init__(self, mlp: nn.Module, cfg: MoLEConfig, token_mask: _TokenMask, generator=None):
        super().__init__()
        for proj in FFN_MODULES:
            if not isinstance(getattr(mlp, proj), nn.Linear):
                raise TypeError(
                    f"MoLE needs plain nn.Linear {proj}, got {type(getattr(mlp, proj)).__name__}"
                )
        if not hasattr(mlp, "act_fn"):
            raise TypeError("MoLE needs a gated MLP with an act_fn")
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        self.act_fn = mlp.act_fn
        self.num_experts = cfg.num_experts
        hidden = mlp.gate_proj.in_features
        router = torch.empty(cfg.num_experts, hidden)
        nn.init.normal_(router, std=cfg.router_init_std, generator=generator)
        self.router = nn.Linear(
            hidden, cfg.num_experts, bias=False, device=mlp.gate_proj.weight.device
        )
        with torch.no_grad():
            self.router.weight.copy_(router)
        self.experts = nn.ModuleDict(
            {proj: LoRAExperts(getattr(mlp, proj), cfg, generator) for proj in FFN_MODULES}
        )
        self.register_buffer(
            "usage", torch.zeros(cfg.num_experts, dtype=torch.long), persistent=False
        )
        self.aux_loss: torch.Tensor | None = None
        self._token_mask = token_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Routing in float32 (Switch Transformer): softmax in bf16 is too coarse to route stably.
        probs = F.linear(x.float(), self.router.weight.float()).softmax(dim=-1)
        top_p, top_i = probs.max(dim=-1)
        gate = F.one_hot(top_i, self.num_experts).to(probs.dtype) * top_p.unsqueeze(-1)
        self._record(probs, top_i, self._token_mask.for_hidden(x))

        gate_out = self.gate_proj(x) + self.experts["gate_proj"](x, gate)
        up_out = self.up_proj(x) + self.experts["up_proj"](x, gate)
        hidden = self.act_fn(gate_out) * up_out
        return self.down_proj(hidden) + self.experts["down_proj"](hidden, gate)

    def _record(self, probs, top_i, mask):
        if mask is not None:
            probs, top_i = probs[mask], top_i[mask]
        else:
            probs, top_i = probs.reshape(-1, self.num_experts), top_i.reshape(-1)
        counts = torch.bincount(top_i, minlength=self.num_experts)
        self.usage += counts.to(self.usage.device)
        if top_i.numel() == 0:
            self.aux_loss = probs.sum() * 0.0
            return
        fraction = counts.to(probs.dtype) / top_i.numel()
        self.aux_loss = self.num_experts * (fraction * probs.mean(dim=0)).sum()


# --------------------------------------------------------------------------- building, stats


def attach_mole(
    model: nn.Module, cfg: MoLEConfig | None = None, seed: int | None = None
) -> nn.Module:
    """Replace every decoder layer's MLP with a :class:`MoLEFeedForward`, in place.

    Call it AFTER ``get_peft_model`` (``get_mole_model`` does): PEFT freezes every parameter that
    exists when it wraps the model, which would freeze the experts and routers too.
    ``seed`` makes the new weights reproducible without touching the global RNG.
    """
    cfg = cfg or MoLEConfig()
    if mole_layers(model):
        raise ValueError("the model already has MoLE layers")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    token_mask = _TokenMask()
    for _, layer in find_decoder_layers(model):
        layer.mlp = MoLEFeedForward(layer.mlp, cfg, token_mask, generator)
    # The balancing loss and usage counts should ignore padding: remember the attention mask of
    # each call. Hooked on the outer model (PeftModel.__call__) and on the transformers model,
    # which generate() calls directly.
    for target in {id(model): model, id(_unwrap_peft(model)): _unwrap_peft(model)}.values():
        target.register_forward_pre_hook(_remember_mask(token_mask), with_kwargs=True)
        target.register_forward_hook(_forget_mask(token_mask), always_call=True)
    model.mole_config = cfg
    return model


def get_mole_model(model: nn.Module, cfg: MoLEConfig | None = None, seed: int | None = None):
    """PEFT LoRA on the language model's attention + MoLE experts on its FFNs; base frozen."""
    from peft import get_peft_model

    cfg = cfg or MoLEConfig()
    lora = attention_lora_config(
        model, cfg.r, cfg.alpha, cfg.dropout, init_lora_weights=cfg.init == "lora"
    )
    peft_model = get_peft_model(model, lora)
    return attach_mole(peft_model, cfg, seed)


def mole_layers(model: nn.Module) -> list[MoLEFeedForward]:
    return [module for module in model.modules() if isinstance(module, MoLEFeedForward)]


def mole_aux_loss(model: nn.Module) -> torch.Tensor:
    """Mean over layers of the Switch balancing loss of the LAST forward pass (1.0 = balanced)."""
    losses = [layer.aux_loss for layer in mole_layers(model) if layer.aux_loss is not None]
    if not losses:
        raise RuntimeError("no MoLE forward pass recorded yet (or the model has no MoLE layers)")
    return torch.stack([loss.to(losses[0].device) for loss in losses]).mean()


def expert_usage(model: nn.Module) -> list[list[int]]:
    """Tokens routed to each expert, per decoder layer, since the last :func:`reset_expert_usage`.

    Padding is not counted when the model was called with ``attention_mask=``. With gradient
    checkpointing the recomputed forward passes are counted again.
    """
    return [layer.usage.tolist() for layer in mole_layers(model)]


def reset_expert_usage(model: nn.Module) -> None:
    for layer in mole_layers(model):
        layer.usage.zero_()


# --------------------------------------------------------------------------- save / load


def mole_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Router and expert weights keyed by layer index (independent of PEFT's name prefixes)."""
    state = {}
    for index, layer in enumerate(mole_layers(model)):
        state[f"layers.{index}.router.weight"] = layer.router.weight
        for proj, experts in layer.experts.items():
            state[f"layers.{index}.experts.{proj}.A"] = experts.A
            state[f"layers.{index}.experts.{proj}.B"] = experts.B
    return state


def save_mole(model: nn.Module, out_dir) -> Path:
    """Save a MoLE adapter: PEFT's attention LoRA files + ``mole_config.json`` + expert weights.

    Directory format::

        adapter_config.json, adapter_model.safetensors   PEFT LoRA on the attention projections
        mole_config.json                                  MoLEConfig + layer count + format version
        mole_experts.safetensors                          routers and experts, keys
                                                          layers.<i>.router.weight,
                                                          layers.<i>.experts.<proj>.A / .B
    """
    from safetensors.torch import save_file

    layers = mole_layers(model)
    if not layers:
        raise ValueError("the model has no MoLE layers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(out)
    cfg = getattr(model, "mole_config", None) or MoLEConfig()
    meta = {
        "format": MOLE_FORMAT,
        "version": MOLE_FORMAT_VERSION,
        **dataclasses.asdict(cfg),
        "num_layers": len(layers),
        "hidden_size": layers[0].gate_proj.in_features,
        "intermediate_size": layers[0].gate_proj.out_features,
    }
    (out / MOLE_CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    tensors = {
        key: value.detach().to("cpu").contiguous() for key, value in mole_state_dict(model).items()
    }
    save_file(tensors, str(out / MOLE_WEIGHTS_FILE), metadata={"format": MOLE_FORMAT})
    return out


def read_mole_config(adapter_dir) -> MoLEConfig:
    path = Path(adapter_dir) / MOLE_CONFIG_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VLMLoadError(f"cannot read {path}: {error}") from error
    if meta.get("format") != MOLE_FORMAT or meta.get("version") != MOLE_FORMAT_VERSION:
        raise VLMLoadError(f"{path}: not a {MOLE_FORMAT} v{MOLE_FORMAT_VERSION} file")
    fields = {f.name for f in dataclasses.fields(MoLEConfig)}
    return MoLEConfig(**{key: value for key, value in meta.items() if key in fields})


def load_mole(model: nn.Module, adapter_dir, is_trainable: bool = False) -> nn.Module:
    """Load a MoLE adapter saved by :func:`save_mole` onto a base model; returns the PeftModel.

    ``is_trainable=True`` keeps LoRA, routers and experts trainable (to resume training).

    Strict: every router/expert tensor must be present with the right shape, and nothing extra,
    otherwise ``VLMLoadError`` names the offending keys.
    """
    from peft import PeftModel
    from safetensors.torch import load_file

    if isinstance(model, PeftModel):
        # Its attention LoRA would not be the one saved with these experts.
        raise TypeError("load_mole expects the base model, not a PeftModel")
    adapter_dir = Path(adapter_dir)
    cfg = read_mole_config(adapter_dir)
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)
    attach_mole(model, cfg, seed=0)  # the seed only avoids touching the global RNG

    weights_path = adapter_dir / MOLE_WEIGHTS_FILE
    try:
        saved = load_file(str(weights_path))
    except (OSError, ValueError) as error:
        raise VLMLoadError(f"cannot read {weights_path}: {error}") from error
    expected = mole_state_dict(model)
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise VLMLoadError(
            f"MoLE weights in {weights_path} do not fit the model: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    for key, param in expected.items():
        if saved[key].shape != param.shape:
            raise VLMLoadError(
                f"MoLE weight {key} in {weights_path} has shape {tuple(saved[key].shape)}, "
                f"the model expects {tuple(param.shape)}"
            )
    with torch.no_grad():
        for key, param in expected.items():
            param.copy_(saved[key])
            param.requires_grad_(is_trainable)
    return model


# --------------------------------------------------------------------------- helpers


def _unwrap_peft(model: nn.Module) -> nn.Module:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _remember_mask(token_mask: _TokenMask):
    def hook(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        token_mask.attention_mask = mask if isinstance(mask, torch.Tensor) else None

    return hook


def _forget_mask(token_mask: _TokenMask):
    def hook(module, args, output):
        token_mask.attention_mask = None

    return hook
