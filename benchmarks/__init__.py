"""Performance figures for leopard-etl, each a ratio against a baseline measured in the same run.

The machines we measure on are shared and noisy, so an absolute time says little; a
ratio to a baseline doing comparable work (a bare ``orjson`` loop, ``SELECT count(*)``,
``python -c pass`` …) measured minutes apart on the same machine says much more.
Run ``python -m benchmarks all --size small`` (under two minutes) or ``--size large``.
Code under test is imported lazily, so a missing module shows as a skipped row.
"""
