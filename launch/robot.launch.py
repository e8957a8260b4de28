"""The robot side (the Jetson on Pepper): camera, microphone (or naoqi_driver2's), speaker,
dialogue loop.

    ros2 launch uservlm_ros robot.launch.py [namespace:=pepper1] [params_file:=my.yaml]
    [naoqi:=true]

Arguments (with descriptions): `ros2 launch uservlm_ros robot.launch.py --show-args`. The nodes,
their parameter files and the model arguments come from uservlm_ros.bringup.graph, the same source
`uservlm up` reads.
"""

from uservlm_ros.bringup.launch_description import generate


def generate_launch_description():
    return generate("robot")
