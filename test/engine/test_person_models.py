"""The face models load only when their files match the pinned SHA-256."""

from __future__ import annotations

import shutil

import pytest

from uservlm_ros.engines.person import models


def test_every_pinned_model_file_verifies():
    for name in (models.LANDMARKS_5, models.EMBEDDING, models.MMOD):
        assert models.dlib_model(name).name == name
    assert callable(models.load_yunet())


def test_the_non_commercial_68_point_predictor_is_refused():
    with pytest.raises(models.ModelError, match="not one of the models"):
        models.dlib_model("shape_predictor_68_face_landmarks.dat")


def test_a_changed_or_missing_file_fails_with_the_digests(tmp_path):
    copy = tmp_path / models.LANDMARKS_5
    shutil.copyfile(models.dlib_model(models.LANDMARKS_5), copy)
    assert models.verified(copy) == copy
    data = bytearray(copy.read_bytes())
    data[1000] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(
        models.ModelError, match="SHA-256 .* expected " + models.SHA256[models.LANDMARKS_5]
    ):
        models.verified(copy)
    with pytest.raises(models.ModelError, match="missing"):
        models.verified(tmp_path / models.EMBEDDING)
    with pytest.raises(models.ModelError, match="no pinned SHA-256"):
        models.verified(tmp_path / "anything.dat")
