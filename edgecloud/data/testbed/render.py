"""Drawing: camera backgrounds, object sprites (day colour and night IR), compositing.

Hand-written with NumPy slicing rather than a drawing library (PIL, OpenCV):
sprites are built once per object and pasted with array slices, which keeps
rendering at about a millisecond per 320x240 frame, and the same paste writes the
object-id mask that the labels are computed from, so labels and pixels cannot
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]
IdArray = npt.NDArray[np.int32]

# A pixel belongs to an object in the id mask where the sprite's alpha is at least
# this (motion-blurred and flickering sprites are partly transparent).
MASK_ALPHA = 0.5


@dataclass(frozen=True)
class Sprite:
    """An object's look: alpha ``(h, w)``, day RGB ``(h, w, 3)``, IR ``(h, w)``."""

    alpha: FloatArray
    day: FloatArray
    ir: FloatArray

    @property
    def height(self) -> int:
        """Sprite height in pixels."""
        return int(self.alpha.shape[0])

    @property
    def width(self) -> int:
        """Sprite width in pixels."""
        return int(self.alpha.shape[1])

    @property
    def mask_area(self) -> int:
        """Pixels the object covers when fully in view and unoccluded."""
        return int((self.alpha >= MASK_ALPHA).sum())


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> FloatArray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    inside = ((yy + 0.5 - cy) / max(ry, 0.5)) ** 2 + (
        (xx + 0.5 - cx) / max(rx, 0.5)
    ) ** 2 <= 1.0
    out: FloatArray = inside.astype(np.float32)
    return out


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> FloatArray:
    out = np.zeros((h, w), np.float32)
    out[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = 1.0
    return out


def _paint(
    day: FloatArray,
    ir: FloatArray,
    region: FloatArray,
    rgb: tuple[float, float, float],
    heat: float,
) -> None:
    sel = region > 0
    day[sel] = rgb
    ir[sel] = heat


def person_sprite(rng: np.random.Generator, size: float) -> Sprite:
    """A pedestrian: head, torso, legs; warm (bright) in IR.

    ``size`` scales the reference 12x30 px figure.
    """
    w, h = max(4, round(12 * size)), max(8, round(30 * size))
    head_r = w * 0.28
    head = _ellipse(h, w, head_r + 0.5, w / 2, head_r, head_r)
    torso = _rect(
        h, w, round(h * 0.2), round(h * 0.62), round(w * 0.12), w - round(w * 0.12)
    )
    legs = _rect(h, w, round(h * 0.6), h, round(w * 0.2), round(w * 0.45)) + _rect(
        h, w, round(h * 0.6), h, round(w * 0.55), round(w * 0.8)
    )
    alpha = np.clip(head + torso + legs, 0, 1)
    day = np.zeros((h, w, 3), np.float32)
    ir = np.zeros((h, w), np.float32)
    shirt = tuple(float(v) for v in rng.integers(30, 256, 3))
    pants = tuple(float(v) for v in rng.integers(20, 140, 3))
    skin = tuple(float(v) for v in np.array([224, 172, 138]) * rng.uniform(0.55, 1.05))
    _paint(day, ir, legs, pants, rng.uniform(170, 200))  # type: ignore[arg-type]
    _paint(day, ir, torso, shirt, rng.uniform(185, 215))  # type: ignore[arg-type]
    _paint(day, ir, head, skin, rng.uniform(225, 250))  # type: ignore[arg-type]
    return Sprite(alpha, day, ir)


def vehicle_sprite(rng: np.random.Generator, size: float, truck: bool) -> Sprite:
    """A car (46x22 px reference) or a truck (74x30 px): body, cabin, wheels.

    In IR the body is metal-dim, the windows dark and the engine and tyres hot.
    """
    ref_w, ref_h = (74, 30) if truck else (46, 22)
    w, h = max(8, round(ref_w * size)), max(5, round(ref_h * size))
    wheel_r = h * 0.17
    body_top = round(h * (0.1 if truck else 0.42))
    body = _rect(h, w, body_top, round(h * 0.85), 0, w)
    if truck:
        cab = _rect(h, w, round(h * 0.3), round(h * 0.85), round(w * 0.74), w)
        box = _rect(h, w, round(h * 0.05), round(h * 0.8), 0, round(w * 0.72))
        cabin = cab
        window = _rect(h, w, round(h * 0.36), round(h * 0.55), round(w * 0.8), w - 2)
        body = np.clip(box + cab, 0, 1)
    else:
        cabin = _rect(
            h, w, round(h * 0.08), body_top + 1, round(w * 0.22), round(w * 0.78)
        )
        window = _rect(
            h, w, round(h * 0.16), body_top, round(w * 0.27), round(w * 0.73)
        )
    wheels = _ellipse(h, w, h - wheel_r, w * 0.2, wheel_r, wheel_r) + _ellipse(
        h, w, h - wheel_r, w * 0.8, wheel_r, wheel_r
    )
    alpha = np.clip(body + cabin + wheels, 0, 1)
    day = np.zeros((h, w, 3), np.float32)
    ir = np.zeros((h, w), np.float32)
    if truck:
        paint = tuple(float(v) for v in rng.integers(150, 250, 3))
    else:
        # Redraw road-grey paint: a car the colour of the asphalt would be in the
        # labels but invisible in daylight.
        rgb = rng.integers(0, 256, 3)
        while abs(float(rgb @ np.array([0.299, 0.587, 0.114])) - 70.0) < 45.0:
            rgb = rng.integers(0, 256, 3)
        paint = tuple(float(v) for v in rgb)
    metal = rng.uniform(95, 130)
    _paint(day, ir, body + cabin, paint, metal)  # type: ignore[arg-type]
    _paint(day, ir, window, (40.0, 60.0, 80.0), 55.0)
    _paint(day, ir, wheels, (15.0, 15.0, 15.0), rng.uniform(185, 215))
    # Engine block: the hottest part in IR, invisible in daylight.
    engine = _rect(h, w, round(h * 0.45), round(h * 0.85), round(w * 0.8), w)
    ir[engine > 0] = rng.uniform(225, 250)
    return Sprite(alpha, day, ir)


def motion_blurred(sprite: Sprite, streak: int) -> Sprite:
    """``sprite`` smeared horizontally over ``streak`` pixels (a very fast mover)."""
    streak = max(1, streak)
    kernel = np.full(streak, 1.0 / streak, np.float32)

    def smear(plane: FloatArray) -> FloatArray:
        # (h, w) -> (h, w + streak - 1): every row convolved with a box kernel
        return np.stack([np.convolve(row, kernel, mode="full") for row in plane])

    alpha = smear(sprite.alpha)
    # Premultiplied colour keeps the streak's colour right where alpha is small.
    day = np.stack([smear(sprite.day[..., c] * sprite.alpha) for c in range(3)], -1)
    ir = smear(sprite.ir * sprite.alpha)
    safe = np.maximum(alpha, 1e-6)
    # A smear averages the body over the streak; rescale so the streak's core is
    # as opaque as a (fast) body would leave it on the sensor.
    opacity = np.clip(alpha / max(float(alpha.max()), 1e-6), 0, 1) * 0.85
    return Sprite(
        opacity.astype(np.float32),
        (day / safe[..., None]).astype(np.float32),
        (ir / safe).astype(np.float32),
    )


def fire_sprite(rng: np.random.Generator, size: float) -> Sprite:
    """One flickering flame frame (drawn anew each frame): yellow core, red rim."""
    w, h = max(6, round(28 * size)), max(8, round(36 * size))
    alpha = np.zeros((h, w), np.float32)
    heat = np.zeros((h, w), np.float32)
    for _ in range(5):
        cx = rng.uniform(0.3, 0.7) * w
        cy = rng.uniform(0.35, 0.8) * h
        blob = _ellipse(
            h, w, cy, cx, rng.uniform(0.2, 0.45) * h, rng.uniform(0.15, 0.3) * w
        )
        alpha = np.maximum(alpha, blob * rng.uniform(0.6, 1.0))
        heat += blob
    heat = np.clip(heat / 3.0, 0, 1)
    day = np.stack(
        [np.full_like(heat, 255.0), 90 + 160 * heat, 20 + 60 * heat**2], axis=-1
    ).astype(np.float32)
    ir = np.full((h, w), 255.0, np.float32)
    return Sprite(alpha, day, ir)


def day_background(
    rng: np.random.Generator, height: int, width: int, road_top: int, road_bottom: int
) -> FloatArray:
    """A street ``(height, width, 3)``: sky, buildings, sidewalks, a 2-lane road."""
    bg = np.zeros((height, width, 3), np.float32)
    horizon = max(4, road_top - round(height * 0.18))
    sky_top = rng.uniform([90, 130, 180], [150, 190, 240])
    sky_low = rng.uniform([160, 180, 200], [220, 230, 250])
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    bg[:horizon] = sky_top * (1 - t) + sky_low * t
    x = 0
    while x < width:  # buildings along the horizon
        bw = int(rng.integers(width // 10, width // 4))
        bh = int(rng.integers(horizon // 3, horizon + 1))
        colour = rng.uniform(60, 200, 3)
        bg[horizon - bh : horizon, x : x + bw] = colour
        for wy in range(horizon - bh + 3, horizon - 3, 7):
            bg[wy : wy + 3, x + 2 : x + bw - 2 : 5] = colour * 0.5
        x += bw + int(rng.integers(0, width // 12))
    bg[horizon:road_top] = rng.uniform(150, 200) * np.array([1.0, 0.97, 0.9])
    road = rng.uniform(55, 85)
    bg[road_top:road_bottom] = road
    mid = (road_top + road_bottom) // 2
    dash = max(6, width // 20)
    for x0 in range(0, width, 2 * dash):
        bg[mid - 1 : mid + 1, x0 : x0 + dash] = 235.0
    bg[road_bottom:] = rng.uniform(140, 190) * np.array([0.95, 1.0, 0.92])
    for _ in range(int(rng.integers(2, 6))):  # trees / bushes in the foreground band
        cx = rng.uniform(0, width)
        cy = rng.uniform(road_bottom, height)
        r = rng.uniform(3, 8) * height / 240
        blob = _ellipse(height, width, cy, cx, r, r * 1.3) > 0
        bg[blob] = rng.uniform([20, 80, 20], [60, 140, 60])
    # Low-frequency texture (dirt, shading): 8x upsampled noise.
    coarse = rng.normal(0, 6, (height // 8 + 2, width // 8 + 2, 1)).astype(np.float32)
    texture = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:height, :width]
    out: FloatArray = np.clip(bg + texture, 0, 255).astype(np.float32)
    return out


def ir_background(day: FloatArray, rng: np.random.Generator) -> FloatArray:
    """The night (IR) look of a background: dark, low-contrast grayscale ``(H, W)``."""
    luma = day @ np.array([0.299, 0.587, 0.114], np.float32)
    level, contrast = rng.uniform(35, 55), rng.uniform(0.18, 0.3)
    ir = level + contrast * (luma - luma.mean())
    h, w = ir.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Vignetting of the IR illuminator: brighter centre, darker corners.
    r2 = ((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2
    out: FloatArray = np.clip(ir * (1.15 - 0.9 * r2), 0, 255).astype(np.float32)
    return out


def paste(
    canvas: FloatArray,
    ids: IdArray | None,
    sprite_rgb: FloatArray,
    alpha: FloatArray,
    top: int,
    left: int,
    object_id: int,
) -> None:
    """Alpha-blend a sprite into ``canvas`` at (top, left), clipping at the borders.

    ``canvas`` is ``(H, W, C)``; ``sprite_rgb`` ``(h, w, C)``. Where alpha reaches
    :data:`MASK_ALPHA` the id mask takes ``object_id`` (later pastes occlude
    earlier ones in both).
    """
    height, width = canvas.shape[:2]
    h, w = alpha.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, height), min(left + w, width)
    if y0 >= y1 or x0 >= x1:
        return
    sy, sx = y0 - top, x0 - left
    a = alpha[sy : sy + y1 - y0, sx : sx + x1 - x0, None]
    src = sprite_rgb[sy : sy + y1 - y0, sx : sx + x1 - x0]
    region = canvas[y0:y1, x0:x1]
    region *= 1.0 - a
    region += a * src
    if ids is not None:
        ids[y0:y1, x0:x1][a[..., 0] >= MASK_ALPHA] = object_id
