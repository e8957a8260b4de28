"""uservlm_ros: User-VLM 360 personalised answers for social robots, on ROS 2.

Layout: ``engines`` (plain Python models, no rclpy), ``vlm`` (prompt format, model loading and
MoLE,
shared with ``training/``), ``ros`` (message conversions and QoS), ``nodes`` (thin lifecycle
nodes),
``cli`` (the ``uservlm`` command).
"""

# The generated interfaces (uservlm_ros.msg / .srv) are installed into site-packages under this
# same package name. When the source tree shadows the installed package (tests run from the
# repository root), extend the search path so both halves are importable.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
