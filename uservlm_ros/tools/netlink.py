"""A real, rate-limited robot <-> cloud link on one machine: two network namespaces and a veth
pair.

::

    [robot netns]  veth <--- tc tbf, e.g. 100 Mbit/s each way ---> veth  [cloud netns]
     10.77.0.1/30                                                      10.77.0.2/30

The robot side (bag replay, speaker_node, dialogue_node) runs in one namespace and the cloud side
(asr, tts, vlm, ethics) in the other; every byte between them crosses the veth pair, whose two
ends each have a token-bucket filter (``tc qdisc ... tbf``) as root qdisc, so each direction is
shaped to ``rate``. Only the rate is shaped: this kernel has no ``netem``, so **no propagation
delay is added** — the latency measured over the link is serialisation at ``rate`` plus queueing
behind other traffic on it. Each namespace has its own ``lo`` (up) for traffic between the
processes of one side.

DDS across the namespaces: Fast DDS's shared-memory transport cannot reach the other namespace's
participants, so they talk UDPv4 over the veth (``config/fastdds.xml``: SHM + UDPv4).
:meth:`Link.environment` gives each side ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` and
``ROS_STATIC_PEERS=<the other side's address>`` (unicast discovery: nothing depends on
multicast routing inside the namespaces).

Names are unique per run (``uvr-<id>``/``uvc-<id>``, interfaces ``uvr<id>``/``uvc<id>``), the
addresses exist only inside the two namespaces, and :func:`shaped_link` always tears everything
down (deleting a namespace deletes its end of the veth, and so the pair). Needs root
(CAP_NET_ADMIN);
every refused step raises :class:`LinkError` naming the exact command and the kernel's answer.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

ROBOT_ADDRESS = "10.77.0.1"
CLOUD_ADDRESS = "10.77.0.2"
PREFIX_LENGTH = 30


class LinkError(RuntimeError):
    """A step of the link set-up failed: the message names the command and its error."""


def _run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as error:
        raise LinkError(
            f"`{command[0]}` is not installed ({error}); the netns link needs iproute2 (ip, tc)"
        ) from error
    if check and result.returncode != 0:
        raise LinkError(
            f"`{' '.join(command)}` failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result


def parse_rate(rate: str) -> int:
    """tc rate text (``100mbit``, ``20Mbit``, ``500kbit``, ``1gbit``) -> bits per second."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmg]?)(bit|bps)\s*", rate.lower())
    if not match:
        raise ValueError(
            f"rate {rate!r}: expected a number with kbit, mbit or gbit (e.g. 100mbit)"
        )
    value, scale, unit = float(match.group(1)), match.group(2), match.group(3)
    bits = value * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[scale] * (8 if unit == "bps" else 1)
    return int(bits)


