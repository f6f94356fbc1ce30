"""Files as a kind of system: the `files` connection (a folder) and its formats. A task writes
a file per committed batch, each under a temporary name until it is complete, so a reader never
sees half a file."""
