"""``mssql2pg reconcile``: prove that the target matches the source, name every differing key, and repair it.

Modules: :mod:`.canonical` (the text form of a value both engines compute the same way), :mod:`.statements`
(the checksum and row statements, built once for any relation), :mod:`.source` and :mod:`.target` (the two
relations), :mod:`.compare` (segment checksums, narrowing, row comparison), :mod:`.live` (the re-check on a
replicating system), :mod:`.run` (a whole run over the configured tables). See ``docs/reconciliation.md``.
"""
