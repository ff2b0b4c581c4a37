"""One camera's street scene over time: arrivals, motion, events, day/night, shake.

:class:`CameraScene` is a deterministic simulation (numpy ``Generator`` streams
seeded by ``(seed, camera, purpose)``) that renders each frame and derives its
labels from the object-id mask written while drawing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edgecloud.data.testbed.config import TestbedConfig
from edgecloud.data.testbed.labels import (
    CAR,
    FAST_MOVER,
    FIRE,
    PERSON,
    TRUCK,
    FrameLabel,
    ObjectBox,
)
from edgecloud.data.testbed.render import (
    ByteArray,
    IdArray,
    Sprite,
    day_background,
    fire_sprite,
    ir_background,
    motion_blurred,
    paste,
    person_sprite,
    vehicle_sprite,
)

# Independent random streams, so that e.g. changing the noise leaves traffic alone.
_PROFILE, _TRAFFIC, _NOISE, _EVENTS, _SHAKE = range(5)
_NOISE_BANK = 8  # precomputed sensor-noise fields per mode, one picked per frame
# Speeds in reference pixels per second (scaled by frame size and viewpoint).
_PERSON_SPEED = (10.0, 20.0)
_CAR_SPEED = (38.0, 60.0)
_TRUCK_SPEED = (26.0, 40.0)
_FAST_SPEED = (140.0, 200.0)
_MIN_GAP = 12.0  # reference pixels (~1 m) between queued vehicles


def activity(hour: float) -> float:
    """Relative activity at ``hour``: morning (8:00) and evening (17:30) peaks.

    About 0.25 in the small hours, 0.6 at midday, 1.6 at the peaks.
    """

    def bump(centre: float, width: float) -> float:
        d = min(abs(hour - centre), 24 - abs(hour - centre))
        return math.exp(-(d**2) / (2 * width**2))

    daytime = 0.35 * (bump(13.0, 3.5))
    return 0.25 + daytime + 1.2 * bump(8.0, 1.3) + 1.25 * bump(17.5, 1.8)


@dataclass(frozen=True)
class CameraProfile:
    """What makes one camera's domain its own."""

    camera_id: int
    viewpoint_scale: float
    road_top: int
    lane_height: int
    day_noise: float
    night_noise: float
    person_rate: float  # arrivals per second per sidewalk at activity 1
    vehicle_rate: float  # arrivals per second per lane at activity 1
    truck_share: float

    @classmethod
    def draw(cls, cfg: TestbedConfig, camera_id: int) -> CameraProfile:
        """The profile of camera ``camera_id`` under ``cfg.seed``."""
        rng = np.random.default_rng([cfg.seed, camera_id, _PROFILE])
        v = float(rng.uniform(0.8, 1.25))
        lane_height = max(6, round(34 * cfg.scale * v))
        person_h = 30 * cfg.scale * v
        top_max = cfg.height - 2 * lane_height - person_h - 4 * cfg.scale
        top_min = 0.3 * cfg.height + person_h * 0.6
        road_top = round(rng.uniform(top_min, max(top_min, top_max)))
        return cls(
            camera_id=camera_id,
            viewpoint_scale=v,
            road_top=road_top,
            lane_height=lane_height,
            day_noise=float(rng.uniform(1.5, 4.0)),
            night_noise=float(rng.uniform(8.0, 14.0)),
            person_rate=float(rng.uniform(0.12, 0.22)),
            vehicle_rate=float(rng.uniform(0.25, 0.4)),
            truck_share=float(rng.uniform(0.1, 0.3)),
        )

    @property
    def road_bottom(self) -> int:
        """First row below the two lanes."""
        return self.road_top + 2 * self.lane_height


@dataclass
class _Actor:
    object_id: int
    kind: str
    sprite: Sprite
    x: float
    y: int
    speed: float  # pixels per frame, signed; the desired (free-flow) speed
    lane: int = -1  # -1 for pedestrians
    frames_left: int = -1  # fire only: frames until it goes out
    moved: float = field(default=0.0)


@dataclass(frozen=True)
class RenderedFrame:
    """A frame, its object-id mask and its ground truth."""

    image: ByteArray  # (H, W, 3) RGB
    ids: IdArray  # (H, W) object id per pixel, 0 = background
    label: FrameLabel
    objects: list[ObjectBox]


