"""REP-155 (ROS4HRI) faces and persons on topics, from :class:`PersonEngine.track` results.

- ``humans/faces/tracked`` (hri_msgs/IdsList): the live face tracks;
- ``humans/faces/<face_id>/roi`` (hri_msgs/NormalizedRegionOfInterest2D) and
  ``humans/faces/<face_id>/cropped`` (sensor_msgs/Image, rgb8: the face's pixels) per visible face;
- ``humans/persons/tracked`` (hri_msgs/IdsList): the persons with a live track;
- ``humans/persons/<person_id>/face_id`` (std_msgs/String, latched): that person's face track.

Per-id topics are created when their face or person appears and destroyed when it is gone, so
the graph shows only the people in view. Names are relative, as every topic of the package: the
node's namespace moves them (REP-155's ``/humans/...`` in the default namespace). The crops carry
face images: they are published to subscribers only, never written anywhere by this package, and
``uservlm record`` leaves them out of bags by default.

Needs ``hri_msgs`` (``ros-jazzy-hri-msgs``, or the venv build of ``shared/ros2-tools``):
:func:`available` says whether it can be imported.
"""

from __future__ import annotations

from sensor_msgs.msg import Image
from std_msgs.msg import String

from uservlm_ros.ros import qos
from uservlm_ros.ros.conversions import rgb_to_image


def available() -> bool:
    try:
        import hri_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


class HumansPublisher:
    """Publishes one track result after the other; ``close()`` destroys every publisher."""

    def __init__(self, node, publish_crops: bool = True, frame_id: str = "camera"):
        from hri_msgs.msg import IdsList, NormalizedRegionOfInterest2D

        self._node = node
        self._ids, self._roi = IdsList, NormalizedRegionOfInterest2D
        self.publish_crops = publish_crops
        self.frame_id = frame_id
        self._faces_tracked = node.create_publisher(IdsList, "humans/faces/tracked", qos.HUMANS)
        self._persons_tracked = node.create_publisher(
            IdsList, "humans/persons/tracked", qos.HUMANS
        )
        self._faces: dict[str, tuple] = {}  # face id -> (roi publisher, cropped publisher)
        self._persons: dict[str, tuple] = {}  # person id -> (face_id publisher, face id sent)

    @property
    def faces(self) -> tuple[str, ...]:
        """Face ids that have topics now."""
        return tuple(self._faces)

    @property
    def persons(self) -> tuple[str, ...]:
        return tuple(self._persons)

    def publish(self, result, stamp) -> None:
        """One ``TrackResult``; ``stamp`` (builtin_interfaces/Time) is the frame's."""
        node = self._node
        tracked = set(result.tracked)
        for face_id in [f for f in self._faces if f not in tracked]:
            for publisher in self._faces.pop(face_id):
                if publisher is not None:
                    node.destroy_publisher(publisher)
        for face in result.faces:
            if face.face_id not in self._faces:
                base = f"humans/faces/{face.face_id}"
                self._faces[face.face_id] = (
                    node.create_publisher(self._roi, f"{base}/roi", qos.HUMANS),
                    node.create_publisher(Image, f"{base}/cropped", qos.HUMANS)
                    if self.publish_crops
                    else None,
                )
            roi_publisher, crop_publisher = self._faces[face.face_id]
            roi = self._roi()
            roi.header.stamp, roi.header.frame_id = stamp, self.frame_id
            roi.xmin, roi.ymin, roi.xmax, roi.ymax = (float(v) for v in face.roi)
            roi.c = float(face.score)
            roi_publisher.publish(roi)
            if crop_publisher is not None:
                crop_publisher.publish(rgb_to_image(face.crop, stamp, self.frame_id))
        self._faces_tracked.publish(self._list(stamp, result.tracked))

        for person_id in [p for p in self._persons if p not in result.persons]:
            node.destroy_publisher(self._persons.pop(person_id)[0])
        for person_id, face_id in result.persons.items():
            publisher, sent = self._persons.get(person_id, (None, None))
            if publisher is None:
                publisher = node.create_publisher(
                    String, f"humans/persons/{person_id}/face_id", qos.LATCHED
                )
            if face_id != sent:  # latched: sent when it changes
                publisher.publish(String(data=face_id))
            self._persons[person_id] = (publisher, face_id)
        self._persons_tracked.publish(self._list(stamp, tuple(result.persons)))

    def _list(self, stamp, ids):
        message = self._ids(ids=list(ids))
        message.header.stamp, message.header.frame_id = stamp, self.frame_id
        return message

    def close(self) -> None:
        node = self._node
        for publishers in self._faces.values():
            for publisher in publishers:
                if publisher is not None:
                    node.destroy_publisher(publisher)
        for publisher, _ in self._persons.values():
            node.destroy_publisher(publisher)
        node.destroy_publisher(self._faces_tracked)
        node.destroy_publisher(self._persons_tracked)
        self._faces.clear()
        self._persons.clear()
