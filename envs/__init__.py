"""Differentiable batched locomotion environments on a Warp engine.

Env protocol (what algorithms may rely on; all tensors are torch, batched over ``num_envs``)::

    env = envs.make("ant", num_envs=64, device="cpu", seed=0, **overrides)
    env.num_envs, env.obs_dim, env.act_dim, env.max_episode_steps, env.device
    obs = env.reset()                       # [N, obs_dim] float32, resets every env
    obs, reward, terminated, truncated, info = env.step(actions)   # actions [N, act_dim] in [-1, 1]
    info["obs_before_reset"]                # [N, obs_dim]: the observation reached before auto-reset
    info["reward_terms"]                    # name -> [N]: the reward's terms (they sum to it)
    info["would_terminate"]                 # [N] bool: the termination condition, even with early
                                            #   termination off (optional; datasets record it)
    obs = env.detach_state()                # cut the autograd graph here (SHAC window start)
    env.state_dict(), env.load_state_dict(state)                   # exact resume

``step`` is differentiable through torch autograd with respect to the actions and the incoming state
whenever grad mode is on; envs that are done are reset inside ``step`` (which cuts their gradient path).

Citations in the code (Q1..Q14, "envs §7.3", "algorithms §3.5") are explained in ``docs/quirks.md``.

Importing this package is cheap: task modules (torch, MuJoCo, Warp) load on the first ``make``; the
gymnasium ids are registered as entry-point strings, so ``gymnasium.make("warpbench/Ant-v0")`` works
after ``import envs`` without loading anything else.
"""

from envs.gym_ids import register_gym_ids
from envs.registry import make, names, parse_override, register

register("ant", "envs.tasks.ant:Ant")
register("humanoid", "envs.tasks.humanoid:Humanoid")
register("snu_humanoid", "envs.tasks.snu_humanoid:SnuHumanoid")
register("cartpole", "envs.tasks.cartpole:CartPole")
register("double_pendulum", "envs.tasks.double_pendulum:DoublePendulum")
register("hopper", "envs.tasks.hopper:Hopper")
register("cheetah", "envs.tasks.cheetah:Cheetah")
register_gym_ids()

__all__ = ["make", "names", "parse_override", "register"]
