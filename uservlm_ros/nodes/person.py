"""person_node: who the robot is talking to, with identity kept private (cloud side).

Lifecycle node around :class:`uservlm_ros.engines.person.PersonEngine`; one engine serves the
turns and the stream, so a turn's person id is the one the REP-155 topics show.

- ``uservlm/identify`` (Identify): a turn's own image -> the addressee's person id and the crop
  of the user image. vlm_node calls it for each ask with an image.
- ``uservlm/remember_person`` (RememberPerson) and ``uservlm/forget_person`` (Forget): ethics_node
  calls them when a person agrees to be remembered and when a person is forgotten
  (``/uservlm/forget``, or "forget me").
- The camera stream (``camera/image_raw``, ``.../compressed``) is tracked at ``track_rate_hz``
  and published as REP-155 faces and persons (:mod:`uservlm_ros.ros.rep155`) when hri_msgs can
  be imported.
- ``persons/forgotten`` (std_msgs/String, a person id): a person left the gallery (their session
  expired, or they were forgotten on request). Whoever holds something about them drops it:
  ethics_node their in-memory consents, vlm_node its cached image features of them.

Face templates of remembered persons go to ``store_dir`` (default: ``faces/`` inside ethics_node's
default consent store directory; files 0600, numbers only). No image is ever written.
"""

from __future__ import annotations

import time
from pathlib import Path

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import String

from uservlm_ros.engines.person import PersonConfig
from uservlm_ros.engines.person.geometry import Box
from uservlm_ros.ros import qos, rep155
from uservlm_ros.ros.conversions import (
    check_compressed,
    compressed_is_empty,
    compressed_to_rgb,
    image_is_empty,
    image_to_rgb,
    seconds_to_stamp,
    stamp_to_seconds,
)
from uservlm_ros.ros.engine_node import EngineNode
from uservlm_ros.ros.frame_buffer import FrameBuffer, subscribe_camera
from uservlm_ros.ros.runner import run_node
from uservlm_ros.srv import Forget, Identify, RememberPerson

FORGOTTEN_TOPIC = "persons/forgotten"


def default_store_dir() -> str:
    from uservlm_ros.nodes.ethics import default_store_dir as consent_dir

    return str(Path(consent_dir()) / "faces")


def roi(box: Box | None) -> RegionOfInterest:
    """A pixel box as sensor_msgs/RegionOfInterest (all zero for None)."""
    region = RegionOfInterest()
    if box is not None:
        x0, y0 = int(round(box.x0)), int(round(box.y0))
        region.x_offset, region.y_offset = x0, y0
        region.width = max(int(round(box.x1)) - x0, 0)
        region.height = max(int(round(box.y1)) - y0, 0)
    return region


