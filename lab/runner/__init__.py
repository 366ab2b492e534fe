"""Running the experiments on real containers: `python -m lab run` (run.py), the lab's containers
and compose project, the run's environment, and the headless and live Locust loads."""
