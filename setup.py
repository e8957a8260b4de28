"""pip route: build this ament_cmake package (interfaces + Python) into a wheel with scikit-build.

    pip install --no-build-isolation .      # from the repository root, inside the venv

scikit-build runs the same CMakeLists.txt that colcon runs. Everything CMake installs outside a
Python package (the generated interface libraries in lib/, share/uservlm_ros/, the ament index
marker) lands in the wheel's data and therefore under ``sys.prefix``, next to the ROS 2 wheels.
The hand-written package is installed by CMake too, so the wheel has a single copy of it.
Build isolation must stay off: the build needs ``ament_package`` and the rosidl generators that
live in the environment (requirements/ros.txt).
"""

import os
import re
import sys
from pathlib import Path

from skbuild import setup

HERE = Path(__file__).resolve().parent

# rosidl finds its generators through the ament index: under pip that index is the venv itself.
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)


def node_executables():
    """`<module>_node` for every uservlm_ros/nodes/<module>.py with a main(), as CMakeLists
    does."""
    scripts = []
    for path in sorted((HERE / "uservlm_ros" / "nodes").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        if re.search(r"\ndef main\(", path.read_text()):
            scripts.append(f"{path.stem}_node = uservlm_ros.nodes.{path.stem}:main")
    return scripts


def drop_ament_egg_info(manifest):
    # ament writes an .egg-info for the generated package; shipped in the wheel, pip would see
    # two distributions named uservlm_ros.
    return [path for path in manifest if ".egg-info" not in path]


setup(
    name="uservlm_ros",
    version="0.1.0",
    description="User-VLM 360 personalised vision-language answers for social robots on ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[],
    cmake_args=[
        f"-DPython3_EXECUTABLE={sys.executable}",
        f"-DCMAKE_PREFIX_PATH={sys.prefix}",
        "-DBUILD_TESTING=OFF",
    ],
    cmake_process_manifest_hook=drop_ament_egg_info,
    entry_points={
        "console_scripts": ["uservlm = uservlm_ros.tools.cli:main", *node_executables()]
    },
)