class CameraScene:
    """Deterministic simulation and rendering of one camera.

    Parameters
    ----------
    cfg : TestbedConfig
        The testbed settings (frame size, fps, day cycle, events, shake).
    camera_id : int
        Which camera; selects the profile and the random streams.
    """

    def __init__(self, cfg: TestbedConfig, camera_id: int) -> None:
        self.cfg = cfg
        self.profile = CameraProfile.draw(cfg, camera_id)
        p = self.profile
        self._rng = np.random.default_rng([cfg.seed, camera_id, _TRAFFIC])
        self._noise_rng = np.random.default_rng([cfg.seed, camera_id, _NOISE])
        self._event_rng = np.random.default_rng([cfg.seed, camera_id, _EVENTS])
        self._shake_rng = np.random.default_rng([cfg.seed, camera_id, _SHAKE])
        profile_rng = np.random.default_rng([cfg.seed, camera_id, _PROFILE, 1])
        # Backgrounds carry a margin so that shaking crops stay inside the picture.
        self._margin = max(1, round(3 * cfg.scale)) if cfg.shake else 0
        m = self._margin
        day = day_background(
            profile_rng,
            cfg.height + 2 * m,
            cfg.width + 2 * m,
            p.road_top + m,
            p.road_bottom + m,
        )
        self._day_bg = day
        self._ir_bg = ir_background(day, profile_rng)
        h, w = cfg.height, cfg.width
        self._day_noise = [
            self._noise_rng.normal(0, p.day_noise, (h, w, 3)).astype(np.float32)
            for _ in range(_NOISE_BANK)
        ]
        self._night_noise = [
            self._noise_rng.normal(0, p.night_noise, (h, w, 1)).astype(np.float32)
            for _ in range(_NOISE_BANK)
        ]
        self._actors: list[_Actor] = []
        self._next_id = 1
        self._shake = (0.0, 0.0)
        self._size = cfg.scale * p.viewpoint_scale

    # ------------------------------------------------------------ simulation
    def _spawn(self, hour: float) -> None:
        cfg, p, rng = self.cfg, self.profile, self._rng
        level = activity(hour)
        for lane in (0, 1):  # lane 0 drives right (upper), lane 1 drives left
            if rng.random() >= p.vehicle_rate * level / cfg.fps:
                continue
            truck = bool(rng.random() < p.truck_share)
            sprite = vehicle_sprite(rng, self._size, truck)
            if lane == 1:  # drives left: mirror so the front leads
                sprite = Sprite(
                    sprite.alpha[:, ::-1].copy(),
                    sprite.day[:, ::-1].copy(),
                    sprite.ir[:, ::-1].copy(),
                )
            lo, hi = _TRUCK_SPEED if truck else _CAR_SPEED
            speed = rng.uniform(lo, hi) * self._size / cfg.fps
            x = -sprite.width if lane == 0 else cfg.width
            if self._entry_blocked(lane, x, sprite.width):
                continue  # the queue reaches the frame edge: the arrival waits out
            lane_top = p.road_top + lane * p.lane_height
            y = lane_top + (p.lane_height - sprite.height) // 2
            self._add(
                TRUCK if truck else CAR,
                sprite,
                x,
                y,
                speed if lane == 0 else -speed,
                lane,
            )
        for sidewalk in (0, 1):  # behind and in front of the road
            if rng.random() >= p.person_rate * level / cfg.fps:
                continue
            sprite = person_sprite(rng, self._size)
            y = self._sidewalk_y(sidewalk, sprite.height, rng)
            rightward = bool(rng.random() < 0.5)
            speed = rng.uniform(*_PERSON_SPEED) * self._size / cfg.fps
            x = -sprite.width if rightward else cfg.width
            self._add(PERSON, sprite, x, y, speed if rightward else -speed)

    def _sidewalk_y(self, sidewalk: int, h: int, rng: np.random.Generator) -> int:
        p, cfg = self.profile, self.cfg
        if sidewalk == 0:  # feet on the far sidewalk, just above the road
            lo, hi = p.road_top - h - round(10 * cfg.scale), p.road_top - h
        else:  # near sidewalk, below the road
            lo, hi = p.road_bottom + 1, cfg.height - h - 1
        return int(rng.integers(max(0, lo), max(lo, hi) + 1))

    def _entry_blocked(self, lane: int, x: float, width: int) -> bool:
        gap = _MIN_GAP * self._size
        for a in self._actors:
            if a.lane != lane:
                continue
            if lane == 0 and a.x < x + width + gap:
                return True
            if lane == 1 and a.x + a.sprite.width > x - gap:
                return True
        return False

    def _add(
        self, kind: str, sprite: Sprite, x: float, y: int, speed: float, lane: int = -1
    ) -> _Actor:
        actor = _Actor(
            self._next_id, kind, sprite, float(x), int(y), float(speed), lane
        )
        self._next_id += 1
        self._actors.append(actor)
        return actor

    def _maybe_start_event(self) -> None:
        cfg, rng = self.cfg, self._event_rng
        if any(a.kind in (FIRE, FAST_MOVER) for a in self._actors):
            return  # one rare event at a time keeps the event label unambiguous
        if rng.random() >= cfg.events_per_hour / 3600.0 / cfg.fps:
            return
        if rng.random() < 0.5:
            sprite = fire_sprite(rng, self._size)
            x = float(rng.integers(0, max(1, cfg.width - sprite.width)))
            y = max(0, self.profile.road_top - sprite.height - int(rng.integers(0, 8)))
            fire = self._add(FIRE, sprite, x, y, 0.0)
            fire.frames_left = round(rng.uniform(3.0, 8.0) * cfg.fps)
        else:
            base = person_sprite(rng, self._size)
            speed = rng.uniform(*_FAST_SPEED) * self._size / cfg.fps
            sprite = motion_blurred(base, round(speed * 1.5))
            rightward = bool(rng.random() < 0.5)
            y = self._sidewalk_y(int(rng.integers(0, 2)), sprite.height, rng)
            x = -sprite.width if rightward else cfg.width
            self._add(FAST_MOVER, sprite, x, y, speed if rightward else -speed)

    def _move(self) -> None:
        cfg = self.cfg
        gap = _MIN_GAP * self._size
        for lane in (0, 1):
            vehicles = [a for a in self._actors if a.lane == lane]
            # Density slows the lane (jams build up at the peaks).
            slowdown = max(0.2, 1.0 - 0.11 * max(0, len(vehicles) - 1))
            # Leader first: the one furthest along the driving direction.
            vehicles.sort(key=lambda a: -a.x if lane == 0 else a.x)
            ahead: _Actor | None = None
            for a in vehicles:
                step = a.speed * slowdown
                if ahead is not None:  # car following: never closer than the gap
                    if lane == 0:
                        step = min(step, max(0.0, ahead.x - gap - a.sprite.width - a.x))
                    else:
                        limit = a.x - (ahead.x + ahead.sprite.width + gap)
                        step = max(step, -max(0.0, limit))
                a.x += step
                ahead = a
        for a in self._actors:
            if a.lane == -1 and a.kind != FIRE:
                a.x += a.speed
            if a.kind == FIRE:
                a.frames_left -= 1
                a.sprite = fire_sprite(self._event_rng, self._size)  # flicker
        self._actors = [
            a
            for a in self._actors
            if -a.sprite.width - 1 <= a.x <= cfg.width + 1
            and not (a.kind == FIRE and a.frames_left <= 0)
        ]

    def _next_shake(self) -> tuple[int, int]:
        if not self.cfg.shake:
            return (0, 0)
        m, rng = self._margin, self._shake_rng
        # Mean-reverting random walk: mild, smooth jitter of up to `m` pixels.
        sx = 0.7 * self._shake[0] + rng.normal(0, 0.6 * m)
        sy = 0.7 * self._shake[1] + rng.normal(0, 0.6 * m)
        self._shake = (float(np.clip(sx, -m, m)), float(np.clip(sy, -m, m)))
        return (round(self._shake[0]), round(self._shake[1]))

    # ------------------------------------------------------------- rendering
    def frames(self) -> Iterator[RenderedFrame]:
        """Every frame of the clip, in order (the simulation advances as it goes)."""
        cfg = self.cfg
        for index in range(cfg.num_frames):
            hour = cfg.hour_of_frame(index)
            self._spawn(hour)
            self._maybe_start_event()
            yield self._render(index, hour, self._next_shake())
            self._move()

    def _render(self, index: int, hour: float, shake: tuple[int, int]) -> RenderedFrame:
        cfg = self.cfg
        night = cfg.is_night(hour)
        h, w, m = cfg.height, cfg.width, self._margin
        dx, dy = shake
        # The camera moves by (dx, dy): the world appears shifted by (-dx, -dy).
        if night:
            canvas = self._ir_bg[m + dy : m + dy + h, m + dx : m + dx + w, None].copy()
        else:
            canvas = self._day_bg[m + dy : m + dy + h, m + dx : m + dx + w].copy()
        ids = np.zeros((h, w), np.int32)
        # Painter's order: objects further away (feet higher up) first.
        order = sorted(self._actors, key=lambda a: (a.y + a.sprite.height, a.object_id))
        for a in order:
            colour = a.sprite.ir[..., None] if night else a.sprite.day
            top, left = a.y - dy, math.floor(a.x) - dx
            paste(canvas, ids, colour, a.sprite.alpha, top, left, a.object_id)
        noise_bank = self._night_noise if night else self._day_noise
        canvas += noise_bank[int(self._noise_rng.integers(0, _NOISE_BANK))]
        image = np.clip(canvas, 0, 255).round().astype(np.uint8)
        if night:
            image = np.repeat(image, 3, axis=2)
        objects = self._boxes(index, ids, order, dx, dy)
        label = FrameLabel.from_objects(
            index, index / cfg.fps, hour, night, objects, shake
        )
        return RenderedFrame(np.ascontiguousarray(image), ids, label, objects)

    def _boxes(
        self, index: int, ids: IdArray, order: list[_Actor], dx: int, dy: int
    ) -> list[ObjectBox]:
        boxes = []
        for a in order:
            top, left = a.y - dy, math.floor(a.x) - dx
            y0, x0 = max(top, 0), max(left, 0)
            region = ids[y0 : top + a.sprite.height, x0 : left + a.sprite.width]
            ys, xs = np.nonzero(region == a.object_id)
            if len(ys) == 0:
                continue  # fully outside the frame or occluded: not drawn
            boxes.append(
                ObjectBox(
                    frame_index=index,
                    object_id=a.object_id,
                    kind=a.kind,
                    x0=x0 + int(xs.min()),
                    y0=y0 + int(ys.min()),
                    x1=x0 + int(xs.max()) + 1,
                    y1=y0 + int(ys.max()) + 1,
                    visible_pixels=len(ys),
                    full_pixels=a.sprite.mask_area,
                )
            )
        boxes.sort(key=lambda b: b.object_id)
        return boxes
