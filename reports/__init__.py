"""Reports: join simulated kernels with analytical ops into error tables and plots.

Arrives with the reports issue.
"""
