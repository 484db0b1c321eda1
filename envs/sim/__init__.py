"""The Warp engine: reduced-coordinate articulated rigid bodies with ground contact and muscles.

It knows nothing of observations, rewards or tasks. ``model`` turns a ``mujoco.MjModel`` into engine
arrays (bundled in ``wp.struct``s), ``kernels`` and ``linalg`` hold the Warp kernels, ``buffers`` the
fixed arrays they work on, ``plan`` replays prebuilt launches forward and in reverse, ``simulator``
describes a control step as such a plan, and ``autograd`` bridges one control step into torch autograd.
"""

from envs.sim.warp_setup import init_warp

init_warp()
