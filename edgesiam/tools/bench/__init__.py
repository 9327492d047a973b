"""``edgesiam bench``: latency, cost, memory and size measurements of the shipped bundles.

:mod:`edgesiam.tools.bench.measure` holds the measurements (each a small function returning a dict),
:mod:`edgesiam.tools.bench.report` turns their JSON into a markdown table and plots, and
:mod:`edgesiam.tools.bench.cli` is the sub-command.
"""
