"""The web layer: a Jupyter server ExtensionApp serving the REST run API (and later the dashboard).

The only package that imports tornado and jupyter_server.
"""
