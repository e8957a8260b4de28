"""The launch files and `uservlm up` describe one graph: every executable exists, every parameter
file exists, and every parameter in config/*.yaml (and every model argument) is one the node
declares. The launch files themselves run through the real `ros2 launch` in
test/ros/test_launch_real.py."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from uservlm_ros.bringup.graph import GRAPH, MODEL_ARGUMENTS, config_path, model_overrides, nodes
from uservlm_ros.bringup.launch_description import ARGUMENTS

REPO = Path(__file__).resolve().parents[2]


def declared_parameters(spec, context) -> set[str]:
    """Instantiate the node (no autostart, no model load) and list what it declares."""
    module = importlib.import_module(spec.python_module)
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and obj.__module__ == module.__name__
        and obj.__name__.endswith("Node")
    ]
    assert len(classes) == 1, f"{spec.python_module} must define exactly one *Node class"
    from rclpy.parameter import Parameter

    kwargs = {"context": context}
    if spec.name == "pepper_audio_node":
        from uservlm_ros.msg import (
            AudioChunk,  # stand-in message type: naoqi_bridge_msgs is not here
        )

        node = classes[0](AudioChunk, **kwargs)
    else:
        if spec.name in ("camera_node",):
            kwargs["parameter_overrides"] = [
                Parameter("source", value=str(REPO / "uservlm_ros/data/person.jpg"))
            ]
        node = classes[0](**kwargs)
    try:
        return {name for name in node._parameters if name != "use_sim_time"}
    finally:
        node.destroy_node()


@pytest.fixture(scope="module")
def declared():
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield {spec.name: declared_parameters(spec, context) for spec in GRAPH}
    finally:
        rclpy.try_shutdown(context=context)


def test_every_executable_exists():
    for spec in GRAPH:
        module = importlib.import_module(spec.python_module)
        assert callable(getattr(module, "main", None)), f"{spec.python_module} has no main()"
        installed = Path(sys.prefix) / "lib" / "uservlm_ros" / spec.executable
        assert os.access(installed, os.X_OK), f"ros2 run executable missing: {installed}"
        assert shutil.which(spec.executable, path=str(Path(sys.executable).parent)), (
            spec.executable
        )


def parameter_names(section: dict, prefix: str = ""):
    """Parameter names of a ros__parameters section: nested keys join with dots (rcl's rule)."""
    for key, value in section.items():
        if isinstance(value, dict):
            yield from parameter_names(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_config_files_name_only_declared_parameters(declared):
    by_name = {spec.name: spec for spec in GRAPH}
    for params_file in {spec.params_file for spec in GRAPH}:
        path = config_path(params_file)
        assert path.is_file(), path
        content = yaml.safe_load(path.read_text())
        for key, section in content.items():
            name = key.rsplit("/", 1)[-1]
            assert name in by_name, f"{params_file}: {key} is not a node of the graph"
            assert by_name[name].params_file == params_file, (
                f"{name} is configured in the wrong file"
            )
            unknown = set(parameter_names(section["ros__parameters"])) - declared[name]
            assert not unknown, f"{params_file}: {name} does not declare {sorted(unknown)}"
    for spec in GRAPH:
        content = yaml.safe_load(config_path(spec.params_file).read_text())
        assert f"/**/{spec.name}" in content, f"{spec.name} has no section in {spec.params_file}"


def test_every_config_parameter_has_a_comment():
    for params_file in {spec.params_file for spec in GRAPH}:
        lines = config_path(params_file).read_text().splitlines()
        for number, line in enumerate(lines):
            stripped = line.strip()
            if line.startswith("    ") and ":" in stripped and not stripped.startswith("#"):
                assert lines[number - 1].strip().startswith("#"), (
                    f"{params_file}:{number + 1} {stripped}"
                )


def test_model_arguments_map_to_declared_parameters(declared):
    for argument, (node, parameter, help_text) in MODEL_ARGUMENTS.items():
        assert parameter in declared[node], f"{argument} -> {node}.{parameter} is not declared"
        assert help_text and argument in ARGUMENTS
    assert model_overrides({"adapter": "/x", "asr_model": "", "tts_backend": "piper"}) == {
        "vlm_node": {"adapter": "/x"},
        "tts_node": {"backend": "piper"},
    }


def test_naoqi_variant_swaps_sensors_and_remaps():
    plain = {spec.name for spec in nodes("robot")}
    pepper = {spec.name: spec for spec in nodes("robot", naoqi=True, naoqi_prefix="/naoqi_driver")}
    assert {"camera_node", "microphone_node"} <= plain and "pepper_audio_node" not in plain
    assert (
        "pepper_audio_node" in pepper
        and "camera_node" not in pepper
        and "microphone_node" not in pepper
    )
    assert ("naoqi_audio", "/naoqi_driver/audio") in pepper["pepper_audio_node"].remaps
    assert ("camera/image_raw", "/naoqi_driver/camera/front/image_raw") in pepper[
        "dialogue_node"
    ].remaps
    assert {spec.side for spec in nodes("cloud")} == {"cloud"}
    with pytest.raises(ValueError):
        nodes("moon")


def test_pepper_audio_node_without_naoqi_msgs_says_why():
    result = subprocess.run(
        [sys.executable, "-m", "uservlm_ros.nodes.pepper_audio"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "naoqi_bridge_msgs" in result.stderr
