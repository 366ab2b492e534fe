"""The experiment runner: containers, experiments, the results store and the claims' verdicts."""
