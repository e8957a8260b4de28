"""Pieces of the ethics engine (User-VLM 360°, §8): ask before personalising on inferred
attributes.

``policy`` loads and validates config/ethics_policy.yaml; ``text`` normalises utterances;
``embedding`` turns sentences into MiniLM vectors; ``classifier`` decides which topic a question is
about and whether it asks for something personal; ``replies`` reads the answer to a clarifying
question; ``consent`` remembers what each person said; ``decision`` combines them. The façade that
the ROS node uses is :mod:`uservlm_ros.engines.ethics.engine`. Nothing here imports rclpy.
"""
