"""/uservlm/ask while ethics_node's consent store sits on a disk that fills up (a real tmpfs,
mounted for the test; skipped where mounting is not permitted): asks keep being answered,
generically (the face withheld) where consent would have to be recorded, /diagnostics reports
the store at ERROR, no record changes, and everything works again once space is freed. In a
namespace of its own: the session's cloud graph serves /uservlm/ask and /uservlm/review too."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus

from graph_probe import Probe
from ros_helpers import start_cloud
from ros_helpers import test_overrides as cloud_overrides
from small_disk import fill, small_disk, snapshot
from uservlm_ros.bringup.graph import nodes
from uservlm_ros.tools.cli import bundled_photo
from uservlm_ros.tools.client import UserVLMClient

ERROR, OK = DiagnosticStatus.ERROR, DiagnosticStatus.OK
NS = "consent_faults"
ETHICS = f"{NS}/ethics_node"  # its diagnostics, not the session graph's ethics_node's


def answered(reply):
    assert reply.response.success, reply.response.error
    return reply.response


def test_asks_are_answered_while_the_consent_disk_is_full(tmp_path, rclpy_context):
    face = bundled_photo().read_bytes()
    with small_disk(tmp_path / "disk") as disk:
        overrides = cloud_overrides(tmp_path)
        overrides["ethics_node"]["store_dir"] = str(disk / "consent")
        specs = [spec for spec in nodes("cloud") if spec.name in ("vlm_node", "ethics_node")]
        graph = start_cloud(
            tmp_path / "logs", overrides, specs=specs, services=("ask", "review"), namespace=NS
        )
        probe = Probe(rclpy_context)
        try:
            with UserVLMClient(node_name="consent_fault_client", namespace=NS) as client:
                ask = lambda question, user: answered(  # noqa: E731
                    client.ask(question, image=face, user_id=user, timeout=60)
                )
                assert ask("What should I eat for lunch today?", "lea").clarification
                assert ask("Yes please", "lea").review_decision == "allow"
                before = snapshot(disk / "consent")

                filler = fill(disk)
                full = ask("What should I wear to a wedding?", "max")
                assert not full.clarification and full.review_decision == "generic"
                assert full.image_source == "withheld" and full.answer.strip()
                assert "consent store unavailable" in full.review_reason
                assert "No space left on device" in full.review_reason
                assert probe.until(lambda: probe.latest_level(ETHICS, ERROR, "consent"), 10), (
                    probe.latest(ETHICS)
                )
                assert probe.value(ETHICS, "consent_store") == "error"
                assert snapshot(disk / "consent") == before, "a record changed on the full disk"

                filler.unlink()
                assert ask("What should I wear to a wedding?", "max").clarification
                assert probe.until(lambda: probe.latest_level(ETHICS, OK), 10)
            assert graph.exited() == {}
            log = (tmp_path / "logs" / "ethics_node.log").read_text()
            assert "consent store unavailable" in log and "consent store works again" in log
        finally:
            probe.close()
            graph.stop()
