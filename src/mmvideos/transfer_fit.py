"""The transfer classifier and how it is fitted: a step budget, early stopping, an L-BFGS option.

The classifier (paper section 4): inputs standardised with the training clips' mean and std,
dropout, then one linear layer to the benchmark's classes (the paper's swapped last layer);
``hidden_units > 0`` inserts one ReLU hidden layer and a second dropout. Softmax +
cross-entropy for single-label benchmarks, sigmoid + binary cross-entropy for multi-label ones.

Two solvers fit it; both see the training folds only, never the test fold:

* ``adam`` (the paper's): Adam at lr 2e-4, batch 128, weight decay 1e-6, with dropout. Training
  is counted in optimiser steps, not epochs, so a small set gets the same budget
  (``max_steps``) as a large one: 100 epochs of 80 clips at batch 128 are only 100 steps, far
  from convergence at that learning rate. The training clips are cut into ``val_folds``
  validation splits (stratified by class, keeping groups such as ESC-50's source recordings
  together); ``val_rounds`` of them each train a classifier on the other clips, all side by side
  as one batched model (Adam is element-wise, so they do not interact). Their mean validation
  score is checked every ``eval_every`` steps: Top-1, ties to the lower loss, for single-label
  sets (the loss alone bottoms out long before the accuracy does, as the classifier grows
  confident); the loss for multi-label ones. Training stops once it has not improved for
  ``patience`` checks, and the classifier is refitted on all the training clips for the step
  count that scored best, so no clip is lost to validation and one unlucky small split does not
  decide alone.
* ``lbfgs`` (linear classifier only): full-batch L-BFGS on the mean loss plus ``l2 / 2 * |W|^2``,
  the multinomial logistic regression scikit-learn fits; the penalty ``l2`` is picked from the
  paper's weight decay (1e-6, the same penalty Adam's decay puts on the mean loss) and its
  multiples by ten up to 1, on the same validation splits (by Top-1 for single-label sets, as scikit-learn's
  ``LogisticRegressionCV`` scores, ties to the lower loss; by the loss for multi-label ones),
  then the fit is redone on all the training clips. No dropout (it is not a stochastic fit).

Every fit reports how many steps it took (Adam steps, or L-BFGS iterations of the final fit)
and whether it stopped early (Adam: stopped on the validation score before ``max_steps``;
L-BFGS: converged before ``max_steps`` iterations).

``lbfgs`` is the default for the linear classifier. On the 52-clip demo benchmark it lands
within 2 points of Top-1 of scikit-learn's ``LogisticRegressionCV`` on every feature set, while
Adam's early stopping, chosen on validation splits of a few clips each, scatters by several
points around it (a clip is 2 points there). ``adam`` stays for the paper's exact recipe and for
``hidden_units > 0``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import torch
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from torch import nn

SOLVERS = ("adam", "lbfgs")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How one classifier is fitted (see the module docstring)."""

    solver: str = "lbfgs"
    lr: float = 2e-4               # paper section 4 (adam)
    batch_size: int = 128          # paper section 4 (adam)
    weight_decay: float = 1e-6     # paper section 4 (adam); lbfgs: the weakest penalty tried
    dropout: float = 0.0
    hidden_units: int = 0
    max_steps: int = 20000         # adam steps / L-BFGS iterations per fit, whatever the set size
    eval_every: int = 50           # adam: steps between two looks at the validation loss
    patience: int = 20             # adam: looks without improvement before stopping
    val_folds: int = 5             # the training clips in this many parts; one at a time is the validation split
    val_rounds: int = 5            # how many of those parts take that turn (1: a single split; at most val_folds)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.solver == "lbfgs" and self.hidden_units:
            raise ValueError("solver 'lbfgs' fits the linear classifier only; set hidden_units: 0")
        if min(self.lr, self.batch_size, self.max_steps, self.eval_every, self.patience) <= 0 or \
                self.hidden_units < 0 or self.val_folds < 2 or self.val_rounds < 1:
            raise ValueError(f"invalid classifier settings: {self}")

    @property
    def penalties(self) -> tuple[float, ...]:
        """lbfgs: the ``l2`` values tried, from the paper's weight decay up by tens to 1."""
        grid = (self.weight_decay * 10.0 ** k for k in range(7))
        return tuple(float(f"{l2:.6g}") for l2 in grid if l2 <= 1.0)


class Classifier(nn.Module):
    """``K`` independent classifiers side by side (``K = 1`` once fitted).

    Each: standardise with its own training mean and std -> dropout -> linear, or -> hidden ReLU
    layer -> dropout -> linear. Weights are ``[K, in, out]``, initialised as ``nn.Linear`` does.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int, dropout: float,
                 hidden_units: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean[:, None])  # [K, 1, D]
        self.register_buffer("std", std[:, None])    # [K, 1, D]
        members, dim = mean.shape
        widths = [dim, *([hidden_units] if hidden_units else []), num_classes]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(widths, widths[1:]):
            bound = 1 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[K, B, D]`` features -> ``[K, B, C]`` logits; ``[B, D]`` -> ``[B, C]`` when ``K = 1``."""
        hidden = (x - self.mean) / self.std  # [K, B, D]
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if layer:
                hidden = hidden.relu()
            hidden = torch.baddbmm(bias, self.dropout(hidden), weight)
        return hidden[0] if x.dim() == 2 else hidden


