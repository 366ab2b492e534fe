"""Where things run: CPU sets, the layout a perf2 rate was measured in, the wake-up floors that say
what a layout costs, and `python -m lab pin`."""
