"""Plans: the difference between the definitions on disk and the applied state, and applying it."""
