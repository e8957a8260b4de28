"""The cloud side (GPU server): ASR, User-VLM, TTS and ethics services.

    ros2 launch uservlm_ros cloud.launch.py [namespace:=pepper1] [params_file:=my.yaml]
    [naoqi:=true]

Arguments (with descriptions): `ros2 launch uservlm_ros cloud.launch.py --show-args`. The nodes,
their parameter files and the model arguments come from uservlm_ros.bringup.graph, the same source
`uservlm up` reads.
"""

from uservlm_ros.bringup.launch_description import generate


def generate_launch_description():
    return generate("cloud")
