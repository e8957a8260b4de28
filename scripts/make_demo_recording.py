"""Regenerate the bundled demo recording in uservlm_ros/data/demo/ (deterministic).

    .venv/bin/python scripts/make_demo_recording.py            # writes person.avi, question.wav,
    reply.wav
    .venv/bin/python scripts/make_demo_recording.py --out /tmp/demo

- ``person.avi``: 3.5 s, 10 fps (35 frames), 640x480 Motion-JPEG of ``skimage.data.astronaut()``
  (Eileen Collins, NASA, public domain), cropped to 4:3 and slowly zoomed and panned so that
  successive frames differ, as a live camera's would. Motion-JPEG in AVI, through OpenCV's FFmpeg
  backend, is a codec opencv-python-headless both writes and reads everywhere (its FFmpeg has no
  H.264 encoder); that encoder ignores the quality setting, so the size (about 36 KB a frame) is
  kept under 1.5 MB by the frame count. OpenCV's own MJPEG writer makes twice larger files.
- ``question.wav``: "What should I wear to a business meeting?" spoken by the Piper voice
  en_US-joe-medium (CC0) through :class:`uservlm_ros.engines.tts.TTSEngine`, resampled to 16 kHz
  mono int16 with :func:`uservlm_ros.speech.audio.resample`, with 0.5 s of silence before and 1.0 s
  after.
  Piper draws random noise for each synthesis (its VITS ``noise_scale`` / ``noise_w``), so two runs
  differ; the script sets both to 0 for a repeatable waveform (TTSConfig has no setting for them,
  hence the guarded assignment below).

The SHA-256 of each file is printed; the same OpenCV, Piper and onnxruntime versions give the same
bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uservlm_ros.speech.audio import (  # noqa: E402
    ASR_SAMPLE_RATE,
    float_to_int16,
    resample,
    write_wav,
)

QUESTION = "What should I wear to a business meeting?"
# The visitor's answer to the robot's clarifying question (the ethics review asks first).
REPLY = "Yes, please go ahead."
WIDTH, HEIGHT = 640, 480
FPS = 10
SECONDS = 3.5
SILENCE_BEFORE = 0.5
SILENCE_AFTER = 1.0


def make_video(path: Path) -> None:
    import cv2
    from skimage import data

    photo = data.astronaut()  # 512x512 RGB
    # 4:3 from the top of the picture keeps the face and shoulders.
    crop = photo[: photo.shape[1] * 3 // 4]
    base = cv2.cvtColor(
        cv2.resize(crop, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2BGR
    )
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT)
    )
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV (FFmpeg backend) cannot write Motion-JPEG to {path}")
    frames = int(round(SECONDS * FPS))
    for index in range(frames):
        phase = 2.0 * math.pi * index / frames
        zoom = 1.04 + 0.04 * (
            0.5 - 0.5 * math.cos(phase)
        )  # 1.04 .. 1.08 and back: no borders show
        dx = 10.0 * math.sin(phase)
        dy = 4.0 * math.sin(2.0 * phase)
        matrix = cv2.getRotationMatrix2D((WIDTH / 2.0, HEIGHT / 2.0), 0.0, zoom)
        matrix[0, 2] += dx
        matrix[1, 2] += dy
        frame = cv2.warpAffine(
            base, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        writer.write(frame)
    writer.release()


def make_speech(path: Path, text: str) -> None:
    from uservlm_ros.engines.tts import TTSConfig, TTSEngine

    engine = TTSEngine(TTSConfig(backend="piper"))
    engine.load()
    backend = engine._backend  # noqa: SLF001 - see the module docstring
    if not hasattr(backend, "_syn"):
        raise RuntimeError(
            "the Piper backend changed: cannot switch its noise off for a repeatable take"
        )
    from piper import SynthesisConfig

    backend._syn = SynthesisConfig(
        length_scale=backend._syn.length_scale, noise_scale=0.0, noise_w_scale=0.0
    )
    speech = engine.synthesize(text)
    audio = resample(speech.samples, speech.sample_rate, ASR_SAMPLE_RATE)
    pcm = float_to_int16(np.clip(audio, -1.0, 1.0))
    before = np.zeros(int(SILENCE_BEFORE * ASR_SAMPLE_RATE), dtype=np.int16)
    after = np.zeros(int(SILENCE_AFTER * ASR_SAMPLE_RATE), dtype=np.int16)
    write_wav(path, np.concatenate([before, pcm, after]), ASR_SAMPLE_RATE)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        default=str(REPO / "uservlm_ros" / "data" / "demo"),
        help="folder for person.avi, question.wav and reply.wav",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video, wav, reply = out / "person.avi", out / "question.wav", out / "reply.wav"
    make_video(video)
    make_speech(wav, QUESTION)
    make_speech(reply, REPLY)
    for path in (video, wav, reply):
        print(f"{path}  {path.stat().st_size} bytes  sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
