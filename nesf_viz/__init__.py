"""nesf_viz."""
