"""The results folder: every file a sweep keeps in it, and the only code that opens them.

``schema``, ``result`` and ``labels`` are a shard's format; ``shards`` writes and reads
them (one JSON per trial, atomically, typed); ``plan`` is ``sweep.json``; ``claims`` the
per-trial locks and the plan lock; ``heartbeat`` a running pack's progress file;
``checkpoints`` a pack's saved state; ``study_record`` a study's ``study.json``. Reports
are written by ``mnistfc.report`` into their own subfolders.
"""
