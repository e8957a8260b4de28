"""The robot side's plain-Python parts (no rclpy here; the ROS nodes wrap them).

- :mod:`.camera_source`: frames from a device, a GStreamer pipeline or a looped video / image file.
- :mod:`.microphone_source`: 16 kHz mono int16 chunks from a sound card or a WAV file.
- :mod:`.pepper_audio`: naoqi_driver2 AudioBuffer fields -> 16 kHz mono int16, streaming.
- :mod:`.speaker_sink`: plays spoken answers (or writes WAV files) with start / end callbacks,
  reports what it plays (the echo canceller's reference) and stops a turn on request.
- :mod:`.resampler`, :mod:`.backoff`, :mod:`.rate_meter`: the small pieces they share.
"""
