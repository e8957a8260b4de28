"""`uservlm ask`, the pip-only twin of `ros2 service call /uservlm/ask`, against a running cloud
side."""

from __future__ import annotations

import os
import subprocess
import sys
import wave

from uservlm_ros.tools.cli import PLACEHOLDER_WARNING, bundled_photo


def uservlm(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "uservlm_ros.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def test_ask_prints_answer_and_timings(cloud):
    result = uservlm(
        "ask", "What should I wear to a business meeting?", "--image", str(bundled_photo())
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "answer: " in result.stdout
    assert PLACEHOLDER_WARNING in result.stdout
    assert "prefill" in result.stdout and "round trip" in result.stdout


def test_ask_sends_a_jpeg_file_as_it_is(cloud):
    result = uservlm("ask", "What do you see in this picture?", "--image", str(bundled_photo()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "image: request/compressed" in result.stdout, result.stdout


def test_ask_speak_writes_wav(cloud, tmp_path):
    wav = tmp_path / "answer.wav"
    result = uservlm("ask", "Recommend me a movie", "--speak", "--wav", str(wav))
    assert result.returncode == 0, result.stdout + result.stderr
    with wave.open(str(wav)) as audio:
        assert audio.getnframes() > 0 and audio.getsampwidth() == 2
    assert str(wav) in result.stdout


def test_error_response_exits_non_zero(cloud):
    result = uservlm("ask", "   ")
    assert result.returncode == 1
    assert "error: question is empty" in result.stdout


def test_unreachable_service_times_out(cloud):
    result = uservlm("ask", "Anyone there?", "--namespace", "no_such_robot", "--timeout", "3")
    assert result.returncode == 2
    assert "not available" in result.stderr


def test_unreadable_image_is_a_usage_error(tmp_path):
    bad = tmp_path / "face.jpg"
    bad.write_bytes(b"not an image")
    result = uservlm("ask", "Hi", "--image", str(bad))
    assert result.returncode == 64 and "cannot read image" in result.stderr
