"""Synthetic downstream domains of the benchmark (issue 15): shifted away from the pretraining data.

The tiny foundation SAM was pretrained on ``synthetic.render_shapes``: a few large, clearly
contrasted shapes (solid, gradient or textured fills) over a textured background, mild blur and
noise, half grey, half colour. Each domain below departs from that in the way one of the paper's
domain families departs from natural images:

* ``sonar`` (forward-looking sonar, like SONAR / marine debris): grey, a fan-shaped field of view,
  range fall-off, heavy multiplicative speckle (gamma-distributed, 1-2 looks); each object shows a
  bright highlight on its near face while the rest of it returns little more than the seabed,
  and casts an acoustic shadow; instances are the whole objects, never their shadows.
* ``ct`` (abdominal CT, like ADOME / SPLEN): grey, a body with a fat rim and a bright spine, and
  3-6 organs that *touch* each other (a noise-warped Voronoi partition of one region) with only
  low contrast: each organ 2-7 % of the grey range above or below the tissue around it, so
  neighbours differ by 0-14 %; Gaussian noise and blur on top; instances are the organs.
* ``aerial`` (remote sensing, like NWPU / SSDD): colour, many small objects (10-20 x 5-9 px vehicles
  in rows, with cast shadows) densely packed on fields, roads and tree clutter.

Every image is a pure function of ``(domain, seed, split, index)``: its generator is
``numpy.random.default_rng([TAG, domain code, seed, split code, index])``, so the splits draw
from disjoint seed streams by construction (and from none the pretraining's ``[seed, index]``
streams use). ``write_domain`` renders a domain once into the project's folder layout
(``layout``: images/*.png, masks/*.png label images, splits/{train,val,test}.txt, dataset.json
written last); train is a fixed number of images (a small PEFT set), val and test grow until
they hold a fixed number of instances (test: at least 1,000).

    python -m cobot_lib.data prepare sonar ct aerial      # into <data dir>/benchmark/<domain>
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

from .demo import data_dir
from .layout import read_dataset_json, write_dataset_json, write_image, write_mask, write_splits

__all__ = [
    "DOMAINS",
    "DomainSpec",
    "GENERATOR_VERSION",
    "domain_root",
    "ensure_domain",
    "render",
    "write_domain",
]

TAG = 0x15B3  # first word of every domain generator's seed: apart from [seed, index] streams
GENERATOR_VERSION = 1  # bump when a renderer changes: a prepared set of another version is stale
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
Render = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise (size, size) in [-1, 1]: a Gaussian (cells + 1)^2 grid, bilinearly upsampled
    (as two small matrix products: W grid W^T, W the (size, cells + 1) interpolation weights)."""
    grid = rng.standard_normal((cells + 1, cells + 1))
    t = np.linspace(0, cells, size)
    left = np.minimum(t.astype(int), cells - 1)
    weights = np.zeros((size, cells + 1))
    weights[np.arange(size), left] = 1 - (t - left)
    weights[np.arange(size), left + 1] = t - left
    out = weights @ grid @ weights.T
    return out / (np.abs(out).max() + 1e-9)


def _blob(rng: np.random.Generator, size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """A smooth star-shaped blob: radius = a low-order Fourier series of the angle.

    The series stays below 1.6 x ``radius``, so only that window around the centre is evaluated.
    """
    coefficients = [(rng.uniform(0, 0.35 / h), rng.uniform(0, 6.3)) for h in range(2, 5)]
    reach = 1.6 * radius + 1
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, size)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, size)
    mask = np.zeros((size, size), bool)
    if y0 >= y1 or x0 >= x1:
        return mask
    dy, dx = np.mgrid[y0:y1, x0:x1] - np.array([cy, cx])[:, None, None]
    theta = np.arctan2(dy, dx)
    r = 1 + sum(a * np.cos(h * theta + p) for h, (a, p) in enumerate(coefficients, start=2))
    mask[y0:y1, x0:x1] = np.hypot(dy, dx) <= radius * r
    return mask


