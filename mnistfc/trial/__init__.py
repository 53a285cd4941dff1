"""What a trial is: its config (``config``), the sweep specs it comes from (``spec``), and a
spec's expansion into planned trials with stable ids (``search``)."""
