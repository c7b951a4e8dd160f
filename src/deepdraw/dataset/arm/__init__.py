"""The 4-DoF arm of DeepDraw: forward kinematics, inverse kinematics and joint jerk (original: dataset/pcr_data_utils.py, Arm).

Joint angles ``q = (a, b, c, d)`` are in degrees (elevation plane, shoulder elevation, shoulder
rotation, elbow flexion); lengths in cm (upper arm 33, forearm 26); positions in the shoulder frame
{S} or the world frame {W}. Two IK engines solve the same problem, frame after frame along a
trajectory: the posture nearest (Euclidean norm in degrees) to the previous frame's posture whose
hand is on the target, within the joint limits.

* :func:`ik_reference` is the original method (SLSQP, one frame at a time): slow, and it often stops
  short of the nearest posture. Kept as the reference.
* :func:`ik_batch` solves thousands of trajectories at once: elbow flexion follows from the
  shoulder-hand distance, and the remaining freedom, the swivel of the arm about the shoulder-hand
  axis, is searched in closed form and refined by Newton steps.

Modules: :mod:`.geometry` (lengths, postures, frames, forward kinematics), :mod:`.reference` (the
original SLSQP engine), :mod:`.swivel` (the search along the swivel, the method in its docstring),
:mod:`.batch` (the batched engine and the rebuild from swivel angles), :mod:`.measures` (tracing
error, jerk). Every public name is re-exported here (``from deepdraw.dataset.arm import ik_batch``).
"""

from __future__ import annotations

import logging

from .batch import ik_batch, ik_from_swivel, joints_from_swivel, reach_error
from .geometry import (
    FOREARM_CM,
    Q_MAX,
    Q_MIN,
    Q_START,
    Q_X0,
    REACH_TOL_CM,
    SHOULDER_TO_WORLD,
    UPPER_ARM_CM,
    elbow_flexion_from_distance,
    fk,
    fk_elbow,
    fk_world,
    rot_x,
    rot_y,
    rot_z,
    shoulder_rotation,
    shoulder_to_world,
    world_to_shoulder,
)
from .measures import joint_jerk, tracing_error
from .measures import third_difference as third_difference  # public, outside __all__ as before
from .reference import ik_reference, reach_error_reference

log = logging.getLogger(__name__)

__all__ = [
    "UPPER_ARM_CM",
    "FOREARM_CM",
    "Q_MIN",
    "Q_MAX",
    "Q_START",
    "Q_X0",
    "SHOULDER_TO_WORLD",
    "REACH_TOL_CM",
    "rot_x",
    "rot_y",
    "rot_z",
    "shoulder_rotation",
    "fk",
    "fk_elbow",
    "fk_world",
    "world_to_shoulder",
    "shoulder_to_world",
    "elbow_flexion_from_distance",
    "ik_reference",
    "ik_batch",
    "joints_from_swivel",
    "ik_from_swivel",
    "tracing_error",
    "joint_jerk",
    "reach_error",
    "reach_error_reference",
]
