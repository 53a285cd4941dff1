"""The command line: its grammar (``parser``), its verbs (``main``), what it prints
(``console``) and the environment check (``doctor``)."""