@dataclasses.dataclass
class Fit:
    """A fitted classifier and how the fit went."""

    model: Classifier
    steps: int               # adam steps, or L-BFGS iterations, of the final fit
    stopped_early: bool      # adam: on the validation loss; lbfgs: converged within the budget
    l2: float | None = None  # lbfgs: the penalty chosen on the validation splits

    def record(self) -> dict:
        """What the results keep about this fit."""
        return {"steps": self.steps, "stopped_early": self.stopped_early,
                **({"l2": self.l2} if self.l2 is not None else {})}


def validation_folds(y: np.ndarray, multi_label: bool, folds: int, seed: int,
                     groups: np.ndarray | None = None) -> list[np.ndarray]:
    """``folds`` disjoint validation masks over the training clips (``True`` = held out).

    Single-label sets are stratified by class; clips sharing a group (e.g. ESC-50's
    ``src_file``) land on the same side. ``y`` is ``[N, C]`` multi-hot.
    """
    n = len(y)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if multi_label:
        splits = GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(n), groups=groups)
    else:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "the least populated class has only k members": expected on small sets
            warnings.simplefilter("ignore", UserWarning)
            splits = list(splitter.split(np.zeros(n), y.argmax(1), groups))
    masks = []
    for _, held in splits:
        mask = np.zeros(n, dtype=bool)
        mask[held] = True
        masks.append(mask)
    return masks


def fit_classifier(x: np.ndarray, y: np.ndarray, multi_label: bool, cfg: FitConfig, device: torch.device,
                   groups: np.ndarray | None = None) -> Fit:
    """Fit a :class:`Classifier` on features ``x [N, D]`` and multi-hot targets ``y [N, C]``.

    The validation splits come out of ``x`` (see :func:`validation_folds`); the returned
    classifier is refitted on all of ``x`` with the step count or penalty they chose.
    """
    held = validation_folds(y, multi_label, cfg.val_folds, cfg.seed, groups)[:cfg.val_rounds]
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    targets = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(device)
    train_sets = [np.flatnonzero(~mask) for mask in held]
    val_sets = [np.flatnonzero(mask) for mask in held]
    if cfg.solver == "lbfgs":  # in float64 (see _lbfgs_search), returned in float32
        fit = _lbfgs_search(features.double(), targets.double(), multi_label, cfg, train_sets, val_sets)
        fit.model.float()
        return fit
    _, steps, stopped = _adam(features, targets, multi_label, cfg, train_sets, cfg.max_steps, val_sets)
    model, _, _ = _adam(features, targets, multi_label, cfg, [np.arange(len(x))], steps)
    return Fit(model, steps, stopped)


def predict(model: Classifier, x: np.ndarray, multi_label: bool, device: torch.device) -> np.ndarray:
    """Class probabilities ``[N, C]`` of a fitted classifier: sigmoid for multi-label, softmax otherwise."""
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
        return (logits.sigmoid() if multi_label else logits.softmax(-1)).cpu().numpy()


def _new_classifier(x: torch.Tensor, sets: list[np.ndarray], num_classes: int, dropout: float, hidden_units: int,
                    seed: int) -> Classifier:
    """A classifier per index set, standardised with that set's statistics."""
    torch.manual_seed(seed)
    stats = [(x[rows].mean(0), x[rows].std(0, correction=0)) for rows in sets]
    mean, std = torch.stack([m for m, _ in stats]), torch.stack([s for _, s in stats])  # [K, D]
    # a feature constant over a training set carries nothing; dividing by 1 leaves it at 0
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return Classifier(mean, std, num_classes, dropout, hidden_units).to(x.device)


def _padded(sets: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged index sets -> ``[K, width]`` indices and a validity mask."""
    width = max(len(rows) for rows in sets)
    index, mask = np.zeros((len(sets), width), dtype=np.int64), np.zeros((len(sets), width), dtype=bool)
    for k, rows in enumerate(sets):
        index[k, :len(rows)], mask[k, :len(rows)] = rows, True
    return torch.from_numpy(index).to(device), torch.from_numpy(mask).to(device)


def _member_losses(model: Classifier, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, mask: torch.Tensor,
                   multi_label: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and Top-1 of each member on its own clips: two ``[K]``."""
    logits, target = model(x[index]), y[index]  # [K, B, C]
    if multi_label:
        per_clip = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
    else:
        per_clip = nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(0, 1).argmax(1),
                                               reduction="none").view(mask.shape)
    hits = target.gather(-1, logits.argmax(-1, keepdim=True))[..., 0]  # [K, B]: top class is a true one
    count = mask.sum(1)
    return (per_clip * mask).sum(1) / count, (hits * mask).sum(1) / count