class PersonNode(EngineNode):
    CONFIG = PersonConfig
    DESCRIPTIONS = {
        "detector": "yunet (libfacedetection CNN: fast, finds small and turned faces) | hog "
        "(dlib)",
        "hog_upsample": "hog only: times the frame is doubled before detection (1 finds faces "
        "from ~40 px)",
        "detect_scale": "The detector sees the frame scaled by this (1 = full size; less is "
        "faster and loses the smallest faces)",
        "min_face_px": "Faces smaller than this many pixels are ignored",
        "min_score": "Detector confidence a face needs, 0..1 (yunet)",
        "max_faces": "At most this many faces per frame, largest first (the rest are counted)",
        "max_yaw": "A face is frontal when the nose sits within this fraction of the eye "
        "distance from the eyes' midpoint (turned faces never found a new person)",
        "match_threshold": "Largest embedding distance at which a face is the same person",
        "max_exemplars": "Embeddings kept per person (more covers more poses and light)",
        "session_ttl_s": "A session person (not remembered) is forgotten this many seconds after "
        "last being seen",
        "addressee": "Whom a turn is for among several faces: largest (frontal face, the "
        "nearest) | center",
        "user_crop": "What the VLM sees: the addressee's face | upper_body | the full frame",
        "face_margin": "face crop: margin on each side, as a fraction of the face size",
        "upper_body_scale": "upper_body crop: side of the square crop, in face sizes",
        "track_rate_hz": "Rate at which the camera stream is tracked (REP-155 topics), Hz",
        "track_iou_min": "Overlap a face needs with a track's last box to continue it",
        "track_max_missed": "A track ends after this many tracked frames without its face",
        "track_signature_min": "Appearance similarity below which a continued track is checked "
        "by embedding (two people swapping places)",
        "track_reverify_s": "A track's person is re-checked by embedding about this often, "
        "seconds",
        "reuse_track_identity": "A turn whose addressee is a recently verified track takes its "
        "person without an embedding of its own",
        "track_max_embeddings": "At most this many embeddings per tracked frame (the rest wait "
        "for the next one)",
    }
    EXTRA_PARAMETERS = {
        "store_dir": (
            "",
            "Face templates of remembered persons; empty = faces/ in ethics_node's default "
            "consent store directory ($XDG_DATA_HOME/uservlm_ros/consent/faces)",
        ),
        "max_frame_age": (
            2.0,
            "Camera frames older than this (seconds) are not tracked; 0 = any age",
        ),
        "publish_rep155": (
            True,
            "Publish REP-155 faces and persons (humans/...) when hri_msgs can be imported",
        ),
        "publish_face_crops": (
            True,
            "Publish humans/faces/<id>/cropped (face images; false: ROIs and ids only)",
        ),
    }

    def __init__(self, **kwargs):
        super().__init__("person_node", **kwargs)
        self.frames = FrameBuffer(2)  # only the newest frame is tracked
        self._camera_group = MutuallyExclusiveCallbackGroup()
        self._track_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self._camera_subscriptions: list = []
        self._track_timer = None
        self._humans: rep155.HumansPublisher | None = None
        self._last_tracked = 0.0  # receive time of the last frame tracked
        self.frames_tracked = self.track_errors = self.forgotten = 0
        self._forgotten = self.create_publisher(String, FORGOTTEN_TOPIC, qos.EVENTS)

    # -- lifecycle ----------------------------------------------------------------------------
    def engine_config(self) -> PersonConfig:
        values = {name: self.param(name) for name in self.config_defaults()}
        values["store_dir"] = self.param("store_dir") or default_store_dir()
        return PersonConfig(**values)

    def load_engine(self, config: PersonConfig):
        from uservlm_ros.engines.person import PersonEngine

        engine = PersonEngine(config, on_forgotten=self._on_forgotten).load()
        for moved in getattr(engine.store, "moved_aside", ()) or ():
            self.get_logger().warning(f"corrupt face template moved aside: {moved}")
        return engine

    def describe_engine(self) -> str:
        if self.engine is None:
            return "no engine"
        counts = self.engine.counts()
        return (
            f"{self.engine.config.detector} faces, {counts['remembered_persons']} remembered "
            f"person(s), templates in {self.engine.config.store_dir}"
        )

    def create_interfaces(self) -> None:
        self._camera_subscriptions = subscribe_camera(self, self.frames, self._camera_group)
        if self.param("publish_rep155"):
            if rep155.available():
                self._humans = rep155.HumansPublisher(self, self.param("publish_face_crops"))
            else:
                self.get_logger().info(
                    "hri_msgs is not installed: no REP-155 topics (faces are still tracked)"
                )
        self._track_timer = self.create_timer(
            1.0 / self.engine.config.track_rate_hz, self.track_tick, self._track_group
        )
        self.serve(Identify, "uservlm/identify", self.on_identify, self._service_group)
        self.serve(
            RememberPerson, "uservlm/remember_person", self.on_remember, self._service_group
        )
        self.serve(Forget, "uservlm/forget_person", self.on_forget, self._service_group)

    def destroy_interfaces(self) -> None:
        if self._track_timer is not None:
            self.destroy_timer(self._track_timer)
            self._track_timer = None
        for subscription in self._camera_subscriptions:
            self.destroy_subscription(subscription)
        self._camera_subscriptions = []
        if self._humans is not None:
            self._humans.close()
            self._humans = None
        super().destroy_interfaces()

    def diagnostic_values(self) -> dict[str, str]:
        values = {
            "frames_received": str(self.frames.received),
            "frames_tracked": str(self.frames_tracked),
            "track_errors": str(self.track_errors),
            "persons_forgotten": str(self.forgotten),
            "rep155": str(self._humans is not None),
        }
        if self.engine is not None:
            values.update({k: str(v) for k, v in self.engine.counts().items()})
        return values

    # -- leaving the gallery ------------------------------------------------------------------
    def _on_forgotten(self, person_id: str) -> None:
        """The engine forgot a session person (not seen for session_ttl_s): tell the others."""
        self._announce(person_id)

    def _announce(self, person_id: str) -> None:
        self.forgotten += 1
        self._forgotten.publish(String(data=person_id))

    # -- the stream ---------------------------------------------------------------------------
    def track_tick(self) -> None:
        """Track the newest camera frame, if a new one came, and publish REP-155."""
        engine = self.engine
        if engine is None:
            return
        frame = self.frames.newest(max_age=self.param("max_frame_age"), now=time.monotonic())
        if frame is None or frame.received <= self._last_tracked:
            engine.expire()  # no new frame: sessions still run out
            return
        self._last_tracked = frame.received
        try:
            result = engine.track(frame.rgb(), frame.stamp)
        except ValueError as error:
            self.track_errors += 1
            if self.track_errors == 1 or self.track_errors % 100 == 0:
                self.get_logger().warning(
                    f"frame on {frame.source} not tracked ({error}); {self.track_errors} so far"
                )
            return
        self.frames_tracked += 1
        self.stage_times.add(track=result.timings["total"])
        if self._humans is not None:
            self._humans.publish(result, seconds_to_stamp(frame.stamp))

    # -- services -----------------------------------------------------------------------------
    @staticmethod
    def _request_image(request: Identify.Request):
        """(RGB array, stamp or None); ValueError for a missing, double or malformed image."""
        has_raw = not image_is_empty(request.image)
        has_compressed = not compressed_is_empty(request.compressed_image)
        if has_raw == has_compressed:
            raise ValueError("set exactly one of image and compressed_image")
        message = request.image if has_raw else request.compressed_image
        stamp = stamp_to_seconds(message.header.stamp) or None
        if has_raw:
            return image_to_rgb(message), stamp
        return compressed_to_rgb(check_compressed(message)), stamp

    def on_identify(self, request: Identify.Request, response: Identify.Response):
        started = time.perf_counter()
        with self.answering(response, "person", bad_request=(ValueError,)):
            rgb, stamp = self._request_image(request)
            turn = self.engine.resolve(rgb, stamp, identify=request.identify)
            response.person_id, response.status = turn.person_id, turn.status
            response.remembered, response.face_id = turn.remembered, turn.face_id
            response.frontal = turn.frontal
            response.faces, response.too_small = turn.faces, turn.too_small
            response.dropped = turn.dropped
            response.face = roi(turn.box)
            response.crop, response.crop_region = turn.crop_kind, roi(turn.crop_box)
        response.identify_seconds = time.perf_counter() - started
        if response.success:
            self.stage_times.add(identify=response.identify_seconds)
        return response

    def on_remember(self, request: RememberPerson.Request, response: RememberPerson.Response):
        from uservlm_ros.engines.person import StoreError

        with self.answering(response, "person", bad_request=(ValueError, StoreError)):
            if not self.engine.remember(request.person_id):
                raise ValueError(
                    f"no person {request.person_id!r} to remember (never seen, or forgotten since)"
                )
            self.get_logger().info(f"{request.person_id} agreed to be remembered")
        return response

    def on_forget(self, request: Forget.Request, response: Forget.Response):
        with self.answering(response, "person", bad_request=(ValueError,)):
            response.existed = bool(self.engine.forget(request.user_id))
            if response.existed:
                self._announce(request.user_id)
        return response


def main(args=None) -> int:
    return run_node(lambda: PersonNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
