"""Execution engines other than the default in-process one (DuckDB + pandas).

Each engine reads the same sources with the same readers' rules and runs the same
pure cohort rules (:mod:`leopard_etl.cohort`); only where the work happens differs.
:mod:`.spark` runs a file or OMOP run on Apache Spark (``pip install 'leopard-etl[spark]'``).
"""
