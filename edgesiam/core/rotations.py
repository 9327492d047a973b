"""Rotations of 3-D sensor axes: random rotations, quaternions and the rotation-vector maps.

Shared by training augmentation (turning a worn device) and the IMU simulator (orientation
trajectories and mounting). numpy only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgesiam.core.arrays import Float64Array

_SMALL_ANGLE = 1e-8


def uniform_rotations(count: int, rng: np.random.Generator) -> Float64Array:
    """``(count, 3, 3)`` rotation matrices distributed uniformly over SO(3) (Haar measure).

    A normalised 4-D Gaussian is a uniform unit quaternion, and unit quaternions cover SO(3)
    uniformly.
    """
    quaternions = rng.standard_normal((count, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    return quaternion_matrices(quaternions)


def bounded_rotations(count: int, max_angle: float, rng: np.random.Generator) -> Float64Array:
    """``(count, 3, 3)`` rotations about uniform random axes by angles uniform in [0, max_angle]."""
    axes = rng.standard_normal((count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    half = rng.uniform(0.0, max_angle, size=(count, 1)) / 2.0
    return quaternion_matrices(np.concatenate([np.cos(half), np.sin(half) * axes], axis=1))


def quaternion_matrices(q: Float64Array) -> Float64Array:
    """Unit quaternions ``(n, 4)`` as ``(w, x, y, z)`` → rotation matrices ``(n, 3, 3)``."""
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def rotation_matrices(rotvecs: npt.ArrayLike) -> Float64Array:
    """Rotation vectors ``(n, 3)`` (axis × angle in radians) → matrices ``(n, 3, 3)`` (Rodrigues)."""
    v = np.asarray(rotvecs, dtype=np.float64).reshape(-1, 3)
    angle = np.linalg.norm(v, axis=1)
    half = angle / 2.0
    # sin(θ/2)/θ without dividing by zero: its limit is 1/2
    factor = np.where(angle > _SMALL_ANGLE, np.sin(half) / np.maximum(angle, _SMALL_ANGLE), 0.5)
    return quaternion_matrices(np.concatenate([np.cos(half)[:, None], factor[:, None] * v], 1))


def rotation_vectors(matrices: npt.ArrayLike) -> Float64Array:
    """Rotation matrices ``(n, 3, 3)`` → rotation vectors ``(n, 3)`` (angles in [0, π))."""
    r = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    skew = np.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], 1)
    cos = np.clip((np.trace(r, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    sin = np.sin(angle)
    factor = np.where(sin > _SMALL_ANGLE, angle / (2.0 * np.maximum(sin, _SMALL_ANGLE)), 0.5)
    result: Float64Array = factor[:, None] * skew
    return result