def _adam(x: torch.Tensor, y: torch.Tensor, multi_label: bool, cfg: FitConfig, train_sets: list[np.ndarray],
          steps: int, val_sets: list[np.ndarray] | None = None) -> tuple[Classifier, int, bool]:
    """Adam on one classifier per training set, side by side, for up to ``steps`` steps.

    With ``val_sets``, stop once their mean score has not improved for ``patience`` checks: Top-1
    (ties to the lower loss) for single-label sets, the loss for multi-label ones.

    Returns:
        (the classifiers, the step with the best mean validation score (``steps`` without
        ``val_sets``), whether training stopped before ``steps``)
    """
    model = _new_classifier(x, train_sets, y.shape[1], cfg.dropout, cfg.hidden_units, cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    queues: list[list[np.ndarray]] = [[] for _ in train_sets]
    val = None if val_sets is None else _padded(val_sets, x.device)
    best_score, best_step = (float("inf"),), steps
    for step in range(1, steps + 1):
        batch = []
        for rows, queue in zip(train_sets, queues):
            if not queue:  # a new pass over this member's clips, in a new order
                queue.extend(np.array_split(rng.permutation(rows), -(-len(rows) // cfg.batch_size)))
            batch.append(queue.pop())
        model.train()
        optimizer.zero_grad(set_to_none=True)
        _member_losses(model, x, y, *_padded(batch, x.device), multi_label)[0].sum().backward()
        optimizer.step()
        if val is not None and step % cfg.eval_every == 0:
            model.eval()
            with torch.no_grad():
                loss, top1 = (float(v.mean()) for v in _member_losses(model, x, y, *val, multi_label))
            score = (loss,) if multi_label else (-top1, loss)
            if score < best_score:
                best_score, best_step = score, step
            elif step - best_step >= cfg.patience * cfg.eval_every:
                return model.eval(), best_step, True
    return model.eval(), best_step, False


def _lbfgs_search(x: torch.Tensor, y: torch.Tensor, multi_label: bool, cfg: FitConfig,
                  train_sets: list[np.ndarray], val_sets: list[np.ndarray]) -> Fit:
    """Pick ``l2`` from ``cfg.penalties`` on the validation splits, then fit on all clips.

    The splits are fitted side by side as one batched problem (they share no weights, so its
    optimum is each split's own), walking the penalties from the strongest to the weakest, every
    fit starting from the previous one's solution: the warm-started path scikit-learn's
    ``LogisticRegressionCV`` takes. The problem is strictly convex, so the start changes how
    many iterations reach the optimum, not where it is. Fits run in float64: in float32 the
    line search can stall near the optimum and spend the whole evaluation budget on one step.
    """
    model, scores = _zero_linear(x, y, train_sets, cfg.seed), {}
    rows, val = _padded(train_sets, x.device), _padded(val_sets, x.device)
    for l2 in sorted(cfg.penalties, reverse=True):  # each fit continues from the previous one's weights
        _lbfgs(model, x, y, rows, multi_label, l2, cfg)
        with torch.no_grad():
            loss, top1 = (float(v.mean()) for v in _member_losses(model, x, y, *val, multi_label))
        scores[l2] = (loss,) if multi_label else (-top1, loss)
    l2 = min(scores, key=scores.get)
    everything = [np.arange(len(x))]
    model = _zero_linear(x, y, everything, cfg.seed)
    iterations, converged = _lbfgs(model, x, y, _padded(everything, x.device), multi_label, l2, cfg)
    return Fit(model.eval(), iterations, converged, l2)


def _zero_linear(x: torch.Tensor, y: torch.Tensor, sets: list[np.ndarray], seed: int) -> Classifier:
    """One linear classifier per index set, standardised with its set's statistics, weights at zero."""
    model = _new_classifier(x, sets, y.shape[1], 0.0, 0, seed).to(x.dtype)
    with torch.no_grad():
        model.weights[0].zero_()
        model.biases[0].zero_()
    return model


def _lbfgs(model: Classifier, x: torch.Tensor, y: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
           multi_label: bool, l2: float, cfg: FitConfig) -> tuple[int, bool]:
    """Full-batch L-BFGS of the linear ``model``'s members, each on its padded index set of ``rows``,
    from their current weights: (iterations, converged within the budget)."""
    weight, bias = model.weights[0], model.biases[0]
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=cfg.max_steps, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = _member_losses(model, x, y, *rows, multi_label)[0].sum() + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    state = optimizer.state[weight]
    iterations = int(state["n_iter"])
    return iterations, iterations < cfg.max_steps and state["func_evals"] < optimizer.defaults["max_eval"]
