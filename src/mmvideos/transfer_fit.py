"""The transfer classifier and how it is fitted: a step budget, early stopping, an L-BFGS option.

The classifier (paper section 4): inputs standardised with the training clips' mean and std,
dropout, then one linear layer to the benchmark's classes (the paper's swapped last layer);
``hidden_units > 0`` inserts one ReLU hidden layer and a second dropout. Softmax +
cross-entropy for single-label benchmarks, sigmoid + binary cross-entropy for multi-label ones.

Two solvers fit it; both see the training folds only, never the test fold:

* ``adam`` (the paper's): Adam at lr 2e-4, batch 128, weight decay 1e-6, with dropout. Training
  is counted in optimiser steps, not epochs, so a small set gets the same budget
  (``max_steps``) as a large one: 100 epochs of 80 clips at batch 128 are only 100 steps, far
  from convergence at that learning rate. A validation split is carved from the training clips
  (stratified by class, keeping groups such as ESC-50's source recordings together); the loss on
  it is checked every ``eval_every`` steps and training stops once it has not improved for
  ``patience`` checks. The classifier is then refitted on all the training clips for the step
  count that scored best, so the validation clips are not lost to training.
* ``lbfgs`` (linear classifier only): full-batch L-BFGS on the mean loss plus ``l2 / 2 * |W|^2``,
  the multinomial logistic regression scikit-learn fits; the penalty ``l2`` is picked from
  ``l2_grid`` by the loss on the same validation split, then the fit is redone on all the
  training clips. No dropout (it is not a stochastic fit).

Every fit reports how many steps it took (Adam steps, or L-BFGS iterations of the final fit)
and whether it stopped early (Adam: stopped on the validation loss before ``max_steps``;
L-BFGS: converged before ``max_steps`` iterations).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import torch
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold
from torch import nn

SOLVERS = ("adam", "lbfgs")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How one classifier is fitted (see the module docstring)."""

    solver: str = "adam"
    lr: float = 2e-4               # paper section 4 (adam)
    batch_size: int = 128          # paper section 4 (adam)
    weight_decay: float = 1e-6     # paper section 4 (adam)
    dropout: float = 0.0
    hidden_units: int = 0
    max_steps: int = 20000         # adam steps / L-BFGS iterations per fit, whatever the set size
    eval_every: int = 50           # adam: steps between two looks at the validation loss
    patience: int = 20             # adam: looks without improvement before stopping
    val_fraction: float = 0.2      # share of the training clips held out to stop on / pick l2
    l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # lbfgs: penalties tried
    seed: int = 0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.solver == "lbfgs" and self.hidden_units:
            raise ValueError("solver 'lbfgs' fits the linear classifier only; set hidden_units: 0")
        if min(self.lr, self.batch_size, self.max_steps, self.eval_every, self.patience) <= 0 or \
                self.hidden_units < 0 or not 0 < self.val_fraction < 1 or not self.l2_grid:
            raise ValueError(f"invalid classifier settings: {self}")


class Classifier(nn.Module):
    """Standardise -> dropout -> linear (or -> hidden ReLU layer -> dropout -> linear)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int, dropout: float,
                 hidden_units: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)  # [D]
        self.register_buffer("std", std)    # [D]
        dim = mean.numel()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden_units:
            layers += [nn.Linear(dim, hidden_units), nn.ReLU(), nn.Dropout(dropout)]
            dim = hidden_units
        layers.append(nn.Linear(dim, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` features -> ``[B, C]`` logits."""
        return self.net((x - self.mean) / self.std)


@dataclasses.dataclass
class Fit:
    """A fitted classifier and how the fit went."""

    model: Classifier
    steps: int               # adam steps, or L-BFGS iterations, of the final fit
    stopped_early: bool      # adam: on the validation loss; lbfgs: converged within the budget
    l2: float | None = None  # lbfgs: the penalty chosen on the validation split

    def record(self) -> dict:
        """What the results keep about this fit."""
        return {"steps": self.steps, "stopped_early": self.stopped_early,
                **({"l2": self.l2} if self.l2 is not None else {})}


def validation_split(y: np.ndarray, multi_label: bool, fraction: float, seed: int,
                     groups: np.ndarray | None = None) -> np.ndarray:
    """A boolean mask over the training clips: ``True`` = held out for validation.

    Single-label sets are stratified by class; clips sharing a group (e.g. ESC-50's
    ``src_file``) land on the same side. ``y`` is ``[N, C]`` multi-hot.
    """
    n = len(y)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if multi_label:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        _, held = next(splitter.split(np.zeros(n), groups=groups))
    else:
        folds = max(2, round(1 / fraction))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "the least populated class has only k members": expected on small sets
            warnings.simplefilter("ignore", UserWarning)
            _, held = next(splitter.split(np.zeros(n), y.argmax(1), groups))
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return mask


