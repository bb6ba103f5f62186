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
* ``lbfgs`` (linear classifier only): full-batch L-BFGS (scipy's L-BFGS-B, no bounds) on the
  mean loss plus ``l2 / 2 * |W|^2``, biases unpenalised: the multinomial logistic regression
  scikit-learn fits. It runs in float64 with the loss's analytic gradient (computed by torch on
  the fit's device), each split's clips standardised once per search. The penalty ``l2`` is picked from the paper's weight decay
  (1e-6, the same penalty Adam's decay puts on the mean loss) and its multiples by ten up to 1,
  on the same validation splits (by Top-1 for single-label sets, as scikit-learn's
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

torch, scipy and scikit-learn are imported where they are used, so that the settings
(:class:`FitConfig`) load without them.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from mmvideos.evaluation.lbfgs import lbfgs, member_clips, padded, standardisation, threads_for, unpack, val_scores

if TYPE_CHECKING:
    import torch

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


class Classifier:
    """``K`` independent classifiers side by side (``K = 1`` once fitted).

    Each: standardise with its own training mean and std -> dropout -> linear, or -> hidden ReLU
    layer -> dropout -> linear. Weights are ``[K, in, out]``, biases ``[K, 1, out]``; a plain
    holder of tensors (not an ``nn.Module``), so that this module imports without torch.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weights: list[torch.Tensor],
                 biases: list[torch.Tensor], dropout: float = 0.0) -> None:
        self.mean, self.std = mean[:, None], std[:, None]  # [K, 1, D]
        self.weights, self.biases, self.dropout = weights, biases, dropout

    def parameters(self) -> list[torch.Tensor]:
        """The weights and biases, what an optimiser updates."""
        return [*self.weights, *self.biases]

    def __call__(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """``[K, B, D]`` features -> ``[K, B, C]`` logits; ``[B, D]`` -> ``[B, C]`` when ``K = 1``.

        ``train`` applies dropout.
        """
        import torch

        hidden = (x - self.mean) / self.std  # [K, B, D]
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if layer:
                hidden = hidden.relu()
            hidden = torch.baddbmm(bias, torch.nn.functional.dropout(hidden, self.dropout, train), weight)
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
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

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
    classifier is refitted on all of ``x`` with the step count or penalty they chose. It lives on
    ``device`` in float32.
    """
    import torch

    held = validation_folds(y, multi_label, cfg.val_folds, cfg.seed, groups)[:cfg.val_rounds]
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    targets = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(device)
    train_sets = [np.flatnonzero(~mask) for mask in held]
    val_sets = [np.flatnonzero(mask) for mask in held]
    if cfg.solver == "lbfgs":  # in float64 (see _lbfgs_search)
        return _lbfgs_search(features.double(), targets.double(), multi_label, cfg, train_sets, val_sets)
    _, steps, stopped = _adam(features, targets, multi_label, cfg, train_sets, cfg.max_steps, val_sets)
    model, _, _ = _adam(features, targets, multi_label, cfg, [np.arange(len(x))], steps)
    return Fit(model, steps, stopped)


def predict(model: Classifier, x: np.ndarray, multi_label: bool, device: torch.device) -> np.ndarray:
    """Class probabilities ``[N, C]`` of a fitted classifier: sigmoid for multi-label, softmax otherwise."""
    import torch

    with torch.inference_mode():
        logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
        return (logits.sigmoid() if multi_label else logits.softmax(-1)).cpu().numpy()


def _new_classifier(x: torch.Tensor, sets: list[np.ndarray], num_classes: int, dropout: float, hidden_units: int,
                    seed: int) -> Classifier:
    """A classifier per index set, standardised with that set's statistics, initialised as
    ``nn.Linear`` is (uniform in +-1/sqrt(fan_in))."""
    import torch

    torch.manual_seed(seed)
    stats = [(x[rows].mean(0), x[rows].std(0, correction=0)) for rows in sets]
    mean, std = torch.stack([m for m, _ in stats]), torch.stack([s for _, s in stats])  # [K, D]
    # a feature constant over a training set carries nothing; dividing by 1 leaves it at 0
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    members, dim = mean.shape
    widths = [dim, *([hidden_units] if hidden_units else []), num_classes]
    weights, biases = [], []
    for fan_in, fan_out in zip(widths, widths[1:]):
        bound = 1 / math.sqrt(fan_in)
        weights.append(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound).to(x.device).requires_grad_())
        biases.append(torch.empty(members, 1, fan_out).uniform_(-bound, bound).to(x.device).requires_grad_())
    return Classifier(mean, std, weights, biases, dropout)


def _member_losses(model: Classifier, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, mask: torch.Tensor,
                   multi_label: bool, train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and Top-1 of each member on its own clips: two ``[K]``."""
    import torch

    logits, target = model(x[index], train), y[index]  # [K, B, C]
    if multi_label:
        per_clip = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
    else:
        per_clip = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(0, 1).argmax(1),
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
    import torch

    model = _new_classifier(x, train_sets, y.shape[1], cfg.dropout, cfg.hidden_units, cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    queues: list[list[np.ndarray]] = [[] for _ in train_sets]
    val = None if val_sets is None else padded(val_sets, x.device)
    best_score, best_step = (float("inf"),), steps
    for step in range(1, steps + 1):
        batch = []
        for rows, queue in zip(train_sets, queues):
            if not queue:  # a new pass over this member's clips, in a new order
                queue.extend(np.array_split(rng.permutation(rows), -(-len(rows) // cfg.batch_size)))
            batch.append(queue.pop())
        optimizer.zero_grad(set_to_none=True)
        _member_losses(model, x, y, *padded(batch, x.device), multi_label, train=True)[0].sum().backward()
        optimizer.step()
        if val is not None and step % cfg.eval_every == 0:
            with torch.no_grad():
                loss, top1 = (float(v.mean()) for v in _member_losses(model, x, y, *val, multi_label))
            score = (loss,) if multi_label else (-top1, loss)
            if score < best_score:
                best_score, best_step = score, step
            elif step - best_step >= cfg.patience * cfg.eval_every:
                return _detached(model), best_step, True
    return _detached(model), best_step, False


def _detached(model: Classifier) -> Classifier:
    """The fitted classifier without its autograd state."""
    return Classifier(model.mean[:, 0], model.std[:, 0], [w.detach() for w in model.weights],
                      [b.detach() for b in model.biases], model.dropout)


def _lbfgs_search(x: torch.Tensor, y: torch.Tensor, multi_label: bool, cfg: FitConfig,
                  train_sets: list[np.ndarray], val_sets: list[np.ndarray]) -> Fit:
    """Pick ``l2`` from ``cfg.penalties`` on the validation splits, then fit on all clips.

    ``x``, ``y`` in float64: in float32 the line search can stall near the optimum. The splits
    are fitted side by side as one batched problem (they share no weights, so its optimum is each
    split's own), walking the penalties from the strongest to the weakest, every fit starting
    from the previous one's solution: the warm-started path scikit-learn's
    ``LogisticRegressionCV`` takes. The problem is strictly convex, so the start changes how
    many iterations reach the optimum, not where it is. The loss and its gradient are computed
    on ``x``'s device, scipy's L-BFGS-B steps on the CPU. Returns the final classifier in float32.
    """
    with threads_for(len(train_sets) * len(x) * x.shape[1] * y.shape[1]):
        return _lbfgs_path(x, y, multi_label, cfg, train_sets, val_sets)


def _lbfgs_path(x: torch.Tensor, y: torch.Tensor, multi_label: bool, cfg: FitConfig,
                train_sets: list[np.ndarray], val_sets: list[np.ndarray]) -> Fit:
    """:func:`_lbfgs_search`'s work."""
    import torch

    mean, std = standardisation(x, train_sets)
    train = member_clips(x, y, train_sets, mean, std, multi_label)
    val = member_clips(x, y, val_sets, mean, std, multi_label)
    params, scores = np.zeros(len(train_sets) * (x.shape[1] + 1) * y.shape[1]), {}  # flat W, then b
    for l2 in sorted(cfg.penalties, reverse=True):  # each fit continues from the previous one's weights
        params, _, _ = lbfgs(params, train, multi_label, l2, cfg.max_steps)
        loss, top1 = val_scores(params, val, multi_label)
        scores[l2] = (loss,) if multi_label else (-top1, loss)
    l2 = min(scores, key=scores.get)
    everything = [np.arange(len(x))]
    mean, std = standardisation(x, everything)
    clips = member_clips(x, y, everything, mean, std, multi_label)
    params, iterations, converged = lbfgs(np.zeros((x.shape[1] + 1) * y.shape[1]), clips, multi_label, l2, cfg.max_steps)
    weight, bias = unpack(torch.from_numpy(params).to(x.device), clips)
    model = Classifier(mean.float(), std.float(), [weight.float()], [bias.float()])
    return Fit(model, iterations, converged, l2)
