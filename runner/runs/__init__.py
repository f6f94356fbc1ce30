"""The run lifecycle, one place for the CLI, the API and the daemon: the job's lock, the
timeout, the history record and its index, the status and the failure class."""
