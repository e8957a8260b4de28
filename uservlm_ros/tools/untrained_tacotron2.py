"""An UNTRAINED Tacotron 2 (+ HiFi-GAN vocoder) built from coqui-tts's own configurations.

No reachable registry ships Tacotron 2 weights (Coqui downloads them at run time). This writes a
model directory that the TTS engine's ``coqui`` backend loads exactly like a downloaded one
(``config.json`` + ``model.pth``; the vocoder in ``vocoder/``), with random weights: **its output
is noise**, and :data:`~uservlm_ros.engines.tts.UNTRAINED_MARKER` in both directories makes the
engine say so in its voice name. It exercises the real code path and costs what the real model
costs per second of audio; it says nothing about speech quality.

Shapes: ``Tacotron2Config`` defaults (character input, 80 mels, reduction factor r = 2, double
decoder consistency on, as in ``tts_models/en/ljspeech/tacotron2-DDC``); the vocoder is coqui's
HiFi-GAN generator at the paper's V2 width (upsample_initial_channel 128, the size of that
model's default vocoder ``hifigan_v2``). An untrained stop token would end decoding at a random
step, so it is silenced: the decoder always runs ``max_decoder_steps`` steps (r frames each),
giving a fixed length of noise per sentence, enough to time synthesis per second of audio
(silence trimming is off, so the audio is all that was computed).

    from uservlm_ros.tools.untrained_tacotron2 import build_untrained_tacotron2
    model_dir = build_untrained_tacotron2(tmp_path)        # needs coqui-tts importable
    TTSConfig(backend="coqui", coqui_model=str(model_dir),
              coqui_vocoder=str(model_dir / "vocoder"))
"""

from __future__ import annotations

import json
from pathlib import Path

from uservlm_ros.engines.tts import UNTRAINED_MARKER

VOCODER_DIR = "vocoder"
# HiFi-GAN V2 (Kong et al. 2020): narrower than V1 (512), same kernels and dilations.
HIFIGAN_V2_GENERATOR = {
    "upsample_factors": [8, 8, 2, 2],
    "upsample_kernel_sizes": [16, 16, 4, 4],
    "upsample_initial_channel": 128,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "resblock_type": "1",
}


def build_untrained_tacotron2(
    out_dir,
    sample_rate: int = 22050,
    max_decoder_steps: int = 100,
    vocoder: bool = True,
    seed: int = 0,
) -> Path:
    """Write the untrained model (and vocoder) to ``out_dir``; returns it. Every sentence comes
    out ``max_decoder_steps * 2 * 256 / sample_rate`` seconds long (2.3 s at the defaults)."""
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.tacotron2_config import Tacotron2Config
    from TTS.tts.models.tacotron2 import Tacotron2
    from TTS.vocoder.configs.hifigan_config import HifiganConfig
    from TTS.vocoder.models import setup_model as setup_vocoder

    if max_decoder_steps < 1:
        raise ValueError(f"max_decoder_steps must be >= 1, got {max_decoder_steps}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # No silence trimming: on noise it cuts an arbitrary part of what was computed.
    audio = BaseAudioConfig(sample_rate=sample_rate, do_trim_silence=False)
    marker = {
        "untrained": True,
        "seed": seed,
        "note": "Random weights built from coqui-tts configurations: the output is noise.",
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = Tacotron2Config(
            audio=audio,
            r=2,
            double_decoder_consistency=True,
            max_decoder_steps=max_decoder_steps,
            use_phonemes=False,
            text_cleaner="english_cleaners",
            run_description="UNTRAINED: random weights, output is noise",
        )
        model = Tacotron2(config)  # builds its tokenizer and audio processor from the config
        stop = model.decoder.stopnet[-1].linear_layer  # never stop: see the module docstring
        torch.nn.init.zeros_(stop.weight)
        torch.nn.init.constant_(stop.bias, -10.0)
        _save(out, model, model.config, marker)
        if vocoder:
            vocoder_config = HifiganConfig(
                audio=audio, generator_model_params=HIFIGAN_V2_GENERATOR
            )
            _save(out / VOCODER_DIR, setup_vocoder(vocoder_config), vocoder_config, marker)
    return out


def _save(folder: Path, model, config, marker: dict) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    (folder / UNTRAINED_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
