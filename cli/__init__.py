"""The `runbooks` command line: one module per command group, one error boundary in main."""
