"""The whole spoken loop across processes (the README's main job): a WAV and a video go in on
the robot side, a clarifying question and then an answer come out as WAVs; the ethics review's
clarify -> reply -> answer sequence runs through the real loop, for the person resolved from the
face; then a second person steps in, asks the same, and is asked for her own consent."""

from __future__ import annotations

import os
import subprocess
import sys
import wave

from ros_helpers import domain_of_its_own
from uservlm_ros.tools.demo import PLACEHOLDER_WARNING


def test_demo_runs_the_spoken_loop(tmp_path):
    domain = domain_of_its_own(1)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uservlm_ros.tools.cli",
            "demo",
            "--out",
            str(tmp_path),
            "--timeout",
            "240",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, ROS_DOMAIN_ID=domain),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output + "".join(
        p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log")
    )
    heard = [
        line.split("heard:", 1)[1].strip().lower()
        for line in output.splitlines()
        if "heard:" in line
    ]
    assert len(heard) == 3, output
    assert "business meeting" in heard[0] and "go ahead" in heard[1], heard
    assert "business meeting" in heard[2], heard
    persons = [
        line.split("person:", 1)[1].split()[0] for line in output.splitlines() if "person:" in line
    ]
    assert len(persons) == 3 and all(p.startswith("p") for p in persons), output
    assert persons[0] == persons[1] != persons[2], "her reply is hers; the newcomer is another"
    assert output.count("robot asks (ethics review)") == 2, "each visitor is asked for consent"
    assert "robot answers:" in output and PLACEHOLDER_WARNING in output
    assert "Shall I remember you next time?" in output  # offered after her yes
    assert "user image: camera/image_raw" in output  # consent given: the face is used
    spoken = sorted((tmp_path / "speech").glob("*.wav"))
    assert len(spoken) >= 2, spoken  # streamed: one WAV per sentence
    for path in spoken:
        with wave.open(str(path)) as audio:
            assert audio.getnframes() > audio.getframerate() // 2
    assert "first audio out" in output
