"""Tasks: how a protocol turns per-image embeddings into its metrics. One module each.

A task class is registered in ``TASKS`` and built as ``Task(protocol, data_root)``. It
provides ``faces()`` (the FaceSet to degrade, super-resolve and embed) and
``score(sr_emb, hr_emb) -> (metrics, arrays)``; the runner adds the image metrics.
"""
