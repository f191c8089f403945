"""The notebook layer: %%task cells, cell analysis, session flow runs and run-graph widgets."""
