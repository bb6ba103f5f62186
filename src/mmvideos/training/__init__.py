"""Pre-training internals: the loop, the epoch data stream, checkpoints, each rank's entry point.

The stage callers import is :mod:`mmvideos.stages.pretrain`; ``python -m mmvideos.training`` is what
torchrun starts on every rank."""
