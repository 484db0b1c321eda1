"""Optimisation landscapes of a policy's H-step objective (evaluation spec §4-§6).

- ``directions``: filter-normalised random directions and batched parameter perturbations;
- ``objectives``: J_sim^H and J_wm^H for many parameter vectors at once (common random numbers);
- ``ball_wall``: the paper's pedagogical ball-and-wall objective and its two regressors.
"""
