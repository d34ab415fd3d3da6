"""mmrec.report: the `report` stage, one comparison of every trained model (tables, paired
intervals, plots, report.html).

Layer: above `evaluate` (it reads what the evaluate stage wrote, under the same protocol).
"""
