"""camera_node (robot side): 640x480 frames at 30 Hz from OpenCV -> ``camera/image_raw`` and
``camera/image_raw/compressed`` (JPEG, for the uplink), both with sensor-data QoS.

The source is a device index, a GStreamer pipeline (the Jetson's CSI/USB camera; needs an OpenCV
built with GStreamer, e.g. JetPack's) or a video/image file (looped). A missing or lost device is
retried with backoff; /diagnostics keeps reporting the achieved rate, drops and the last error.
On a real Pepper, naoqi_driver2's ``camera/front/image_raw`` can be remapped in instead.
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from uservlm_ros.robot.camera_source import CameraConfig, CameraSource
from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import rgb_to_compressed, rgb_to_image
from uservlm_ros.ros.diagnostics import ERROR, OK, publish_status
from uservlm_ros.ros.parameters import config_from, dataclass_parameters, declare
from uservlm_ros.ros.runner import run_node

DESCRIPTIONS = {
    "source": 'Device index ("0"), GStreamer pipeline (contains "!"), or a video/image file',
    "width": "Published frame width, pixels",
    "height": "Published frame height, pixels",
    "rate_hz": "Publish rate, frames per second",
    "loop": "Loop a video file at its end",
    "fit": "crop (keep the aspect ratio) or stretch, when the source size differs",
    "retry_initial_s": "First retry delay after the device fails, seconds (doubles up to "
    "retry_max_s)",
    "retry_max_s": "Longest retry delay, seconds",
    "max_failed_reads": "Failed reads in a row after which a live camera counts as lost",
}
EXTRA = {
    "jpeg_quality": (80, "JPEG quality of camera/image_raw/compressed (0-100)"),
    "publish_raw": (True, "Publish camera/image_raw (921,600 bytes a frame)"),
    "publish_compressed": (True, "Publish camera/image_raw/compressed (about 40 KB a frame)"),
    "frame_id": ("camera", "frame_id of the published images"),
}


class CameraNode(Node):
    def __init__(self, **kwargs):
        super().__init__("camera_node", **kwargs)
        declare(self, dataclass_parameters(CameraConfig, DESCRIPTIONS))
        declare(self, EXTRA)
        self.source = CameraSource(config_from(self, CameraConfig, DESCRIPTIONS))
        self._raw = self.create_publisher(Image, "camera/image_raw", qos.CAMERA)
        self._jpeg = self.create_publisher(
            CompressedImage, "camera/image_raw/compressed", qos.CAMERA
        )
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.published = 0
        self._last_status = ""
        self.create_timer(1.0 / max(self.param("rate_hz"), 0.1), self.tick)
        self.create_timer(1.0, self.report)

    def param(self, name):
        return self.get_parameter(name).value

    def tick(self) -> None:
        frame = self.source.read()
        if frame is None:
            return
        stamp = self.get_clock().now().to_msg()
        frame_id = self.param("frame_id")
        if self.param("publish_raw"):
            self._raw.publish(rgb_to_image(frame, stamp, frame_id))
        if self.param("publish_compressed"):
            self._jpeg.publish(
                rgb_to_compressed(frame, self.param("jpeg_quality"), stamp, frame_id)
            )
        self.published += 1

    def report(self) -> None:
        stats = self.source.stats()
        if stats.status != self._last_status:
            problem = stats.last_error if stats.status != "ok" else ""
            message = f"camera {self.param('source')!r}: {stats.status}"
            message += f" ({problem})" if problem else ""
            # One call site per severity: rclpy refuses a call site whose severity changes.
            if stats.status == "error":
                self.get_logger().error(message)
            else:
                self.get_logger().info(message)
            self._last_status = stats.status
        values = dict(stats.key_values())
        values["published"] = self.published
        publish_status(
            self,
            self._diagnostics,
            OK if stats.status == "ok" else ERROR,
            f"camera {stats.status}" + (f": {stats.last_error}" if stats.status != "ok" else ""),
            values,
        )

    def destroy_node(self):
        self.source.close()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(lambda: CameraNode(), args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
