"""Procedurally drawn, THINGS-like stimulus images for the synthetic dataset.

Images are grouped into concepts. Concepts belong to a handful of *families* (a stand-in for
superordinate categories) that share shapes, textures and a colour region, which gives the image
set semantic structure across concepts. Exemplars of one concept vary in low-level properties
(colour, texture frequency and phase, position, scale, rotation, object count, background), so
concept identity is only recoverable from mid- and high-level features, as with real photographs.

Everything is deterministic: an image depends only on the generator seed and its own indices.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "ellipse", "hexagon", "bars", "blob")
TEXTURES = ("solid", "stripes", "checker", "dots", "noise", "radial")
N_FAMILIES = 10
_SUPERSAMPLE = 2  # shapes are drawn at 2x and downsampled for smooth edges


@dataclass(frozen=True)
class ConceptStyle:
    """The parameters every exemplar of one concept shares (before per-exemplar jitter)."""

    shapes: tuple[str, str]
    textures: tuple[str, str]
    hue: float
    hue2: float
    saturation: float
    value: float
    log_freq: float
    orientation: float
    bg_hue: float
    bg_value: float
    count: int
    size: float
    blob: tuple[float, ...]


def family_priors(seed: int) -> list[dict]:
    """Draw the family-level priors (shared shapes, textures, hue, frequency, background)."""
    rng = np.random.default_rng([seed, 0])
    families = []
    for _ in range(N_FAMILIES):
        families.append(
            {
                "shapes": tuple(rng.choice(SHAPES, size=2, replace=False)),
                "textures": tuple(rng.choice(TEXTURES, size=2, replace=False)),
                "hue": float(rng.uniform()),
                "log_freq": float(rng.uniform(np.log(2.0), np.log(12.0))),
                "bg_value": float(rng.uniform(0.2, 0.85)),
            }
        )
    return families


def concept_style(seed: int, split: int, index: int, families: list[dict]) -> ConceptStyle:
    """Draw one concept from the prior; ``split`` keeps training and test concepts apart."""
    rng = np.random.default_rng([seed, 1, split, index])
    family = families[int(rng.integers(len(families)))]
    return ConceptStyle(
        shapes=family["shapes"] if rng.uniform() < 0.5 else family["shapes"][::-1],
        textures=family["textures"] if rng.uniform() < 0.5 else family["textures"][::-1],
        hue=(family["hue"] + rng.normal(0, 0.08)) % 1.0,
        hue2=float(rng.uniform()),
        saturation=float(rng.uniform(0.45, 1.0)),
        value=float(rng.uniform(0.5, 1.0)),
        log_freq=family["log_freq"] + float(rng.normal(0, 0.25)),
        orientation=float(rng.uniform(0, np.pi)),
        bg_hue=float(rng.uniform()),
        bg_value=float(np.clip(family["bg_value"] + rng.normal(0, 0.1), 0.05, 0.95)),
        count=int(rng.integers(1, 4)),
        size=float(rng.uniform(0.16, 0.3)),
        blob=tuple(rng.normal(0, 0.18, size=6)),
    )


def draw_image(style: ConceptStyle, seed: int, split: int, concept: int, exemplar: int, size: int = 128) -> np.ndarray:
    """Draw one exemplar of ``style`` as an ``(size, size, 3)`` uint8 RGB array."""
    rng = np.random.default_rng([seed, 2, split, concept, exemplar])
    grid = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    canvas = _background(style, rng, xx, yy)

    count = int(np.clip(style.count + rng.integers(-1, 2) * (rng.uniform() < 0.25), 1, 3))
    hue = (style.hue + rng.normal(0, 0.03)) % 1.0
    colour_a = np.array(colorsys.hsv_to_rgb(hue, style.saturation, style.value))
    colour_b = np.array(colorsys.hsv_to_rgb(style.hue2, style.saturation * 0.7, 1 - 0.6 * style.value))
    freq = float(np.exp(style.log_freq + rng.normal(0, 0.15)))
    angle = style.orientation + rng.normal(0, 0.3)
    for _ in range(count):
        shape = style.shapes[0] if rng.uniform() < 0.75 else style.shapes[1]
        texture = style.textures[0] if rng.uniform() < 0.75 else style.textures[1]
        scale = style.size * float(np.exp(rng.normal(0, 0.15))) / np.sqrt(count)
        centre = rng.uniform(0.2 + scale * 0.5, 0.8 - scale * 0.5, size=2)
        rotation = style.orientation + rng.normal(0, 0.4)
        mask = _shape_mask(shape, centre, scale, rotation, style.blob, size)
        pattern = _texture(texture, xx, yy, freq, angle, rng, centre)[..., None]
        fill = colour_a * (1 - pattern) + colour_b * pattern
        canvas = canvas * (1 - mask[..., None]) + fill * mask[..., None]

    canvas = canvas + rng.normal(0, 0.015, size=canvas.shape)
    return (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)


def _background(style: ConceptStyle, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    hue = (style.bg_hue + rng.normal(0, 0.05)) % 1.0
    value = float(np.clip(style.bg_value + rng.normal(0, 0.05), 0, 1))
    start = np.array(colorsys.hsv_to_rgb(hue, 0.25, value))
    end = np.array(colorsys.hsv_to_rgb((hue + 0.1) % 1.0, 0.3, value * rng.uniform(0.6, 1.0)))
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * (xx - 0.5) + np.sin(direction) * (yy - 0.5)) + 0.5
    ramp = np.clip(ramp, 0, 1)[..., None]
    return start * (1 - ramp) + end * ramp


def _polygon(shape: str, blob: tuple[float, ...]) -> np.ndarray:
    """Vertices of a shape of radius ~1 around the origin, as (n, 2)."""
    if shape == "blob":
        theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radius = 1 + sum(a * np.cos((k + 2) * theta + k) for k, a in enumerate(blob))
        return np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1)
    if shape == "ellipse":
        theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(theta), 0.55 * np.sin(theta)], 1)
    if shape == "star":
        theta = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radius * np.sin(theta), -radius * np.cos(theta)], 1)
    if shape == "cross":
        a, b = 1.0, 0.33
        return np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a),
                         (-b, b), (-a, b), (-a, -b), (-b, -b)])
    sides = {"triangle": 3, "square": 4, "hexagon": 6}[shape]
    theta = np.linspace(0, 2 * np.pi, sides, endpoint=False) + np.pi / sides
    return np.stack([np.cos(theta), np.sin(theta)], 1)


def _shape_mask(shape: str, centre: np.ndarray, scale: float, rotation: float, blob: tuple[float, ...], size: int) -> np.ndarray:
    """Soft-edged mask in [0, 1] of one shape, as (size, size) float."""
    big = size * _SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = centre * big
    r = scale * big
    if shape in ("circle", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if shape == "ring":
            inner = 0.55 * r
            draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif shape == "bars":
        rot = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
        for offset in (-0.6, 0.0, 0.6):
            bar = np.array([(-0.18 + offset, -1), (0.18 + offset, -1), (0.18 + offset, 1), (-0.18 + offset, 1)])
            draw.polygon([tuple(p) for p in (bar @ rot.T) * r + (cx, cy)], fill=255)
    else:
        rot = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
        points = (_polygon(shape, blob) @ rot.T) * r + (cx, cy)
        draw.polygon([tuple(p) for p in points], fill=255)
    small = mask.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _texture(kind: str, xx: np.ndarray, yy: np.ndarray, freq: float, angle: float,
             rng: np.random.Generator, centre: np.ndarray) -> np.ndarray:
    """Pattern field in [0, 1] that mixes the two object colours."""
    phase = rng.uniform(0, 2 * np.pi)
    u = np.cos(angle) * xx + np.sin(angle) * yy
    v = -np.sin(angle) * xx + np.cos(angle) * yy
    if kind == "solid":
        return np.zeros_like(xx)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * freq * u + phase)
    if kind == "checker":
        return (np.sin(2 * np.pi * freq * u + phase) * np.sin(2 * np.pi * freq * v) > 0).astype(float)
    if kind == "dots":
        fu = (freq * u + phase / (2 * np.pi)) % 1.0 - 0.5
        fv = (freq * v) % 1.0 - 0.5
        return (fu**2 + fv**2 < 0.09).astype(float)
    if kind == "radial":
        radius = np.hypot(xx - centre[0], yy - centre[1])
        return 0.5 + 0.5 * np.sin(2 * np.pi * freq * radius * 2 + phase)
    # band-limited noise: white noise kept in an annulus around the texture frequency
    n = xx.shape[0]
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n) * n, np.fft.fftfreq(n) * n, indexing="ij"))
    band = np.exp(-0.5 * ((k - freq) / max(freq * 0.35, 0.8)) ** 2)
    field = np.fft.ifft2(np.fft.fft2(rng.normal(size=xx.shape)) * band).real
    field = (field - field.mean()) / (field.std() + 1e-12)
    return 1 / (1 + np.exp(-2.5 * field))