def fit_classifier(x: np.ndarray, y: np.ndarray, multi_label: bool, cfg: FitConfig, device: torch.device,
                   groups: np.ndarray | None = None) -> Fit:
    """Fit a :class:`Classifier` on features ``x [N, D]`` and multi-hot targets ``y [N, C]``.

    The validation split comes out of ``x`` (see :func:`validation_split`); the returned
    classifier is refitted on all of ``x``.
    """
    held = validation_split(y, multi_label, cfg.val_fraction, cfg.seed, groups)
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    targets = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(device)
    train, val = torch.from_numpy(~held).to(device), torch.from_numpy(held).to(device)
    if cfg.solver == "lbfgs":
        scores = {}
        for l2 in cfg.l2_grid:
            candidate, _, _ = _lbfgs(features[train], targets[train], multi_label, l2, cfg)
            scores[l2] = _loss(candidate, features[val], targets[val], multi_label)
        l2 = min(scores, key=scores.get)
        model, steps, converged = _lbfgs(features, targets, multi_label, l2, cfg)
        return Fit(model, steps, converged, l2)
    _, best_step, stopped = _adam(features[train], targets[train], multi_label, cfg, cfg.max_steps,
                                  (features[val], targets[val]))
    model, _, _ = _adam(features, targets, multi_label, cfg, best_step)
    return Fit(model, best_step, stopped)


def predict(model: Classifier, x: np.ndarray, multi_label: bool, device: torch.device) -> np.ndarray:
    """Class probabilities ``[N, C]``: sigmoid for multi-label, softmax otherwise."""
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
        return (logits.sigmoid() if multi_label else logits.softmax(1)).cpu().numpy()


def _new_classifier(features: torch.Tensor, num_classes: int, dropout: float, hidden_units: int,
                    seed: int) -> Classifier:
    torch.manual_seed(seed)
    std = features.std(0, correction=0)
    # a feature constant over the training set carries nothing; dividing by 1 leaves it at 0
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return Classifier(features.mean(0), std, num_classes, dropout, hidden_units).to(features.device)


def _criterion(multi_label: bool):
    """``(logits [B, C], multi-hot [B, C]) -> mean loss``."""
    if multi_label:
        return nn.functional.binary_cross_entropy_with_logits
    return lambda logits, target: nn.functional.cross_entropy(logits, target.argmax(1))


def _loss(model: Classifier, x: torch.Tensor, y: torch.Tensor, multi_label: bool) -> float:
    model.eval()
    with torch.no_grad():
        return float(_criterion(multi_label)(model(x), y))


def _adam(x: torch.Tensor, y: torch.Tensor, multi_label: bool, cfg: FitConfig, steps: int,
          val: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[Classifier, int, bool]:
    """Adam for ``steps`` steps; with ``val``, also early stopping on its loss.

    Returns:
        (the classifier: the best one seen when ``val`` is given, step count that gave it, whether
        training stopped before ``steps``)
    """
    model = _new_classifier(x, y.shape[1], cfg.dropout, cfg.hidden_units, cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    criterion = _criterion(multi_label)
    order = torch.Generator().manual_seed(cfg.seed)
    batches: list[torch.Tensor] = []
    best = (float("inf"), 0, None)  # (validation loss, step, state)
    for step in range(1, steps + 1):
        if not batches:  # a new pass over the clips in a new order
            batches = list(torch.randperm(len(x), generator=order).to(x.device).split(cfg.batch_size))
        batch = batches.pop(0)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        criterion(model(x[batch]), y[batch]).backward()
        optimizer.step()
        if val is not None and step % cfg.eval_every == 0:
            loss = _loss(model, *val, multi_label)
            if loss < best[0]:
                best = (loss, step, copy.deepcopy(model.state_dict()))
            elif step - best[1] >= cfg.patience * cfg.eval_every:
                model.load_state_dict(best[2])
                return model.eval(), best[1], True
    if val is not None and best[2] is not None:
        model.load_state_dict(best[2])
        return model.eval(), best[1], False
    return model.eval(), steps, False


def _lbfgs(x: torch.Tensor, y: torch.Tensor, multi_label: bool, l2: float,
           cfg: FitConfig) -> tuple[Classifier, int, bool]:
    """Full-batch L-BFGS of the linear classifier: (model, iterations, converged within the budget)."""
    model = _new_classifier(x, y.shape[1], 0.0, 0, cfg.seed)
    linear = model.net[-1]
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=cfg.max_steps, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")
    criterion = _criterion(multi_label)
    model.train()  # dropout is 0: train and eval agree

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y) + 0.5 * l2 * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    iterations = int(optimizer.state[linear.weight]["n_iter"])
    return model.eval(), iterations, iterations < cfg.max_steps
