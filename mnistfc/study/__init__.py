"""The whole study: the single model (``single``), the confirm stage planned from the
searches' shards (``confirm``), every part run here (``run``) or as jobs (``jobs``)."""
