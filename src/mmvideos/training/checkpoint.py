"""Checkpoints: a resumable ``checkpoint.pt`` and the consumer-facing model export.

``checkpoint.pt`` holds everything an uninterrupted run would still have in memory at an epoch
boundary: weights, the Adam moments, the learning-rate schedule, epoch and global step, the
metrics so far and every RNG state (python, numpy, torch, CUDA) of every rank. All of it is
tensors, numbers, strings, lists and dicts, so it loads with ``torch.load(weights_only=True)``:
no pickled code runs when a checkpoint is read.

The export is what other stages use: ``model.safetensors`` (the weights) beside ``model.json``
(``arch``, ``num_classes``, ``width_mult``, ``vocabulary`` (a parquet file in the same folder),
``feature_preset`` and ``epoch``); :func:`load_model` rebuilds the network from the pair.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mmvideos.data.atomic import atomic_path, write_json
from mmvideos.data.files import sha256_file
from mmvideos.models import build_model

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
MODEL_CARD = "model.json"
VOCABULARY = "vocabulary.parquet"


def rng_state() -> dict[str, Any]:
    """This process's RNG states as plain tensors and numbers (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]),
                  "has_gauss": int(numpy_state["has_gauss"]), "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


#: A checkpoint file ends with this marker and the SHA-256 of every byte before it: the file
#: carries its own digest, so no second object has to be published with it (a pair of objects
#: written by two publishers at once could end up from different writers).
TRAILER = b"\nmmvideos-sha256:"
TRAILER_BYTES = len(TRAILER) + 64


def save_checkpoint(path: str | Path, **state: Any) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically, ending with
    its own SHA-256 (:data:`TRAILER`), which :func:`load_checkpoint` verifies."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    digest = hashlib.sha256(buffer.getbuffer()).hexdigest()  # of the bytes in memory: no second read
    buffer.write(TRAILER + digest.encode())
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buffer.getbuffer())
    return Path(path)


class CorruptCheckpoint(ValueError):
    """A checkpoint whose bytes do not match the SHA-256 it ends with (or that lacks one)."""


def checkpoint_body(data: bytes, name: str | Path) -> bytes:
    """The torch bytes of checkpoint file ``data`` once they match the digest they end with;
    ``CorruptCheckpoint`` naming ``name`` when they do not."""
    body, trailer = data[:-TRAILER_BYTES], data[-TRAILER_BYTES:]
    if not trailer.startswith(TRAILER):
        raise CorruptCheckpoint(f"{name} is not a complete mmvideos checkpoint (no SHA-256 at its end)")
    if hashlib.sha256(body).hexdigest().encode() != trailer[len(TRAILER):]:
        raise CorruptCheckpoint(f"{name} is corrupt: its bytes no longer match the SHA-256 written with them")
    return body


def load_checkpoint(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """Read a :func:`save_checkpoint` file on the CPU, allowing no pickled code; a file whose
    bytes no longer match its SHA-256 is a ``CorruptCheckpoint`` error naming ``name`` (where
    the file came from; ``path`` by default), never silently loaded."""
    body = checkpoint_body(Path(path).read_bytes(), name or path)
    return torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)


def verify(path: str | Path, sha256: str) -> None:
    """Raise ``ValueError`` when ``path``'s SHA-256 is not ``sha256`` (nothing to check when it is empty)."""
    if sha256 and sha256_file(path) != sha256:
        raise ValueError(f"{path} is corrupt: its SHA-256 no longer matches the one written with it; "
                         "delete it to start over, or restore it")


def export_model(out_dir: str | Path, model: nn.Module, arch: str, width_mult: float,
                 epoch: int, seed: int | None = None) -> Path:
    """Write ``model.safetensors`` and ``model.json`` for ``model`` (``vocabulary.parquet`` must
    already be in ``out_dir``; ``seed``: the pre-training seed, recorded when given); returns the weights' path."""
    out_dir = Path(out_dir)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    with atomic_path(out_dir / WEIGHTS) as tmp:
        # one metadata entry: safetensors keeps it in a Rust HashMap, whose order (and so the
        # file's bytes) would change from process to process with two
        save_file(tensors, str(tmp), metadata={"mmvideos": json.dumps({"arch": arch, "epoch": epoch}, sort_keys=True)})
    write_json({"arch": arch, "num_classes": int(model.num_classes), "width_mult": width_mult,
                "vocabulary": VOCABULARY, "feature_preset": "paper", "epoch": epoch,
                "sha256": sha256_file(out_dir / WEIGHTS)} | ({} if seed is None else {"seed": seed}),
               out_dir / MODEL_CARD)
    return out_dir / WEIGHTS


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The pre-trained network in eval mode, from a pretrain output folder or a file in it.

    Args:
        checkpoint: the folder holding ``model.safetensors`` and ``model.json``, or either file.
        device: where to put the model.

    Returns:
        The :class:`mmvideos.models.AudioTagger` (``embed(x) -> [B, 128]``), in eval mode.
    """
    folder = Path(checkpoint)
    folder = folder if folder.is_dir() else folder.parent
    card = json.loads((folder / MODEL_CARD).read_text())
    model = build_model(card["arch"], card["num_classes"], card["width_mult"])
    verify(folder / WEIGHTS, card.get("sha256", ""))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.to(device).eval()
