"""A sweep on an executor: plan and submit it (``submit``), follow it (``progress``)."""
