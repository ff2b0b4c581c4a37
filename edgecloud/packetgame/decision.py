"""One round's packet-gating decision for all streams: estimator, predictor, optimizer.

:class:`PacketGate` is the per-round loop of the thesis' Algorithm 2.1 (PacketGame,
chapter 2): temporal estimates (line 4-5), predicted confidences (line 6), greedy
selection under the decode budget with dependency prefetch (lines 8-15), and the
feedback of the decoded packets (line 16). :func:`decision_cost` measures what that
costs per stream and round.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from edgecloud.packetgame.optimizer import Selection, greedy_select
from edgecloud.packetgame.predictor import ContextualPredictor, PacketWindows
from edgecloud.packetgame.temporal import MeanMode, TemporalEstimator
from edgecloud.packetgame.validation_utils import (
    as_bool_mask,
    as_nonnegative,
    check_budget,
    check_positive_int,
)

logger = logging.getLogger(__name__)

Mode = Literal["packetgame", "temporal", "contextual"]
MODES: tuple[Mode, ...] = ("packetgame", "temporal", "contextual")
Value = Literal["staleness", "thesis"]
VALUES: tuple[Value, ...] = ("staleness", "thesis")

# The temporal input of the "contextual" mode: a constant, so the fusion layer
# folds it into its bias and the temporal view is removed (the thesis' ablation).
# Train a contextual-only predictor with estimates filled with this value.
NEUTRAL_ESTIMATE = 0.5


class PacketGate:
    """Per-round packet gating over ``m`` streams in one vectorised call.

    Call :meth:`decide` when each stream's packet of the round has been parsed, then
    :meth:`feedback` with the redundancy feedback of the decoded ones; the two
    alternate.

    A packet's confidence ``c`` (per task) is the probability that its frame's
    result differs from the previous frame's: the predictor's output, or the
    temporal estimate alone. Two ways to turn it into the value the optimizer
    ranks by value per cost:

    * ``value="staleness"`` (default, corrected): the probability that what the
      stream is served is stale, ``1 - prod(1 - c)`` over the packets that
      arrived since the stream was last chosen (reset when it is chosen), summed
      over tasks. The thesis values a packet by its own ``c`` as if the frame
      before it had been decoded, so a stream skipped for many rounds is worth no
      more than one decoded a round ago; and its sliding window of the last ``w``
      rounds holds no observation of a stream skipped that long, so its estimate
      becomes the unseen-stream value (far outside the range the predictor is
      trained on). Here the estimator keeps each stream's last ``w``
      observations and the predictor gets their mean smoothed by one
      pseudo-observation ``NEUTRAL_ESTIMATE`` (as in training,
      :func:`~edgecloud.packetgame.policies.training_data`); exploration comes
      from the staleness growing while a stream is skipped.
    * ``value="thesis"``: Algorithm 2.1 as written: the UCB estimate over the last
      ``w`` rounds (mean + ``sqrt(3 ln T / 2 T_i)``) is the temporal value and the
      predictor's input; the value is the sum over tasks of ``c``.

    Parameters
    ----------
    num_streams : int
        Number of streams ``m``.
    window : int
        Window ``w`` of both the temporal estimator (rounds) and the predictor
        (packets), as in the thesis.
    horizon : int | None
        Known number of rounds ``T`` for the exploration bonus (see
        :class:`TemporalEstimator`); ``None`` uses the current round.
    predictor : ContextualPredictor | None
        Trained predictor; required by the "packetgame" and "contextual" modes,
        unused by "temporal". Its ``window`` must equal ``window``.
    mode : {"packetgame", "temporal", "contextual"}
        "packetgame": the predictor fed with the temporal estimates (the thesis'
        fusion). "temporal": the temporal estimates alone. "contextual": the
        predictor with the constant ``NEUTRAL_ESTIMATE`` as temporal input.
    num_tasks : int | None
        ``None`` (one task; feedback of shape ``(m,)``) or ``k`` (feedback
        ``(m, k)``). Defaults to the predictor's task count.
    mean : {"selected", "window"}
        The estimator's mean (see :class:`TemporalEstimator`).
    value : {"staleness", "thesis"}
        How confidences become values (above).
    """

    def __init__(
        self,
        num_streams: int,
        window: int,
        horizon: int | None = None,
        predictor: ContextualPredictor | None = None,
        mode: Mode = "packetgame",
        num_tasks: int | None = None,
        mean: MeanMode = "selected",
        value: Value = "staleness",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode is {mode!r}; expected one of {MODES}")
        if value not in VALUES:
            raise ValueError(f"value is {value!r}; expected one of {VALUES}")
        check_positive_int("window", window)
        if predictor is None and mode != "temporal":
            raise ValueError(f"predictor is None; mode {mode!r} expected a predictor")
        if predictor is not None:
            if mode == "temporal":
                logger.warning("mode 'temporal' ignores the predictor it was given")
            if predictor.window != window:
                raise ValueError(
                    f"predictor.window is {predictor.window}; expected {window} "
                    "(the gate's window)"
                )
            tasks = predictor.num_tasks
            if num_tasks is not None and num_tasks != tasks:
                raise ValueError(
                    f"num_tasks is {num_tasks}; expected {tasks} (the predictor's)"
                )
            if num_tasks is None and tasks > 1:
                num_tasks = tasks
        self.mode: Mode = mode
        self.value: Value = value
        self.predictor = predictor
        self.estimator = TemporalEstimator(
            num_streams,
            window,
            horizon=horizon,
            num_tasks=num_tasks,
            mean=mean,
            memory="rounds" if value == "thesis" else "observations",
        )
        self.windows = PacketWindows(num_streams, window)
        self.num_streams = int(num_streams)
        self.num_tasks = 1 if num_tasks is None else int(num_tasks)
        # per stream and task, P(nothing changed since the stream was chosen)
        self._survival = np.ones((self.num_streams, self.num_tasks))
        self._pending = False  # decide() ran and waits for feedback()

    def decide(
        self,
        sizes: npt.ArrayLike,
        is_intra: npt.ArrayLike,
        costs: npt.ArrayLike,
        dependency_costs: Sequence[npt.ArrayLike] | None,
        budget: float,
    ) -> Selection:
        """Choose which of this round's ``m`` packets to decode.

        Parameters
        ----------
        sizes : array_like
            ``(m,)`` packet sizes in bytes.
        is_intra : array_like of bool
            ``(m,)``: True for independent (I) frames.
        costs : array_like
            ``(m,)`` dependency-aware decode costs (> 0).
        dependency_costs : Sequence of array_like | None
            Per stream, the costs of the undecoded packets the current one depends
            on, in decode order (see :func:`greedy_select`); ``None``: no prefetch.
        budget : float
            Decode budget of the round.

        Returns
        -------
        Selection
            See :func:`greedy_select`; ``spent <= budget``.

        Raises
        ------
        ValueError
            On bad inputs. Sizes, flags, costs, the budget and the length of
            ``dependency_costs`` are checked before anything is recorded; a
            malformed ``dependency_costs`` entry is only found by the optimizer,
            after this round's packets entered the predictor windows.
        RuntimeError
            When the previous decision has not received its :meth:`feedback`.
        """
        return self._decide(sizes, is_intra, costs, dependency_costs, budget, None)

    def _decide(
        self,
        sizes: npt.ArrayLike,
        is_intra: npt.ArrayLike,
        costs: npt.ArrayLike,
        dependency_costs: Sequence[npt.ArrayLike] | None,
        budget: float,
        clock: list[float] | None,
    ) -> Selection:
        """:meth:`decide`, appending ``perf_counter`` stamps to ``clock`` if given."""
        if self._pending:
            raise RuntimeError("decide() called again before feedback() of its round")
        stamp = clock.append if clock is not None else _no_stamp
        stamp(time.perf_counter())
        # optimizer inputs checked before anything is recorded
        cost_arr = as_nonnegative("costs", costs, (self.num_streams,), positive=True)
        budget_f = check_budget(budget)
        flags = as_bool_mask("is_intra", is_intra, self.num_streams)
        if dependency_costs is not None and len(dependency_costs) != self.num_streams:
            raise ValueError(
                f"dependency_costs has {len(dependency_costs)} entries; "
                f"expected {self.num_streams} (one per stream)"
            )
        stamp(time.perf_counter())
        # estimator: UCB estimates or plain means (m, k)
        if self.value == "thesis":
            estimates = self.estimator.estimate()
        else:
            estimates = self.estimator.means(prior=NEUTRAL_ESTIMATE)
        estimates = estimates.reshape(self.num_streams, -1)
        stamp(time.perf_counter())
        # predictor: confidences (m, k) -> values (m,)
        self.windows.push(sizes, flags)
        values = self._values(estimates)
        stamp(time.perf_counter())
        # optimizer: greedy by value per cost, then prefetch
        selection = greedy_select(values, cost_arr, budget_f, dependency_costs)
        self._survival[selection.chosen] = 1.0
        stamp(time.perf_counter())
        self._pending = True
        return selection

    def _values(self, estimates: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``(m,)`` values from ``(m, k)`` estimates (see the class notes)."""
        if self.mode == "temporal" or self.predictor is None:
            confidences = estimates
        else:
            if self.mode == "contextual":
                estimates = np.full_like(estimates, NEUTRAL_ESTIMATE)
            probs = self.predictor.predict(self.windows.views(), estimates)  # (m, k)
            confidences = probs.astype(np.float64)
        if self.value == "thesis":
            values: npt.NDArray[np.float64] = confidences.sum(axis=1)
            return values
        self._survival *= 1.0 - np.clip(confidences, 0.0, 1.0)
        stale: npt.NDArray[np.float64] = (1.0 - self._survival).sum(axis=1)
        return stale

    def feedback(self, selected: npt.ArrayLike, feedback: npt.ArrayLike) -> None:
        """Record the round's outcome in the temporal estimator.

        The predictor windows already hold this round's packets: :meth:`decide`
        pushes them, because the predictor must see the current packet's size.

        Parameters
        ----------
        selected : array_like of bool
            ``(m,)``: the streams whose packet was decoded (usually
            ``selection.chosen``).
        feedback : array_like
            ``(m,)`` or ``(m, num_tasks)`` feedback in [0, 1] for the selected
            streams (1 = the inference was necessary); other entries are ignored.

        Raises
        ------
        RuntimeError
            Without a preceding :meth:`decide`.
        """
        if not self._pending:
            raise RuntimeError("feedback() called without a decide() of its round")
        self.estimator.update(selected, feedback)
        self._pending = False


