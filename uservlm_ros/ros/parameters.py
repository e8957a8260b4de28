"""ROS parameters from config dataclasses: the dataclass holds the defaults (one source of truth),
the node holds a one-line description per exposed field, YAML overrides both."""

from __future__ import annotations

import dataclasses
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor


def dataclass_parameters(config_cls, descriptions: dict[str, str]) -> dict[str, tuple[Any, str]]:
    """{name: (default, description)} for the fields of ``config_cls`` named in
    ``descriptions``."""
    parameters = {}
    for field in dataclasses.fields(config_cls):
        if field.name in descriptions:
            default = (
                field.default
                if field.default is not dataclasses.MISSING
                else field.default_factory()
            )
            parameters[field.name] = (default, descriptions[field.name])
    missing = set(descriptions) - set(parameters)
    if missing:
        raise ValueError(f"{config_cls.__name__} has no fields {sorted(missing)}")
    return parameters


def declare(node, parameters: dict[str, tuple[Any, str]]) -> None:
    for name, (default, description) in parameters.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description))


def config_from(node, config_cls, names):
    return config_cls(**{name: node.get_parameter(name).value for name in names})
