"""The paper's learning-rate schedule: lr divided at each validation plateau, stop at the last one."""

from __future__ import annotations

import math

__all__ = ["PlateauSchedule"]


class PlateauSchedule:
    """The paper's schedule, driven once per epoch with the validation loss.

    :meth:`step` returns ``'improved'`` (new best: save it), ``'wait'``, ``'decay'`` (plateau: the lr
    is now ``lr / divisor``; reload the best weights) or ``'stop'`` (plateau number ``max_plateaus``).
    A plateau is ``patience`` consecutive epochs without a strictly lower loss. Before ``min_epochs``
    a final plateau decays instead of stopping (the original's 40-epoch rule). ``enabled=False`` never
    decays or stops (the original's effective schedule).
    """

    def __init__(
        self,
        lr: float,
        patience: int = 5,
        divisor: float = 4.0,
        max_plateaus: int = 2,
        min_epochs: int = 0,
        enabled: bool = True,
    ) -> None:
        self.lr = float(lr)
        self.patience = int(patience)
        self.divisor = float(divisor)
        self.max_plateaus = int(max_plateaus)
        self.min_epochs = int(min_epochs)
        self.enabled = bool(enabled)
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.plateaus = 0
        self.stopped = False

    def step(self, loss: float, epoch: int) -> str:
        if loss < self.best:
            self.best, self.best_epoch, self.bad_epochs = float(loss), int(epoch), 0
            return "improved"
        self.bad_epochs += 1
        if not self.enabled or self.bad_epochs < self.patience:
            return "wait"
        self.bad_epochs = 0
        self.plateaus += 1
        if self.plateaus >= self.max_plateaus:
            if epoch >= self.min_epochs:
                self.stopped = True
                return "stop"
            self.plateaus = self.max_plateaus - 1
        self.lr /= self.divisor
        return "decay"

    def state_dict(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "lr",
                "patience",
                "divisor",
                "max_plateaus",
                "min_epochs",
                "enabled",
                "best",
                "best_epoch",
                "bad_epochs",
                "plateaus",
                "stopped",
            )
        }

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