def _no_stamp(_: float) -> None:
    """Clock stand-in of :meth:`PacketGate.decide`."""


def _synthetic_round(
    rng: np.random.Generator, phase: npt.NDArray[np.int64], gop: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Packet sizes (bytes) and I-frame flags of one round of ``len(phase)`` streams."""
    intra = phase % gop == 0
    sizes = np.where(
        intra, rng.lognormal(11.0, 0.5, phase.size), rng.lognormal(8.0, 1.0, phase.size)
    )
    return sizes, intra


def decision_cost(
    num_streams: int = 1000,
    window: int = 5,
    rounds: int = 200,
    mode: Mode = "packetgame",
    num_tasks: int = 1,
    warmup: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """Seconds per stream per round of :class:`PacketGate`, split by module.

    Synthetic rounds: GOP-25 streams with random phases, log-normal packet sizes,
    decode cost 3 per I-frame and 1 per P-frame plus 1 per undecoded packet since
    the last decoded one (each listed in ``dependency_costs``), a budget of 10 %
    of the round's total cost and Bernoulli(0.3) feedback. The predictor is
    untrained (its cost does not depend on its weights). Runs under
    ``torch.no_grad`` with the current ``torch.get_num_threads()``.

    Parameters
    ----------
    num_streams : int
        Streams ``m`` per round.
    window : int
        Gate window ``w``.
    rounds : int
        Timed rounds (medians over these).
    mode : {"packetgame", "temporal", "contextual"}
        Gate mode measured.
    num_tasks : int
        Tasks of the predictor and the feedback.
    warmup : int
        Untimed rounds first.
    seed : int
        Seed of the synthetic streams and the predictor's initialisation.

    Returns
    -------
    dict[str, float]
        ``"total-s"``, ``"predictor-s"``, ``"optimizer-s"``, ``"estimator-s"``:
        median seconds per stream per round (the total is the median of the
        per-round totals, so the shares need not add up to it exactly);
        ``"num-streams"``, ``"window"``, ``"rounds"``, ``"torch-threads"``.
    """
    check_positive_int("rounds", rounds)
    rng = np.random.default_rng(seed)
    gop = 25
    predictor = (
        None
        if mode == "temporal"
        else ContextualPredictor(window, num_tasks=num_tasks, seed=seed)
    )
    tasks = None if num_tasks == 1 else num_tasks
    gate = PacketGate(
        num_streams,
        window,
        horizon=warmup + rounds,
        predictor=predictor,
        mode=mode,
        num_tasks=tasks,
    )
    phase = rng.integers(0, gop, num_streams)
    undecoded = np.zeros(num_streams, dtype=np.int64)  # P-frames since last decode
    ones = [np.ones(n) for n in range(gop)]
    feedback_shape = (num_streams,) if tasks is None else (num_streams, num_tasks)
    parts: dict[str, list[float]] = {
        key: [] for key in ("total", "predictor", "optimizer", "estimator")
    }
    with torch.no_grad():
        for r in range(warmup + rounds):
            sizes, intra = _synthetic_round(rng, phase + r, gop)
            undecoded[intra] = 0
            costs = np.where(intra, 3.0, 1.0 + undecoded)
            deps = [ones[n] for n in undecoded]
            budget = 0.1 * float(costs.sum())
            feedback = (rng.random(feedback_shape) < 0.3).astype(np.float64)
            clock: list[float] = []
            selection = gate._decide(sizes, intra, costs, deps, budget, clock)
            start = time.perf_counter()
            gate.feedback(selection.chosen, feedback)
            update = time.perf_counter() - start
            undecoded = np.where(selection.chosen, 0, undecoded + 1)
            if r < warmup:
                continue
            s0, s1, s2, s3, s4 = clock
            parts["total"].append(s4 - s0 + update)
            parts["optimizer"].append(s1 - s0 + s4 - s3)
            parts["estimator"].append(s2 - s1 + update)
            parts["predictor"].append(s3 - s2)
    result = {
        f"{key}-s": statistics.median(times) / num_streams
        for key, times in parts.items()
    }
    result.update(
        {
            "num-streams": float(num_streams),
            "window": float(window),
            "rounds": float(rounds),
            "torch-threads": float(torch.get_num_threads()),
        }
    )
    return result
