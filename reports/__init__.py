"""Reports: join simulated kernels with analytical ops into error tables and plots.

The report stage: join, metrics, tables, plots, pages, extrapolation, hardware comparison.
"""
