"""The main job (`runbooks up`): a Prefect server, every runbook served, the alert receiver and
the reconciler, in one process tree on localhost."""
