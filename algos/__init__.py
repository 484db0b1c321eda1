"""Learning algorithms (SHAC, PWM, baselines) over the batched torch env protocol."""
