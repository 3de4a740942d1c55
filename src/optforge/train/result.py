"""What one training run of ``K`` replicas records."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

OK, DIVERGED, ERROR = "ok", "diverged", "error"


@dataclass
class TrainResult:
    """Curves, final metrics and the fate of each replica.

    Arrays have one column per replica. ``train_loss[t, k]`` is replica
    ``k``'s minibatch loss at step ``t + 1`` (NaN once it has diverged);
    ``eval_loss``/``eval_metric`` are validation values at ``eval_steps``
    (step 0 is the initialisation). ``final_loss``/``final_metric`` are the
    last evaluation, NaN for replicas that diverged or errored.
    ``status[k]`` is ``ok``, ``diverged`` (with ``diverged_step[k]`` and
    ``reason[k]``) or ``error`` (the program raised; ``error`` holds the
    message and every replica carries it). ``stopped_at`` is the step at which
    an ``on_eval`` callback stopped the run (its curves end there; final
    values are those of that evaluation). ``extra["seconds"]`` splits the
    wall time into ``setup`` (building the task and optimizer), ``eval`` and
    ``train`` (the training steps alone).
    """

    task: str
    tier: str
    program: str
    metric: str
    higher_is_better: bool
    seeds: list[int]
    hparams: dict[str, list[float]]
    steps: int
    schedule: str
    train_loss: np.ndarray
    eval_steps: np.ndarray
    eval_loss: np.ndarray
    eval_metric: np.ndarray
    status: list[str]
    diverged_step: list[int | None]
    reason: list[str | None]
    wall_time: float
    error: str | None = None
    stopped_at: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def replicas(self) -> int:
        return len(self.seeds)

    @property
    def final_loss(self) -> np.ndarray:
        return self._final(self.eval_loss)

    @property
    def final_metric(self) -> np.ndarray:
        return self._final(self.eval_metric)

    def _final(self, curve: np.ndarray) -> np.ndarray:
        out = np.full(self.replicas, np.nan)
        if len(curve) and self.error is None:
            ok = np.array([s == OK for s in self.status])
            out[ok] = curve[-1, ok]
        return out

    def steps_to_target(self, target: float) -> list[int | None]:
        """First evaluation step at which each replica's metric meets ``target`` (None: never)."""
        out: list[int | None] = []
        for k in range(self.replicas):
            col = self.eval_metric[:, k]
            hit = col >= target if self.higher_is_better else col <= target
            idx = np.flatnonzero(hit & np.isfinite(col))
            out.append(int(self.eval_steps[idx[0]]) if len(idx) else None)
        return out

    def reached(self, target: float) -> np.ndarray:
        """Whether each replica's final metric meets ``target``."""
        m = self.final_metric
        with np.errstate(invalid="ignore"):
            hit = m >= target if self.higher_is_better else m <= target
        return hit & np.isfinite(m)

    def to_dict(self) -> dict:
        """Plain Python values (lists for arrays; NaN stays NaN)."""
        d = asdict(self)
        for key in ("train_loss", "eval_steps", "eval_loss", "eval_metric"):
            d[key] = getattr(self, key).tolist()
        d["final_loss"] = self.final_loss.tolist()
        d["final_metric"] = self.final_metric.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainResult:
        d = {k: v for k, v in d.items() if k not in ("final_loss", "final_metric")}
        for key in ("train_loss", "eval_loss", "eval_metric"):
            d[key] = np.asarray(d[key], dtype=np.float64).reshape(-1, len(d["seeds"]))
        d["eval_steps"] = np.asarray(d["eval_steps"], dtype=np.int64)
        return cls(**d)

    def summary(self) -> str:
        """One line per replica: status, final metric, hyperparameters."""
        lines = [f"{self.task}/{self.tier} {self.steps} steps, {self.wall_time:.2f}s"
                 + (f", error: {self.error}" if self.error else "")]
        for k in range(self.replicas):
            hp = ", ".join(f"{n}={v[k]:.3g}" for n, v in self.hparams.items())
            m = self.final_metric[k]
            tail = (f" at step {self.diverged_step[k]}: {self.reason[k]}"
                    if self.status[k] == DIVERGED else "")
            val = f"{m:.4f}" if math.isfinite(m) else "nan"
            lines.append(f"  seed={self.seeds[k]} {hp}: {self.status[k]} "
                         f"{self.metric}={val}{tail}")
        return "\n".join(lines)