def _rectangle(size: int, cy: float, cx: float, length: float, width: float, angle: float):
    """A rotated rectangle (boolean mask) centred at (cy, cx)."""
    u = np.array([np.cos(angle), np.sin(angle)]) * length / 2
    v = np.array([-np.sin(angle), np.cos(angle)]) * width / 2
    corners = [(cx + a * u[0] + b * v[0], cy + a * u[1] + b * v[1]) for a, b in
               ((1, 1), (1, -1), (-1, -1), (-1, 1))]  # fmt: skip
    mask = np.zeros((size, size), bool)
    rr, cc = draw_polygon([c[1] for c in corners], [c[0] for c in corners], shape=mask.shape)
    mask[rr, cc] = True
    return mask


def render_sonar(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward-looking sonar: speckled fan, bright objects, acoustic shadows (module doc)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    oy, ox = size + 8.0, size / 2  # the transducer sits just below the bottom edge
    dist, ang = np.hypot(yy - oy, xx - ox), np.arctan2(xx - ox, oy - yy)
    half = rng.uniform(0.5, 0.65)
    fan = (np.abs(ang) <= half) & (dist >= 24) & (dist <= size + 4)
    image = (0.22 + 0.1 * _smooth(rng, size, 6)) * (1.1 - 0.5 * dist / size)
    labels = np.zeros((size, size), np.uint16)
    bins = np.clip(((ang + half) / (2 * half) * 400).astype(int), 0, 399)
    objects: list[tuple[np.ndarray, float]] = []
    target = int(rng.integers(2, 7))
    for _ in range(4 * target):  # attempts
        r0, a0 = rng.uniform(50, size - 20), rng.uniform(-0.75, 0.75) * half
        cy, cx = oy - r0 * np.cos(a0), ox + r0 * np.sin(a0)
        m = _blob(rng, size, cy, cx, rng.uniform(7, 20)) & fan
        if m.sum() < 120 or (_grow(m, 4) & (labels > 0)).any():
            continue
        objects.append((m, rng.uniform(0.45, 0.9)))
        labels[m] = len(objects)
        if len(objects) == target:
            break
    for m, _ in objects:  # shadows first: they darken the seabed, not other objects
        far = np.full(400, np.inf)
        np.minimum.at(far, bins[m], -dist[m])
        far = -far
        length = rng.uniform(20, 60)
        image[(dist > far[bins]) & (dist < far[bins] + length) & fan] *= rng.uniform(0.05, 0.2)
    texture = _smooth(rng, size, 12)
    for m, level in objects:  # the near face returns a highlight, the rest barely the seabed's
        near = dist <= np.percentile(dist[m], rng.uniform(20, 45))
        body = image[m] * rng.uniform(1.0, 1.6) * (1 + 0.3 * texture[m])
        image[m] = np.where(near[m], level, body)
    looks = rng.uniform(1.0, 2.0)
    image = image * rng.gamma(looks, 1 / looks, image.shape)
    image = ndimage.gaussian_filter(image, rng.uniform(0.4, 0.9)) * fan
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), labels


def render_ct(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Abdominal CT: touching organs with low mutual contrast (module doc)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    c = size / 2 + rng.uniform(-6, 6, 2)
    ay, ax = rng.uniform(0.34, 0.42) * size, rng.uniform(0.42, 0.48) * size
    ell = ((yy - c[0]) / ay) ** 2 + ((xx - c[1]) / ax) ** 2
    body, rim = ell <= 1, ell > rng.uniform(0.7, 0.85)
    tissue = rng.uniform(0.4, 0.5)
    image = np.where(body, np.where(rim, tissue - 0.15, tissue), 0.02)
    spine = np.hypot(yy - (c[0] + 0.7 * ay), xx - c[1]) <= rng.uniform(9, 14)
    image[spine] = 0.9
    region = _blob(rng, size, c[0] - 0.1 * ay, c[1], rng.uniform(0.55, 0.7) * ay) & body & ~rim
    region &= ~ndimage.binary_dilation(spine, iterations=3)
    k = int(rng.integers(3, 7))
    inside = np.argwhere(region)
    seeds = inside[rng.choice(len(inside), k, replace=False)]
    dists = [np.hypot(yy - sy, xx - sx) + 14 * _smooth(rng, size, 5) for sy, sx in seeds]
    owner = np.argmin(np.stack(dists), axis=0) + 1
    labels = np.where(region, owner, 0).astype(np.uint16)
    for value in range(1, k + 1):
        part = labels == value
        if part.sum() < 250:
            labels[part] = 0
            continue
        level = tissue + rng.choice([-1, 1]) * rng.uniform(0.02, 0.07)
        image[part] = level + 0.02 * _smooth(rng, size, 10)[part]
    labels = _relabel(labels)
    image = image + rng.normal(0, rng.uniform(0.03, 0.06), image.shape)
    image = ndimage.gaussian_filter(image, rng.uniform(0.6, 1.2))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), labels


