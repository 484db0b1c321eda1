"""warpbench command-line entry points, statistics and reports."""
