"""uservlm_ros: User-VLM 360 personalised answers for social robots, on ROS 2.

Layout (README.md has it in full): ``nodes`` (one ROS node per file), ``engines`` (the models and
their logic, plain Python, no rclpy), ``model`` (PaliGemma 2 loading, prompt format and MoLE,
shared with ``training/``), ``robot`` (camera, microphone and speaker back ends), ``speech``
(audio and sentence helpers), ``ros`` (conversions, QoS, the lifecycle engine node, the composed
process's seam), ``bringup`` (the node graph and launch descriptions), ``tools`` (the
``uservlm`` command, bags, the benchmark).
"""

# The generated interfaces (uservlm_ros.msg / .srv) are installed into site-packages under this
# same package name. When the source tree shadows the installed package (tests run from the
# repository root), extend the search path so both halves are importable.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
