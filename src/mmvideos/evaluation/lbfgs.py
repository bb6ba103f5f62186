"""The L-BFGS optimiser of the linear transfer head (:mod:`mmvideos.evaluation.fit`'s ``lbfgs``).

Full-batch L-BFGS (scipy's L-BFGS-B, no bounds) of the mean loss plus ``l2 / 2 * |W|^2``, biases
unpenalised, in float64 with the loss's analytic gradient computed by torch on the fit's device.
Several linear members (one per validation split) are fitted side by side as one flat problem:
they share no weights, so its optimum is each member's own. The penalty search over ``l2`` that
drives it is :func:`mmvideos.evaluation.fit.fit_classifier`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class Clips:
    """Each member's clips, padded to one width, as float64 tensors: standardised features
    ``x [K, B, D]`` (0 where padded), targets ``y [K, B, C]`` (one-hot for single-label sets) and
    ``weight [K, B]`` (1 / the member's clip count, 0 where padded), so that a weighted sum over
    clips is a member's mean."""

    x: torch.Tensor
    y: torch.Tensor
    weight: torch.Tensor


def member_clips(x: torch.Tensor, y: torch.Tensor, sets: list[np.ndarray], mean: torch.Tensor, std: torch.Tensor,
           multi_label: bool) -> Clips:
    """Index set ``k`` of ``x [N, D]``, ``y [N, C]``, standardised with ``mean[k]``, ``std[k]``."""
    import torch

    index, mask = padded(sets, x.device)
    features = (x[index] - mean[:, None]) / std[:, None] * mask[..., None]  # [K, B, D]
    targets = y[index]
    if not multi_label:
        targets = torch.nn.functional.one_hot(targets.argmax(-1), y.shape[1]).to(x.dtype)
    weight = mask / mask.sum(1, keepdim=True)
    return Clips(features, targets, weight.to(x.dtype))


def clip_losses(logits: torch.Tensor, y: torch.Tensor, multi_label: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip: the loss ``[K, B]`` and its gradient with respect to the logits ``[K, B, C]``.

    Sigmoid + binary cross-entropy averaged over classes for multi-label sets, softmax +
    cross-entropy otherwise.
    """
    import torch

    if multi_label:
        losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(-1)
        return losses, (logits.sigmoid() - y) / y.shape[-1]
    log_p = logits.log_softmax(-1)
    return -(y * log_p).sum(-1), log_p.exp() - y


def unpack(params: torch.Tensor, clips: Clips) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat parameter vector -> weights ``[K, D, C]`` and biases ``[K, 1, C]`` (views)."""
    members, _, dim = clips.x.shape
    classes = clips.y.shape[-1]
    split = members * dim * classes
    return params[:split].view(members, dim, classes), params[split:].view(members, 1, classes)


def objective(params: np.ndarray, clips: Clips, multi_label: bool, l2: float) -> tuple[float, np.ndarray]:
    """Sum over members of the mean loss plus ``l2 / 2 * |W|^2``, and its gradient (biases
    unpenalised): with ``P`` the probabilities, ``dW = X^T (P - Y) / count + l2 W``."""
    import torch

    weight, bias = unpack(torch.from_numpy(params).to(clips.x.device), clips)
    losses, grad_logits = clip_losses(torch.baddbmm(bias, clips.x, weight), clips.y, multi_label)
    grad_logits *= clips.weight[..., None]
    loss = (losses * clips.weight).sum() + 0.5 * l2 * weight.square().sum()
    grad_weight = torch.bmm(clips.x.transpose(1, 2), grad_logits) + l2 * weight  # [K, D, C]
    return float(loss), torch.cat([grad_weight.flatten(), grad_logits.sum(1).flatten()]).cpu().numpy()


def val_scores(params: np.ndarray, clips: Clips, multi_label: bool) -> tuple[float, float]:
    """Mean over members of the mean loss and of Top-1 on their clips."""
    import torch

    weight, bias = unpack(torch.from_numpy(params).to(clips.x.device), clips)
    logits = torch.baddbmm(bias, clips.x, weight)  # [K, B, C]
    losses, _ = clip_losses(logits, clips.y, multi_label)
    hits = clips.y.gather(-1, logits.argmax(-1, keepdim=True))[..., 0]  # [K, B]: top class is a true one
    return float((losses * clips.weight).sum(1).mean()), float((hits * clips.weight).sum(1).mean())


def standardisation(x: torch.Tensor, sets: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each index set's mean and std ``[K, D]``; a feature constant over a set carries nothing,
    and dividing it by 1 leaves it at 0."""
    import torch

    mean = torch.stack([x[rows].mean(0) for rows in sets])
    std = torch.stack([x[rows].std(0, correction=0) for rows in sets])
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


#: Below this many multiply-adds per product of the features and the weights, a fit runs on one CPU
#: thread: the steps are too small to share, and idle BLAS/OpenMP threads spinning for work
#: made the demo's fits twenty times slower on two busy cores.
SMALL_PROBLEM = 1 << 24


@contextlib.contextmanager
def threads_for(work: int) -> Iterator[None]:
    """One torch and BLAS thread while a problem of ``work`` multiply-adds is below :data:`SMALL_PROBLEM`."""
    if work >= SMALL_PROBLEM:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


#: L-BFGS stops once every gradient entry is within GTOL of 0 (the test and tolerance of the
#: torch.optim.LBFGS this replaced, whose choices it reproduces), or once a step lowers the
#: objective by less than FTOL of it. At the weakest penalties on separable features the loss is so
#: flat there that this stops short of the exact optimum; so did torch's LBFGS.
GTOL, FTOL = 1e-6, 1e-12


def lbfgs(params: np.ndarray, clips: Clips, multi_label: bool, l2: float,
          max_steps: int) -> tuple[np.ndarray, int, bool]:
    """Full-batch L-BFGS of the linear members from ``params`` (flat weights, then biases):
    (the solution, iterations, whether it stopped before the budget of ``max_steps``
    iterations and 1.25 times as many evaluations ran out)."""
    from scipy.optimize import minimize

    result = minimize(objective, params, args=(clips, multi_label, l2), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_steps, "maxfun": max_steps * 5 // 4, "maxcor": 20,
                               "gtol": GTOL, "ftol": FTOL})
    return result.x, int(result.nit), result.status != 1  # 1: a budget ran out


def padded(sets: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged index sets -> ``[K, width]`` indices (0 where padded) and a validity mask."""
    import torch

    width = max(len(rows) for rows in sets)
    index, mask = np.zeros((len(sets), width), dtype=np.int64), np.zeros((len(sets), width), dtype=bool)
    for k, rows in enumerate(sets):
        index[k, :len(rows)], mask[k, :len(rows)] = rows, True
    return torch.from_numpy(index).to(device), torch.from_numpy(mask).to(device)
