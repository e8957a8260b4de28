"""``uservlm bench BAG``: the spoken loop's latency, replayed from a recording, turn after turn.

The graph runs as in deployment (asr_node, tts_node, vlm_node and ethics_node on the cloud side,
speaker_node and dialogue_node on the robot side, each its own process, or ``--compose``d), except
that a bag (default: the bundled ``uservlm_ros/data/demo_bag``) replaces the camera and the
microphone, played with its original timing, header stamps shifted to "now". ``--attach`` uses a
graph that is already running instead.

Each replay of the bag is one turn: the person asks, the robot answers aloud. The bench waits
until the graph is ready, replays the bag ``--warmup`` times unmeasured and then ``--turns``
times, waiting after each turn until the robot has finished speaking.

The ethics review: the bench pre-consents a dedicated user (``--user-id``, forgotten at the end),
so every measured turn takes the full personalised path; ``--consent anonymous`` measures the
generic path. Speech out is whole by default (the stage decomposition needs the stages to run one
after the other); ``--stream-audio`` measures sentence-by-sentence speech. ``--compare`` runs the
paper's sequential pipeline, the short Whisper window and the streamed pipeline in one run.

Modules: :mod:`.config` (options), :mod:`.graph` (what is started), :mod:`.session` (the
robot-side node), :mod:`.replay` (one turn), :mod:`.vad_track` (when the VAD closes each
utterance), :mod:`.metrics` (the figures and the middleware share), :mod:`.report` (table, CSV,
PNG, JSON), :mod:`.netns` (the shaped link), :mod:`.run` (the command line).
"""