@dataclass
class Link:
    rate: str
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    robot_address: str = ROBOT_ADDRESS
    cloud_address: str = CLOUD_ADDRESS
    created: list[str] = field(default_factory=list)  # namespaces that exist now

    @property
    def robot_ns(self) -> str:
        return f"uvr-{self.token}"

    @property
    def cloud_ns(self) -> str:
        return f"uvc-{self.token}"

    @property
    def robot_if(self) -> str:
        return f"uvr{self.token}"

    @property
    def cloud_if(self) -> str:
        return f"uvc{self.token}"

    def exec_prefix(self, side: str) -> list[str]:
        """Command prefix running a program inside the ``robot`` or ``cloud`` namespace."""
        return ["ip", "netns", "exec", self.robot_ns if side == "robot" else self.cloud_ns]

    def environment(self, side: str, env: dict | None = None) -> dict:
        """DDS settings for a process on ``side``: discovery over the veth by unicast to the
        peer."""
        env = dict(os.environ if env is None else env)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
        env["ROS_STATIC_PEERS"] = self.cloud_address if side == "robot" else self.robot_address
        return env

    # -- set-up / tear-down -----------------------------------------------------------------
    def setup(self) -> Link:
        bits = parse_rate(self.rate)
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                raise LinkError(f"`{tool}` not found on PATH: the netns link needs iproute2")
        if os.geteuid() != 0:
            raise LinkError("creating network namespaces needs root (CAP_NET_ADMIN); run as root")
        try:
            for ns in (self.robot_ns, self.cloud_ns):
                _run(["ip", "netns", "add", ns])
                self.created.append(ns)
            _run(
                ["ip", "link", "add", self.robot_if, "type", "veth", "peer", "name", self.cloud_if]
            )
            try:
                _run(["ip", "link", "set", self.robot_if, "netns", self.robot_ns])
                _run(["ip", "link", "set", self.cloud_if, "netns", self.cloud_ns])
            except LinkError:
                _run(["ip", "link", "del", self.robot_if], check=False)
                raise
            for ns, interface, address in (
                (self.robot_ns, self.robot_if, self.robot_address),
                (self.cloud_ns, self.cloud_if, self.cloud_address),
            ):
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
                _run(
                    ["ip", "-n", ns, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", interface]
                )
                _run(["ip", "-n", ns, "link", "set", interface, "up"])
                # Multicast (SUBNET discovery's default) leaves by the veth, the only interface.
                _run(["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", interface])
                _run(
                    [
                        "tc",
                        "-n",
                        ns,
                        "qdisc",
                        "add",
                        "dev",
                        interface,
                        "root",
                        *tbf_arguments(bits),
                    ]
                )
        except BaseException:
            self.teardown()
            raise
        return self

    def teardown(self) -> list[str]:
        """Delete both namespaces (and with them the veth pair). Returns what could not be
        removed."""
        problems = []
        for ns in list(self.created):
            result = _run(["ip", "netns", "del", ns], check=False)
            if result.returncode != 0 and "No such file" not in result.stderr:
                problems.append(f"ip netns del {ns}: {result.stderr.strip()}")
            else:
                self.created.remove(ns)
        # The pair goes with its namespace; if it never left the root namespace, remove it here.
        if _run(["ip", "link", "show", self.robot_if], check=False).returncode == 0:
            _run(["ip", "link", "del", self.robot_if], check=False)
        return problems

    # -- counters ---------------------------------------------------------------------------
    def qdisc_stats(self) -> dict[str, dict[str, int]]:
        """Bytes, packets, drops and overlimits of each side's shaper (``tc -s qdisc``):
        ``robot`` = robot -> cloud (uplink), ``cloud`` = cloud -> robot (downlink)."""
        stats = {}
        for side, ns, interface in (
            ("robot", self.robot_ns, self.robot_if),
            ("cloud", self.cloud_ns, self.cloud_if),
        ):
            text = _run(["tc", "-n", ns, "-s", "qdisc", "show", "dev", interface]).stdout
            match = re.search(
                r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", text
            )
            stats[side] = (
                {
                    "bytes": int(match.group(1)),
                    "packets": int(match.group(2)),
                    "dropped": int(match.group(3)),
                    "overlimits": int(match.group(4)),
                }
                if match
                else {"bytes": 0, "packets": 0, "dropped": 0, "overlimits": 0}
            )
            stats[side].update(udp_counters(ns))
        return stats


def udp_counters(ns: str) -> dict[str, int]:
    """UDP counters of a namespace (/proc/net/snmp): datagrams the receivers' socket buffers had no
    room for (``udp_rcvbuf_errors``) are lost before DDS sees them."""
    text = _run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"]).stdout
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2:
        return {}
    values = dict(zip(rows[0], rows[1]))
    return {
        "udp_in": int(values.get("InDatagrams", 0)),
        "udp_rcvbuf_errors": int(values.get("RcvbufErrors", 0)),
        "udp_in_errors": int(values.get("InErrors", 0)),
    }


def tbf_arguments(bits_per_second: int) -> list[str]:
    """tbf shaping ``bits_per_second``: a 32 KB bucket (at least one rate-tick's worth), and a
    queue
    of 200 ms at the rate (a 921,600-byte raw frame queues, it is not dropped, at >= 40 Mbit/s)."""
    burst = max(32 * 1024, bits_per_second // 8 // 250)
    limit = max(2 * burst, bits_per_second // 8 // 5)
    return ["tbf", "rate", f"{bits_per_second}bit", "burst", str(burst), "limit", str(limit)]


@contextlib.contextmanager
def shaped_link(rate: str = "100mbit"):
    """``with shaped_link("100mbit") as link:`` — set up, yield, always tear down."""
    link = Link(rate=rate)
    link.setup()
    try:
        yield link
    finally:
        problems = link.teardown()
        if problems:
            raise LinkError("tear-down incomplete: " + "; ".join(problems))