def render_aerial(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Remote sensing: many small vehicles in rows on fields, roads and trees (module doc)."""
    base = rng.uniform([0.25, 0.3, 0.15], [0.5, 0.55, 0.4])
    image = base[:, None, None] + 0.08 * _smooth(rng, size, 16)[None]
    for _ in range(int(rng.integers(3, 8))):  # fields
        y0, x0 = rng.integers(0, size - 30, 2)
        h, w = rng.integers(30, 120, 2)
        patch = image[:, y0 : y0 + h, x0 : x0 + w]
        texture = _smooth(rng, size, 24)[: patch.shape[1], : patch.shape[2]]
        patch[...] = rng.uniform(0.2, 0.6, 3)[:, None, None] + 0.06 * texture[None]
    roads = []
    for _ in range(int(rng.integers(1, 4))):
        angle = rng.choice([0.0, np.pi / 2]) + rng.uniform(-0.2, 0.2)
        road = _rectangle(
            size, *rng.uniform(40, size - 40, 2), 3 * size, rng.uniform(10, 22), angle
        )
        image[:, road] = rng.uniform(0.45, 0.65)
        roads.append(angle)
    for _ in range(int(rng.integers(10, 40))):  # trees: unlabelled clutter
        tree = _blob(rng, size, *rng.uniform(0, size, 2), rng.uniform(3, 8))
        image[:, tree] = rng.uniform([0.05, 0.15, 0.05], [0.15, 0.3, 0.12])[:, None]
    labels = np.zeros((size, size), np.uint16)
    taken = np.zeros((size, size), bool)
    texture = _smooth(rng, size, 32)
    for _ in range(int(rng.integers(3, 7))):  # rows of vehicles
        angle = rng.choice(roads) + rng.choice([0.0, np.pi / 2]) + rng.uniform(-0.1, 0.1)
        y, x = rng.uniform(12, size - 12, 2)
        length, width = rng.uniform(10, 20), rng.uniform(5, 9)
        step = np.array([np.sin(angle + np.pi / 2), np.cos(angle + np.pi / 2)])
        for _ in range(int(rng.integers(3, 9))):
            car = _rectangle(size, y, x, length, width, angle)
            y, x = np.array([y, x]) + step * (width + rng.uniform(2, 5))
            if car.sum() < 40 or (car & taken).any() or rng.random() < 0.15:
                continue
            shadow = np.roll(car, (2, 2), axis=(0, 1)) & ~car
            image[:, shadow] *= 0.4
            image[:, car] = rng.uniform(0, 1, 3)[:, None] * (1 + 0.1 * texture[car])
            labels[car] = labels.max() + 1
            taken |= _grow(car, 2)
    image = ndimage.gaussian_filter(image, (0, *[rng.uniform(0.4, 0.9)] * 2))
    image = image + rng.normal(0, 0.02, image.shape)
    rgb = (np.clip(image, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
    return rgb, _relabel(labels)


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` dilated by ``px`` pixels (3 x 3 steps), computed on its bounding box only."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    out = np.zeros_like(mask)
    if rows.size == 0:
        return out
    y0, x0 = max(rows[0] - px, 0), max(cols[0] - px, 0)
    y1, x1 = rows[-1] + px + 1, cols[-1] + px + 1
    out[y0:y1, x0:x1] = ndimage.binary_dilation(mask[y0:y1, x0:x1], iterations=px)
    return out


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..K in increasing order of value (0 stays background)."""
    values = np.unique(labels[labels > 0])
    lut = np.zeros(int(labels.max()) + 1, np.uint16)
    lut[values] = np.arange(1, len(values) + 1)
    return lut[labels]


@dataclass(frozen=True)
class DomainSpec:
    """A domain: its renderer, what it imitates, and its split sizes.

    train_images: a fixed number of images (a small PEFT set); val_instances / test_instances:
    those splits grow image by image until they hold at least this many instances.
    """

    name: str
    code: int
    render: Render
    domain: str  # dataset.json "domain": medical | natural | remote_sensing
    metric: str  # dataset.json "metric": dsc | miou
    shift: str
    train_images: int = 32
    val_instances: int = 300
    test_instances: int = 1000


DOMAINS: dict[str, DomainSpec] = {
    d.name: d
    for d in (
        DomainSpec("sonar", 1, render_sonar, "remote_sensing", "miou",
                   "forward-looking sonar: fan, range fall-off, gamma speckle (1-2 looks), "
                   "objects seen as a bright near-face highlight over a body barely above the "
                   "seabed, acoustic shadows behind them"),
        DomainSpec("ct", 2, render_ct, "medical", "dsc",
                   "abdominal CT: 3-6 touching organs, each 2-7% of the grey range off the tissue "
                   "around it (neighbours differ by 0-14%), "
                   "Gaussian noise and blur, bright spine and dark fat rim as distractors"),
        DomainSpec("aerial", 3, render_aerial, "remote_sensing", "miou",
                   "remote sensing: dense rows of small vehicles (10-20 x 5-9 px), cast shadows "
                   "on fields, roads and tree clutter"),
    )
}  # fmt: skip


def _spec(name: str) -> DomainSpec:
    if name not in DOMAINS:
        raise ValueError(f"unknown benchmark domain {name!r}; expected one of {list(DOMAINS)}")
    return DOMAINS[name]


def render(
    name: str, seed: int, split: str, index: int, size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W) or (H, W, 3), label image uint16 (H, W)) of one item, deterministic."""
    spec = _spec(name)
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {list(SPLIT_CODES)}, got {split!r}")
    rng = np.random.default_rng([TAG, spec.code, int(seed), SPLIT_CODES[split], int(index)])
    return spec.render(rng, size)


def domain_root(name: str) -> Path:
    """``<data dir>/benchmark/<name>`` (data dir: ``$COBOT_DATA`` or the repository's data/)."""
    return data_dir() / "benchmark" / _spec(name).name


def write_domain(
    name: str,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    size: int = 256,
    sizes: tuple[int, int, int] | None = None,
) -> Path:
    """Render domain ``name`` into ``root`` (default ``domain_root``), replacing what is there.

    ``sizes`` = (train images, val instances, test instances) overrides the domain's (tests).
    dataset.json (written last) records the generator, seed, version, shift and the counts.
    """
    spec = _spec(name)
    root = Path(root) if root is not None else domain_root(name)
    train, val, test = sizes or (spec.train_images, spec.val_instances, spec.test_instances)
    for sub in ("images", "masks", "splits"):
        shutil.rmtree(root / sub, ignore_errors=True)
    (root / "dataset.json").unlink(missing_ok=True)
    splits: dict[str, list[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    digests = hashlib.sha256()
    for split, images, instances in (("train", train, 0), ("val", 0, val), ("test", 0, test)):
        names, total, index = [], 0, 0
        while index < images or total < instances:
            image, labels = render(name, seed, split, index, size)
            item = f"{name}_{split}_{index:05d}"
            write_image(root / "images" / f"{item}.png", image)
            write_mask(root / "masks" / item, labels)
            digests.update(image.tobytes() + labels.tobytes())
            names.append(item)
            total += int(labels.max())
            index += 1
        splits[split] = names
        counts[split] = {"images": len(names), "instances": total}
    write_splits(root, splits, overwrite=True)
    write_dataset_json(root, {
        "name": f"benchmark:{name}", "domain": spec.domain, "metric": spec.metric,
        "format": "folder", "generator": f"cobot_lib.data.domains.render_{name}",
        "generator_version": GENERATOR_VERSION, "seed": seed, "image_size": size,
        "shift": spec.shift, "counts": counts, "sha256": digests.hexdigest(),
    })  # fmt: skip
    return root


def ensure_domain(name: str, root: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """The prepared domain at ``root`` (default ``domain_root``): rendered when missing or when
    its dataset.json records another generator version or seed."""
    root = Path(root) if root is not None else domain_root(name)
    info = read_dataset_json(root)
    if info.get("generator_version") == GENERATOR_VERSION and info.get("seed") == seed:
        return root
    if info:
        print(f"{root}: prepared with {json.dumps({k: info.get(k) for k in ('generator_version', 'seed')})}, "  # noqa: E501
              f"rebuilding with version {GENERATOR_VERSION}, seed {seed}")  # fmt: skip
    return write_domain(name, root, seed)
