"""Prefect tasks that run, verify and roll back runbook steps, and the code they share.

`render` turns a step's command and validated parameters into exactly what will run.
"""
