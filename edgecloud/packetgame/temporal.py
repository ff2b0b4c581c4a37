"""Sliding-window temporal estimator of each stream's feedback (PacketGame §2.4.1).

The thesis (chapter 2, eq. in §2.4.1 and line 5 of Algorithm 2.1) scores stream ``i``
in round ``t`` with an upper confidence bound over the last ``w`` rounds::

    mu[t, i] = mean feedback of i in the window + sqrt(3 ln T / (2 T[t, i]))

where ``T[t, i]`` counts the rounds of the window in which ``i`` was selected.
Two corrections to the thesis' formula are made here (both documented on
:class:`TemporalEstimator`):

* **Mean over selected rounds.** The thesis divides the window's feedback sum by
  ``w``, although feedback only exists for the rounds in which the stream was
  decoded; a stream selected once with feedback 1 would score ``1/w``. The default
  ``mean="selected"`` divides by ``T[t, i]`` instead; ``mean="window"`` keeps the
  thesis' ``1/w`` form for comparison.
* **A window of observations.** ``memory="rounds"`` is the thesis' window of the
  last ``w`` rounds; under a tight budget most streams are decoded in none of them
  and every estimate degenerates to the unseen value. ``memory="observations"``
  keeps each stream's last ``w`` observations instead, however long ago (the
  form :class:`~edgecloud.packetgame.decision.PacketGate` uses by default), and
  :meth:`TemporalEstimator.means` gives the smoothed means, without bonus, the
  predictor is trained on.
* **Streams not selected in the window** (``T[t, i] = 0``) make the thesis' bonus
  divide by zero. Such a stream gets :meth:`TemporalEstimator.unseen_estimate`, a
  finite value strictly above every estimate a selected stream can reach, so unseen
  streams are explored first while the estimate stays usable as a neural-network
  input. Ties among unseen streams are broken by the optimizer (value per cost,
  then stream index), so the exploration order is deterministic.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from edgecloud.packetgame.validation_utils import as_bool_mask, check_positive_int

MeanMode = Literal["selected", "window"]
MEAN_MODES: tuple[MeanMode, ...] = ("selected", "window")
Memory = Literal["rounds", "observations"]
MEMORIES: tuple[Memory, ...] = ("rounds", "observations")


class TemporalEstimator:
    """Per-stream UCB estimate of the feedback over a sliding window, for m streams.

    The state is two ring buffers of the last ``window`` rounds, vectorised over
    streams: the feedback, shape ``(w, m, k)`` (``k = num_tasks``, 0 where nothing
    was observed), and the selection flags, shape ``(w, m)``. :meth:`update` and
    :meth:`estimate` are O(m k) numpy operations, with no Python loop over streams.

    Parameters
    ----------
    num_streams : int
        Number of concurrent streams ``m``.
    window : int
        Window length ``w`` in rounds (the thesis uses 5).
    horizon : int | None
        Total number of rounds ``T`` in the bonus' ``ln T`` when known in advance
        (the thesis assumes a known horizon). ``None`` uses the current round number
        instead (1-based: the number of :meth:`update` calls so far plus one), the
        anytime form of UCB.
    num_tasks : int | None
        ``None`` for one task: feedback has shape ``(m,)`` and estimates shape
        ``(m,)``. An integer ``k`` for the multi-task variant: feedback and
        estimates have shape ``(m, k)`` (one column per task).
    mean : {"selected", "window"}
        ``"selected"`` (default, corrected): the mean feedback over the rounds of the
        window in which the stream was selected. ``"window"``: the thesis' form, the
        window's feedback sum divided by ``w`` (unobserved rounds count as 0).
    memory : {"rounds", "observations"}
        ``"rounds"``: the window is the last ``w`` rounds (the thesis).
        ``"observations"``: each stream's last ``w`` observations, whenever they
        were made (then ``mean="window"`` divides by ``w`` as well).

    Notes
    -----
    A stream selected in none of the last ``w`` rounds gets the estimate
    :meth:`unseen_estimate` ``= 2 + sqrt(3 ln T / 2)`` in every task: one more than
    ``1 + sqrt(3 ln T / 2)``, the largest estimate a selected stream can reach
    (mean feedback <= 1 and ``T_i >= 1``), so it is ranked first whatever ``T``.
    """

    def __init__(
        self,
        num_streams: int,
        window: int,
        horizon: int | None = None,
        num_tasks: int | None = None,
        mean: MeanMode = "selected",
        memory: Memory = "rounds",
    ) -> None:
        check_positive_int("num_streams", num_streams)
        check_positive_int("window", window)
        if horizon is not None:
            check_positive_int("horizon", horizon)
        if num_tasks is not None:
            check_positive_int("num_tasks", num_tasks)
        if mean not in MEAN_MODES:
            raise ValueError(f"mean is {mean!r}; expected one of {MEAN_MODES}")
        if memory not in MEMORIES:
            raise ValueError(f"memory is {memory!r}; expected one of {MEMORIES}")
        self.memory: Memory = memory
        self.num_streams = int(num_streams)
        self.window = int(window)
        self.horizon = horizon
        self.num_tasks = num_tasks
        self.mean: MeanMode = mean
        k = 1 if num_tasks is None else int(num_tasks)
        self._feedback = np.zeros((self.window, self.num_streams, k))  # (w, m, k)
        self._selected = np.zeros((self.window, self.num_streams), dtype=bool)
        self._slot = 0  # ring position the next update overwrites ("rounds")
        # per stream, the ring position its next observation overwrites
        self._stream_slot = np.zeros(self.num_streams, dtype=np.int64)
        self._rounds = 0

    @property
    def rounds(self) -> int:
        """Number of rounds recorded by :meth:`update` so far."""
        return self._rounds

    def _log_horizon(self, t: int | None) -> float:
        if self.horizon is not None:
            big_t = self.horizon
        elif t is not None:
            check_positive_int("t", t)
            big_t = int(t)
        else:
            big_t = self._rounds + 1
        return math.log(big_t)

    def unseen_estimate(self, t: int | None = None) -> float:
        """The estimate of a stream selected in none of the last ``w`` rounds.

        ``2 + sqrt(3 ln T / 2)``: the thesis' bonus divides by ``T_i = 0`` there; this
        finite value is strictly larger than any selected stream's estimate, so
        unseen streams are explored first and the value stays a valid network input.
        """
        return 2.0 + math.sqrt(1.5 * self._log_horizon(t))

    def selection_counts(self) -> npt.NDArray[np.int64]:
        """``T_i``: each stream's observations in the window.

        With ``memory="rounds"``: in how many of the last ``w`` rounds it was
        selected; with ``"observations"``: how many of its ``w`` slots are filled.
        """
        counts: npt.NDArray[np.int64] = self._selected.sum(axis=0, dtype=np.int64)
        return counts

    def estimate(self, t: int | None = None) -> npt.NDArray[np.float64]:
        """UCB estimate of each stream's feedback for the coming round.

        Parameters
        ----------
        t : int | None
            1-based current round used for ``ln T`` when ``horizon`` is ``None``;
            default: the number of recorded rounds plus one. Ignored when the
            estimator has a horizon.

        Returns
        -------
        numpy.ndarray
            ``(m,)`` (one task) or ``(m, num_tasks)``, float64, all >= 0: mean
            feedback + ``sqrt(3 ln T / (2 T_i))`` for selected streams,
            :meth:`unseen_estimate` for streams with ``T_i = 0``.
        """
        log_t = self._log_horizon(t)
        counts = self.selection_counts()  # (m,)
        seen = counts > 0
        safe = np.maximum(counts, 1).astype(np.float64)
        bonus = np.sqrt(1.5 * log_t / safe)  # (m,)
        unseen = 2.0 + math.sqrt(1.5 * log_t)
        est = np.where(seen[:, None], self._means() + bonus[:, None], unseen)  # (m, k)
        return est[:, 0] if self.num_tasks is None else est

    def means(self, prior: float) -> npt.NDArray[np.float64]:
        """The window's mean feedback, smoothed by one pseudo-observation ``prior``.

        ``(sum + prior) / (T_i + 1)``, without the exploration bonus: a stream
        whose last observations were all 0 keeps a small positive estimate (a
        gate valuing staleness would otherwise never decode it again), and a
        stream never observed gets ``prior``. The predictor's training rows use
        the same form (:func:`~edgecloud.packetgame.policies.training_data`).

        Parameters
        ----------
        prior : float
            The pseudo-observation, in [0, 1].

        Returns
        -------
        numpy.ndarray
            ``(m,)`` (one task) or ``(m, num_tasks)`` float64 in [0, 1].
        """
        counts = self.selection_counts().astype(np.float64)
        sums = self._feedback.sum(axis=0)  # (m, k)
        est: npt.NDArray[np.float64] = (sums + prior) / (counts[:, None] + 1.0)
        return est[:, 0] if self.num_tasks is None else est

    def _means(self) -> npt.NDArray[np.float64]:
        """``(m, k)`` mean feedback of the window (0 for unseen streams)."""
        counts = self.selection_counts()
        safe = np.maximum(counts, 1).astype(np.float64)
        sums = self._feedback.sum(axis=0)  # (m, k)
        if self.mean == "selected":
            means: npt.NDArray[np.float64] = sums / safe[:, None]
            return means
        # the thesis' form: unobserved rounds count as feedback 0
        window_means: npt.NDArray[np.float64] = sums / float(self.window)
        return window_means

    def update(self, selected: npt.ArrayLike, feedback: npt.ArrayLike) -> None:
        """Record one round: which streams were selected and their feedback.

        Parameters
        ----------
        selected : array_like of bool
            ``(m,)``: True for the streams decoded this round.
        feedback : array_like of float
            ``(m,)`` (one task) or ``(m, num_tasks)``: values in ``[0, 1]`` where
            selected; entries of unselected streams are ignored (NaN is fine).

        Raises
        ------
        ValueError
            On a shape mismatch, a non-boolean ``selected``, or feedback of a selected
            stream outside ``[0, 1]`` (NaN included).
        """
        sel = as_bool_mask("selected", selected, self.num_streams)
        fb = self._as_feedback(feedback)
        observed = np.where(sel[:, None], fb, 0.0)  # (m, k), NaN of skipped dropped
        bad = ~((observed >= 0.0) & (observed <= 1.0))
        if bad.any():
            stream, task = (int(i) for i in np.argwhere(bad)[0])
            index = f"[{stream}]" if self.num_tasks is None else f"[{stream}, {task}]"
            raise ValueError(
                f"feedback{index} of a selected stream is {observed[stream, task]}; "
                "expected a value in [0, 1]"
            )
        if self.memory == "rounds":
            self._feedback[self._slot] = observed
            self._selected[self._slot] = sel
            self._slot = (self._slot + 1) % self.window
        else:  # each selected stream's own ring
            streams = np.flatnonzero(sel)
            slots = self._stream_slot[streams]
            self._feedback[slots, streams] = observed[streams]
            self._selected[slots, streams] = True
            self._stream_slot[streams] = (slots + 1) % self.window
        self._rounds += 1

    def _as_feedback(self, feedback: npt.ArrayLike) -> npt.NDArray[np.float64]:
        fb = np.asarray(feedback, dtype=np.float64)
        expected: tuple[int, ...] = (
            (self.num_streams,)
            if self.num_tasks is None
            else (self.num_streams, self.num_tasks)
        )
        if fb.shape != expected:
            raise ValueError(
                f"feedback has shape {fb.shape}; expected {expected} "
                "(num_streams[, num_tasks])"
            )
        return fb.reshape(self.num_streams, -1)
