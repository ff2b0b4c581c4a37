"""PacketGame: multi-stream video packet gating before decoding (no flwr import)."""

from edgecloud.packetgame.decision import (
    MODES,
    NEUTRAL_ESTIMATE,
    Mode,
    PacketGate,
    decision_cost,
)
from edgecloud.packetgame.dependencies import Arrivals, DecodeCosts, DependencyState
from edgecloud.packetgame.gated_decoder import GatedDecoder, GatedFrame, StreamCodec
from edgecloud.packetgame.optimizer import Selection, exact_select, greedy_select
from edgecloud.packetgame.predictor import (
    SIZE_UNIT_BYTES,
    ContextualPredictor,
    PacketWindows,
    fit,
    packet_views,
)
from edgecloud.packetgame.temporal import MEAN_MODES, MeanMode, TemporalEstimator

__all__ = [
    "MEAN_MODES",
    "MODES",
    "NEUTRAL_ESTIMATE",
    "SIZE_UNIT_BYTES",
    "Arrivals",
    "ContextualPredictor",
    "DecodeCosts",
    "DependencyState",
    "GatedDecoder",
    "GatedFrame",
    "MeanMode",
    "Mode",
    "PacketGate",
    "PacketWindows",
    "Selection",
    "StreamCodec",
    "TemporalEstimator",
    "decision_cost",
    "exact_select",
    "fit",
    "greedy_select",
    "packet_views",
]
