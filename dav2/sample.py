"""A sample scene dav2 renders itself, with its true depth: the default input of dav2-run.

No photograph ships with the package (the upstream examples are not ours to copy). Instead a
small ray caster draws a room with a checkered floor, a back wall and three spheres, lit by
one light, and returns the true z-depth of every pixel in metres. Being exact, it also serves
tests: a depth model's output can be compared with it (after alignment, for relative models).
"""

import numpy as np

SAMPLE_NAME = "sample"
_FOCAL = 500.0
_CAMERA_HEIGHT = 1.5
_BACK_WALL_Z = 12.0
_SPHERES = (  # centre (x, y, z) with y pointing down, radius, BGR colour
    ((-1.6, 0.7, 4.0), 0.8, (60, 80, 220)),
    ((1.2, 0.9, 6.0), 0.6, (200, 140, 40)),
    ((0.2, 0.5, 9.0), 1.0, (70, 180, 90)),
)


def _camera_rays(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(xs - width / 2) / _FOCAL, (ys - height / 2) / _FOCAL, np.ones_like(xs)], axis=-1)
    return rays  # z component is 1, so the hit distance along a ray is its z-depth


def render_sample(height: int = 480, width: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """(BGR uint8 image, float32 z-depth in metres) of the sample scene."""
    rays = _camera_rays(height, width)
    depth = np.full((height, width), _BACK_WALL_Z)
    normal = np.zeros((height, width, 3))
    normal[..., 2] = -1.0
    albedo = np.empty((height, width, 3))
    albedo[:] = (170, 190, 200)

    down = rays[..., 1] > 1e-6
    floor_z = np.where(down, _CAMERA_HEIGHT / np.where(down, rays[..., 1], 1.0), np.inf)
    on_floor = floor_z < depth
    depth = np.where(on_floor, floor_z, depth)
    normal[on_floor] = (0.0, -1.0, 0.0)
    floor_x = rays[..., 0] * depth
    checker = (np.floor(floor_x * 1.5) + np.floor(depth * 1.5)) % 2
    albedo[on_floor] = np.where(checker[on_floor, None] > 0, (90, 90, 100), (210, 210, 220))

    for centre, radius, colour in _SPHERES:
        c = np.array(centre)
        b = rays @ c
        a = np.sum(rays * rays, axis=-1)
        disc = b * b - a * (c @ c - radius * radius)
        hit = disc > 0
        t = np.where(hit, (b - np.sqrt(np.where(hit, disc, 0.0))) / a, np.inf)
        closer = hit & (t < depth)
        depth = np.where(closer, t, depth)
        points = rays[closer] * t[closer, None]
        normal[closer] = (points - c) / radius
        albedo[closer] = colour

    light = np.array([-0.4, -1.0, -0.5])
    light /= np.linalg.norm(light)
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0.0, 1.0)
    image = np.clip(albedo * shade[..., None], 0, 255).astype(np.uint8)
    return image, depth.astype(np.float32)
