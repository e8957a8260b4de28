"""launch/*.launch.py are thin: they call ``generate(side)`` here, which turns the node graph of
:mod:`uservlm_ros.bringup.graph` into launch_ros actions. ``uservlm up`` reads the same graph, so
the node
list, parameter files and model arguments exist once. (launch and launch_ros are imported only
inside ``generate``: they are not installable from PyPI, and nothing else needs them.)
"""

from __future__ import annotations

from uservlm_ros.bringup.graph import MODEL_ARGUMENTS, PACKAGE, config_path, model_overrides, nodes

ARGUMENTS = {
    "namespace": (
        "",
        "Namespace of this robot (one per robot; services become /<ns>/uservlm/...)",
    ),
    "params_file": (
        "",
        "Extra parameter YAML applied after config/cloud.yaml and config/robot.yaml",
    ),
    "naoqi": (
        "false",
        "true on a Pepper running naoqi_driver2: its front camera and microphones replace "
        "camera_node and microphone_node",
    ),
    "naoqi_prefix": ("/naoqi_driver", "Namespace of naoqi_driver2's topics"),
    "respawn": ("false", "true: start each node again when it exits (a crash, kill -9)"),
    "respawn_delay": ("2.0", "Seconds before a node that exited starts again (respawn:=true)"),
    **{
        name: ("", f"{help_text} (empty = config file)")
        for name, (_, _, help_text) in MODEL_ARGUMENTS.items()
    },
}
SIDE_ARGUMENTS = {
    "robot": ("true", "Start the robot side (sensors, speaker, dialogue loop)"),
    "cloud": ("true", "Start the cloud side (ASR, VLM, TTS, ethics services)"),
}


def generate(side: str):
    """A LaunchDescription for ``side``: "robot", "cloud" or "all" (then `robot:=` and `cloud:=`
    arguments choose)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
    from launch.substitutions import EnvironmentVariable, LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    arguments = dict(ARGUMENTS, **(SIDE_ARGUMENTS if side == "all" else {}))

    def nodes_for(context):
        value = {name: LaunchConfiguration(name).perform(context) for name in arguments}
        sides = [
            s
            for s in ("cloud", "robot")
            if side in (s, "all") and value.get(s, "true").lower() == "true"
        ]
        overrides = model_overrides(value)
        respawn = value["respawn"].lower() == "true"
        try:
            respawn_delay = float(value["respawn_delay"])
        except ValueError:
            raise ValueError(
                f"respawn_delay must be a number of seconds, got {value['respawn_delay']!r}"
            ) from None
        actions = []
        for chosen in sides:
            for spec in nodes(
                chosen, naoqi=value["naoqi"].lower() == "true", naoqi_prefix=value["naoqi_prefix"]
            ):
                parameters = [str(config_path(spec.params_file))]
                if value["params_file"]:
                    parameters.append(value["params_file"])
                if spec.name in overrides:
                    parameters.append(overrides[spec.name])
                actions.append(
                    Node(
                        package=PACKAGE,
                        executable=spec.executable,
                        name=spec.name,
                        namespace=value["namespace"],
                        parameters=parameters,
                        remappings=list(spec.remaps),
                        output="screen",
                        respawn=respawn,
                        respawn_delay=respawn_delay,
                    )
                )
        return actions

    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in arguments.items()
            ),
            # 640x480 frames need the larger shared-memory segments of this profile (see the file).
            # Fast DDS 2.x (Jazzy) reads FASTRTPS_DEFAULT_PROFILES_FILE, 3.x (Kilted) FASTDDS_...
            *(
                SetEnvironmentVariable(
                    name, EnvironmentVariable(name, default_value=str(config_path("fastdds.xml")))
                )
                for name in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
            ),
            OpaqueFunction(function=nodes_for),
        ]
    )
