"""Helpers for the browser test: a throw-away JupyterLab server and JupyterLab page actions."""
