"""Node parameters declared from one table: descriptors with ranges and choices, and validation on set.

Every node of this package describes its parameters as a tuple of :class:`ParameterSpec` (name, default,
description, read-only flag, choices or numeric range). :class:`~stereo_depth_ros.ros.node_base.PerceptionNode`
declares them with :meth:`ParameterSpec.descriptor` (so ``ros2 param describe`` shows the description, the
choices and the range) and checks every change with :func:`validate_parameters` before it is applied; the same
check runs at start-up, so a node never runs with a value its table forbids.

Nothing here creates a node; the functions take plain values so they are unit-tested without rclpy spinning.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: default, description, constraints and whether it can change at run time.

    Attributes:
        name: parameter name (``snake_case``).
        default: default value; its Python type (bool, int, float, str) is the parameter's ROS type.
        description: one or two sentences for ``ros2 param describe`` and docs/ros_interface.md.
        read_only: fixed at start-up (``ros2 param set`` is refused).
        choices: allowed string values, or None.
        integer_range: inclusive ``(low, high)`` for an integer parameter, or None.
        float_range: inclusive ``(low, high)`` for a double parameter, or None (a float parameter with a range
            must also be finite).
    """

    name: str
    default: Any
    description: str
    read_only: bool = False
    choices: tuple[str, ...] | None = None
    integer_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None

    def descriptor(self) -> ParameterDescriptor:
        """The ``rcl_interfaces/ParameterDescriptor`` declared for this parameter (description, read-only,
        ``additional_constraints`` listing the choices, ``IntegerRange`` or ``FloatingPointRange``)."""
        constraints = f"one of: {', '.join(self.choices)}" if self.choices else ""
        descriptor = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only,
                                         additional_constraints=constraints)
        if self.integer_range is not None:
            descriptor.integer_range = [IntegerRange(from_value=self.integer_range[0],
                                                     to_value=self.integer_range[1], step=1)]
        if self.float_range is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(self.float_range[0]),
                                                                  to_value=float(self.float_range[1]), step=0.0)]
        return descriptor

    def check(self, value: Any) -> str | None:
        """None when ``value`` satisfies this parameter's choices and range, else the reason (naming it).

        Example:
            >>> ParameterSpec("queue_size", 5, "Queue.", integer_range=(1, 100)).check(0)
            "parameter 'queue_size' must be in [1, 100], got 0"
        """
        if self.choices is not None and value not in self.choices:
            return f"parameter '{self.name}' must be one of {', '.join(self.choices)}, got {value!r}"
        if self.float_range is not None and not math.isfinite(value):
            return f"parameter '{self.name}' must be a finite number, got {value}"
        low, high = self.integer_range or self.float_range or (None, None)
        if low is not None and not low <= value <= high:
            return f"parameter '{self.name}' must be in [{low}, {high}], got {value}"
        return None


def parameter_table(*tables: Iterable[ParameterSpec]) -> dict[str, ParameterSpec]:
    """Join parameter tables into ``{name: spec}`` (in order).

    Raises:
        ValueError: when two tables declare the same name (a subclass may not redeclare a common parameter).
    """
    joined: dict[str, ParameterSpec] = {}
    for table in tables:
        for spec in table:
            if spec.name in joined:
                raise ValueError(f"parameter '{spec.name}' is declared twice")
            joined[spec.name] = spec
    return joined


def validate_parameters(specs: Mapping[str, ParameterSpec], values: Mapping[str, Any]) -> str | None:
    """Check every value against its spec (:meth:`ParameterSpec.check`).

    Args:
        specs: name -> spec (:func:`parameter_table`).
        values: name -> value for (at least) every name in ``specs``.

    Returns:
        None when all are valid, else the first reason (naming the parameter).

    Raises:
        KeyError: when ``values`` lacks a parameter of ``specs``.
    """
    for name, spec in specs.items():
        reason = spec.check(values[name])
        if reason is not None:
            return reason
    return None
