"""Ground truth per frame and per object, and its CSV files (byte-deterministic)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

PERSON, CAR, TRUCK, FAST_MOVER, FIRE = "person", "car", "truck", "fast-mover", "fire"
OBJECT_KINDS = (PERSON, CAR, TRUCK, FAST_MOVER, FIRE)
# One letter per countable kind in the left-to-right sequence label.
SEQUENCE_LETTERS = {PERSON: "P", CAR: "C", TRUCK: "T"}
TRAFFIC_STATES = ("free", "busy", "jammed")
EVENTS = ("none", "fire", "fast-mover")
# Traffic state from the visible vehicle count: free <= 2 < busy <= 5 < jammed.
BUSY_FROM, JAMMED_FROM = 3, 6
# An object counts (persons, vehicles, sequence, events) once this share of its
# full mask is visible: partly entered or mostly occluded objects do not.
VISIBLE_SHARE = 0.3


def traffic_state(vehicles: int) -> str:
    """``free`` (<= 2 vehicles), ``busy`` (3-5) or ``jammed`` (>= 6)."""
    if vehicles >= JAMMED_FROM:
        return "jammed"
    if vehicles >= BUSY_FROM:
        return "busy"
    return "free"


@dataclass(frozen=True)
class ObjectBox:
    """One drawn object in one frame: its visible pixels' tight box ``[x0, x1)``."""

    frame_index: int
    object_id: int
    kind: str
    x0: int
    y0: int
    x1: int
    y1: int
    visible_pixels: int
    full_pixels: int

    @property
    def counted(self) -> bool:
        """Whether enough of the object is visible to count it."""
        return self.visible_pixels >= VISIBLE_SHARE * self.full_pixels


@dataclass(frozen=True)
class FrameLabel:
    """Ground truth of one frame, derived from the objects drawn into it."""

    frame_index: int
    time_s: float
    hour: float
    night: int
    persons: int
    vehicles: int
    cars: int
    trucks: int
    traffic: str
    event: str
    sequence: str
    shake_dx: int
    shake_dy: int

    @classmethod
    def from_objects(
        cls,
        frame_index: int,
        time_s: float,
        hour: float,
        night: bool,
        objects: list[ObjectBox],
        shake: tuple[int, int],
    ) -> FrameLabel:
        """Counts, traffic state, event and sequence of the counted ``objects``."""
        counted = [o for o in objects if o.counted]
        kinds = [o.kind for o in counted]
        cars, trucks = kinds.count(CAR), kinds.count(TRUCK)
        if FIRE in kinds:
            event = "fire"
        elif FAST_MOVER in kinds:
            event = "fast-mover"
        else:
            event = "none"
        ordered = sorted(
            (o for o in counted if o.kind in SEQUENCE_LETTERS),
            key=lambda o: (o.x0 + o.x1, o.object_id),
        )
        return cls(
            frame_index=frame_index,
            time_s=round(time_s, 4),
            hour=round(hour, 4),
            night=int(night),
            persons=kinds.count(PERSON),
            vehicles=cars + trucks,
            cars=cars,
            trucks=trucks,
            traffic=traffic_state(cars + trucks),
            event=event,
            sequence="".join(SEQUENCE_LETTERS[o.kind] for o in ordered),
            shake_dx=shake[0],
            shake_dy=shake[1],
        )


FRAME_COLUMNS = tuple(f.name for f in fields(FrameLabel))
OBJECT_COLUMNS = tuple(f.name for f in fields(ObjectBox))


def write_csv(path: Path, rows: list[FrameLabel] | list[ObjectBox]) -> None:
    """Write dataclass rows as CSV with newline line ends (identical on every OS)."""
    columns = (
        FRAME_COLUMNS if not rows or isinstance(rows[0], FrameLabel) else OBJECT_COLUMNS
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([getattr(row, c) for c in columns])
    path.write_bytes(buffer.getvalue().encode())


@dataclass(frozen=True)
class CameraLabels:
    """All frame labels of one camera as columns (what readers and models use)."""

    frames: list[FrameLabel]

    def __len__(self) -> int:
        return len(self.frames)

    def column(self, name: str) -> npt.NDArray[np.int64]:
        """An integer column (``persons``, ``vehicles``, ``night``, ...)."""
        return np.array([getattr(f, name) for f in self.frames], dtype=np.int64)

    def class_column(
        self, name: str, classes: tuple[str, ...]
    ) -> npt.NDArray[np.int64]:
        """A categorical column (``traffic``, ``event``) as class indices."""
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[getattr(f, name)] for f in self.frames], dtype=np.int64)


_CONVERTERS = {"int": int, "float": float, "str": str}


def _read_rows(path: Path, row_type: type[FrameLabel] | type[ObjectBox]) -> list[Any]:
    # Field annotations are strings ("int", ...) under `from __future__ import
    # annotations`; they name the converter of each column.
    types = {f.name: str(f.type) for f in fields(row_type)}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if list(reader.fieldnames or ()) != list(types):
            raise ValueError(
                f"{path} has columns {reader.fieldnames}; expected {list(types)}"
            )
        return [
            row_type(**{k: _CONVERTERS[types[k]](v) for k, v in row.items()})
            for row in reader
        ]


def read_frame_labels(path: Path) -> CameraLabels:
    """Parse a camera's ``*.frames.csv`` back into :class:`FrameLabel` rows."""
    return CameraLabels(_read_rows(path, FrameLabel))


def read_object_boxes(path: Path) -> list[ObjectBox]:
    """Parse a camera's ``*.objects.csv`` back into :class:`ObjectBox` rows."""
    return _read_rows(path, ObjectBox)
