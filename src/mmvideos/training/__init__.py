"""Pre-training internals: the epoch data stream and checkpoints (the stage is ``mmvideos.train``)."""
