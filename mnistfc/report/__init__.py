"""From shards to numbers people can trust: estimators and frame selections at the bottom,
the typed read (``aggregate``), the tables (``budget``, ``exercise``, ``confirm``), figures
and rendering (``plots``, ``render``), the sections, and a folder's or study's report
(``writer``). It reads results and writes report files; it never trains or submits."""
