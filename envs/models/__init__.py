"""Model builders: MuJoCo ``MjModel`` construction for the warpbench environments."""
