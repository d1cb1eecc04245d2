"""Evaluation of the anomaly checks (issue 4, `make eval`): simulated homes with labelled
anomalies and real recorded homes, replayed through `hearth replay`, scored against the labels.

Modules, one job each: routine (the resident's day), climate (rooms' air), sensors (readings
of both), anomalies (injections and their labels), simulator (a home to files), realdata
(recorded homes) and reference (what DESIGN's rules find in them), runner (replay
subprocesses), labels and scoring (alerts against labels), report (table and JSON), harness
(all of it), __main__ (the command line).
"""
