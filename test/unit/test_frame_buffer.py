"""FrameBuffer: a short history of frames; the newest one (with an age limit) and the one nearest
a moment (the end of an utterance); overwritten frames counted as dropped."""

from __future__ import annotations

from uservlm_ros.ros.frame_buffer import Frame, FrameBuffer


def frame(stamp: float, received: float | None = None) -> Frame:
    return Frame(
        stamp=stamp,
        received=stamp if received is None else received,
        message=b"",
        source="camera/image_raw",
        decode=lambda m: m,
    )


def test_history_keeps_the_newest_frames_and_counts_the_overwritten():
    buffer = FrameBuffer(history=2)
    assert buffer.newest() is None and buffer.nearest(1.0) is None
    for stamp in (1.0, 2.0, 3.0, 4.0):
        buffer.add(frame(stamp))
    assert (buffer.received, buffer.dropped, len(buffer)) == (4, 2, 2)
    assert buffer.newest().stamp == 4.0
    assert buffer.nearest(0.0).stamp == 3.0 and buffer.nearest(3.9).stamp == 4.0


def test_newest_is_by_arrival_and_respects_the_age_limit():
    buffer = FrameBuffer(history=4)
    buffer.add(frame(stamp=5.0, received=10.0))
    buffer.add(frame(stamp=1.0, received=11.0))  # an old stamp that arrived last
    assert buffer.newest().stamp == 1.0
    assert buffer.newest(max_age=2.0, now=12.0).stamp == 1.0
    assert buffer.newest(max_age=0.5, now=12.0) is None
    assert buffer.newest(max_age=0, now=100.0).stamp == 1.0  # 0 = any age
