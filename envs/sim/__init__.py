"""The Warp engine: reduced-coordinate articulated rigid bodies with ground contact and muscles.

It knows nothing of observations, rewards or tasks. ``model`` turns a ``mujoco.MjModel`` into engine
arrays, ``kernels`` and ``linalg`` hold the Warp kernels, ``simulator`` steps them and ``autograd``
bridges one control step into torch autograd.
"""

from envs.sim.warp_setup import init_warp

init_warp()
