"""FrameBuffer: the newest frames, and forwarding them to the buffers of nodes composed with the
subscribing one (vlm_node takes dialogue_node's frames in cloud_node)."""
from __future__ import annotations

import pytest

from uservlm_ros.ros.frame_buffer import Frame, FrameBuffer


def frame(stamp: float) -> Frame:
    return Frame(stamp=stamp, received=stamp, message=b"", source="camera/image_raw", decode=lambda m: m)


def test_forwarded_frames_reach_each_follower_until_it_stops():
    owner, first, second = FrameBuffer(history=2), FrameBuffer(history=4), FrameBuffer(history=4)
    owner.add(frame(1.0))  # before forwarding: the owner's alone
    owner.forward_to(first)
    owner.forward_to(first)  # registering twice forwards once
    owner.forward_to(second)
    for stamp in (2.0, 3.0, 4.0):
        owner.add(frame(stamp))
    assert (owner.received, owner.dropped) == (4, 2)
    assert (first.received, first.dropped) == (3, 0) and (second.received, second.dropped) == (3, 0)
    assert first.newest() is owner.newest() and first.nearest(2.1).stamp == 2.0
    owner.stop_forwarding(first)
    owner.add(frame(5.0))
    assert first.received == 3 and second.received == 4 and second.newest().stamp == 5.0
    owner.stop_forwarding(first)  # not forwarding to it: nothing to stop


def test_a_buffer_cannot_forward_to_itself():
    buffer = FrameBuffer()
    with pytest.raises(ValueError, match="itself"):
        buffer.forward_to(buffer)
