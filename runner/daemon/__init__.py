"""`runner daemon`: watch the definitions, reconcile them, fire jobs on cron and triggers, run
them on a worker pool (`runner.daemon.main` ties the parts together)."""
