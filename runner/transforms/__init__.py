"""Transforms: the steps a task's rows go through between its reader and its writer
(`tasks[].transforms`), one module per step type, registered by name in `registry`."""
