"""The data plane: where every stage's bulk output lives and how it is read and written.

``storage`` (local folders and ``gs://`` behind one API, with retries and a deadline),
``sources`` (listing a source of videos: folder, ``gs://`` prefix or URI list), ``dataroot``
(content-addressed units, manifests, gathers, garbage collection), ``shards`` (tar shards of
clips and features), ``atomic`` (writes that are whole or absent), ``files`` (hashing and the
download cache) and ``media`` (probing and decoding audio and video with PyAV).
Nothing here knows a pipeline stage: stages import this package, never the reverse.
"""
