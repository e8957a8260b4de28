"""The cloud side (GPU server): ASR, TTS and User-VLM services.

    ros2 launch uservlm_ros cloud.launch.py [namespace:=pepper1] [params_file:=my.yaml]

The node list and parameter files come from uservlm_ros.graph, the same source `uservlm up --cloud`
reads.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode

from uservlm_ros.graph import PACKAGE, config_path, nodes

SIDE = "cloud"


def generate_launch_description():
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    actions = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of this robot's services (one per robot)"),
        DeclareLaunchArgument("params_file", default_value=str(config_path("cloud.yaml")),
                              description="Parameter YAML for the cloud nodes"),
        # 640x480 frames need the larger shared-memory segments of this profile (see the file).
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                                   default_value=str(config_path("fastdds.xml")))),
    ]
    for spec in nodes(SIDE):
        actions.append(LifecycleNode(package=PACKAGE, executable=spec.executable, name=spec.name,
                                     namespace=namespace, parameters=[params_file], output="screen"))
    return LaunchDescription(actions)
