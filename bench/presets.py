"""Published settings and budget presets: what a run's settings are before ``--set``.

A run's settings are one nested dict with three sections (``config.json["settings"]``):

- ``env``: ``num_envs`` plus keyword overrides passed to ``envs.make`` (a ``None`` value means "the env's
  default" and is not passed). Any ``env.<name>`` key may be set; the env rejects names it does not know.
- ``algo``: the algorithm's config dataclass as a dict (e.g. :class:`algos.shac.SHACConfig`).
- ``run``: :class:`RunConfig` (evaluation protocol).

Settings are resolved as: the algorithm variant's published settings for the env (the tables below; the
algorithms themselves know no env names), then the budget preset, then ``--set`` overrides in order
(``bench.settings``). The presets of world-model pretraining (:class:`PretrainSettings`) are here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from algos.bptt import BPTTConfig
from algos.config import JsonConfig
from algos.mppi import MPPIConfig
from algos.ppo import PPOConfig
from algos.pwm import PWMConfig
from algos.sac import SACConfig
from algos.shac import SHACConfig
from algos.tdmpc2 import TDMPC2Config, tdmpc2_world_model
from algos.wm_training import WMTrainConfig
from algos.world_model import WorldModelConfig, world_model_config
from bench.algorithms import check_algo
from bench.settings import ConfigError, apply_overrides
from bench.variants import DEFAULT_VARIANTS

PRESETS = ("smoke", "cpu", "paper")
PRESET_HELP = {
    "smoke": "seconds: tiny nets, 4 envs x 8 steps (BPTT: the whole 32-step episode) x 4 iterations, "
    "32-step episodes, 2 eval episodes",
    "cpu": "one CPU core: SHAC 64 envs x 32 steps x 1000 iterations (2.05M env-steps); PPO 256 envs x 32 "
    "x 250; SAC 64 envs x 128 x 250; BPTT 32 envs x 1000 x 64; PWM (64 envs) online 2000 / offline 500 "
    "iterations, the small world model (latent 128, hidden 256); TD-MPC2 16 envs x 64 steps x 100 "
    "iterations (102k env-steps), small model and planner",
    "paper": "the published budget of the variant for the env (e.g. SHAC pwm Ant: 128 x 32 x 2000 = 8.2M)",
}
CPU_NUM_ENVS = 64
CPU_ITERATIONS = 1000
GENERIC_NUM_ENVS = 64
ENV_DEFAULTS = {"early_termination": None, "stochastic_init": None, "episode_length": None}

# -- published settings (algorithms §2, §2.1, §3.7, §3.8; envs §11.1: NVlabs/DiffRL cfg/shac/*.yaml) ------

_SLOW_TARGET = {"target_critic_alpha": 0.995}
VARIANTS: dict[str, dict[str, Any]] = {
    "shac": {
        # FoRL/PWM's SHAC (Mish, 3-critic minimum, return normalisation): the default for PWM comparisons.
        "pwm": SHACConfig(),
        # The original SHAC (DiffRL): ELU, one critic with a Polyak target.
        "diffrl": SHACConfig(
            activation="elu",
            actor_hidden=(128, 64, 32),
            critic_hidden=(64, 64),
            num_critics=1,
            target_critic_alpha=0.2,
            critic_lr=2e-3,
            ret_rms=False,
            critic_grad_clip=1.0,
        ),
    },
    # The released single-task driver (online) and the frozen-model mode (offline).
    "pwm": {"online": PWMConfig(mode="online"), "offline": PWMConfig(mode="offline")},
    # The paper's other contenders (algorithms §6): rl_games configs of the fork by default, DiffRL's as
    # variants. BPTT exists in DiffRL only.
    "ppo": {"fork": PPOConfig(), "diffrl": PPOConfig(hidden=(128, 64, 32), lr=3e-4)},
    "sac": {
        "fork": SACConfig(),
        "diffrl": SACConfig(
            actor_hidden=(256, 128, 64), critic_hidden=(256, 128, 64), alpha_lr=5e-3, init_alpha=1.0
        ),
    },
    "bptt": {"diffrl": BPTTConfig()},
    # TD-MPC2's single-task defaults; "pwm": how PWM's world models were trained (algorithms §4:
    # horizon=16 rho=0.99 batch_size=1024 mpc=false).
    "tdmpc2": {
        "tdmpc2": TDMPC2Config(),
        "pwm": TDMPC2Config(horizon=16, rho=0.99, batch_size=1024, plan=False),
    },
}
_SAC_WIDE = {"actor_hidden": (512, 256), "critic_hidden": (512, 256)}
PER_ENV: dict[tuple[str, str], dict[str, tuple[dict[str, Any], int]]] = {
    ("shac", "pwm"): {
        "ant": ({"max_epochs": 2000}, 128),
        "humanoid": ({"max_epochs": 3000}, 64),
        "snu_humanoid": ({"max_epochs": 5000}, 64),
        "hopper": ({"max_epochs": 2000}, 64),
    },
    ("shac", "diffrl"): {
        "ant": ({}, 64),
        "hopper": ({"critic_lr": 2e-4}, 256),
        "cheetah": ({}, 64),
        "cartpole": (
            {
                "actor_hidden": (64, 64),
                "critic_hidden": (64, 64),
                "actor_lr": 1e-2,
                "critic_lr": 1e-3,
                "max_epochs": 500,
            },
            64,
        ),
        "humanoid": (
            {"actor_hidden": (256, 128), "critic_hidden": (128, 128), "critic_lr": 5e-4, **_SLOW_TARGET},
            64,
        ),
        "snu_humanoid": (
            {"actor_hidden": (512, 256), "critic_hidden": (256, 256), "critic_lr": 5e-4, **_SLOW_TARGET},
            64,
        ),
    },
    ("pwm", "online"): {"ant": ({}, 128)},
    ("pwm", "offline"): {"ant": ({}, 128)},
    # Actors per env from the fork's env ppo:/sac: blocks and DiffRL's per-env configs (algorithms §6); the
    # spec gives no DiffRL-era PPO/SAC humanoid nor any BPTT humanoid/SNU settings (generic: 64 envs).
    ("ppo", "fork"): {"ant": ({}, 2048), "humanoid": ({}, 4096), "snu_humanoid": ({}, 2048)},
    ("ppo", "diffrl"): {
        "ant": ({}, 2048),
        "snu_humanoid": ({"hidden": (512, 512, 256), "max_epochs": 20000}, 1024),
    },
    ("sac", "fork"): {
        "ant": ({}, 128),
        "humanoid": ({"batch_size": 2048, **_SAC_WIDE}, 64),
        "snu_humanoid": ({"batch_size": 8192, **_SAC_WIDE}, 256),
    },
    ("sac", "diffrl"): {
        "ant": ({}, 128),
        "snu_humanoid": ({"actor_hidden": (512, 512, 512, 256), "critic_hidden": (512, 512, 512, 256)}, 256),
    },
    ("bptt", "diffrl"): {"ant": ({}, 32)},
    # TD-MPC2 steps one env (10M steps = 10,000 iterations of 1000 steps).
    **{
        ("tdmpc2", v): {env: ({}, 1) for env in ("ant", "humanoid", "snu_humanoid")}
        for v in ("tdmpc2", "pwm")
    },
}
"""Per (algo, variant) and env: (settings that differ from the variant's, number of training envs).
Envs without an entry get the variant's settings and 64 envs (PWM's SHAC configs cover ant, hopper,
humanoid, SNU and anymal; DiffRL's cartpole, hopper, cheetah, ant, humanoid and SNU; none has the double
pendulum)."""

PRETRAIN_PAPER_STEPS = {"hopper": 50_000, "ant": 100_000, "humanoid": 200_000, "snu_humanoid": 200_000}
"""World-model pretraining steps per env (the PWM README); other envs get PRETRAIN_DEFAULT_STEPS."""
PRETRAIN_DEFAULT_STEPS = 50_000

# One CPU core: a paper-size world-model step (batch 256 x 17) takes ~1.5 s, a "small" one ~0.2 s; an online
# ant iteration with the small model (8 model steps) ~2.1 s, so 2,000 online iterations (2.05M env steps, the
# budget at which the reference's own ant PWM is at 634-2,316) take about 70 minutes on one core.
PWM_CPU_EPOCHS = {"online": 2000, "offline": 500}
PWM_CPU_DATA_EPOCHS = 150
"""SHAC iterations of the PWM pipeline's data stage under the cpu preset (307k env steps, ~6 min on a core):
data from a policy that walks but is far from converged, as the reference's offline data mixes skills."""


def pwm_data_overrides(preset: str) -> list[str]:
    """``--set`` overrides of the PWM pipeline's data stage (SHAC with ``--save-data``): early termination
    off, how the reference recorded its data; under the cpu preset also a short SHAC run."""
    overrides = ["env.early_termination=false"]
    if preset == "cpu":
        overrides.append(f"algo.max_epochs={PWM_CPU_DATA_EPOCHS}")
    return overrides


CPU_WORLD_MODEL = "small"
"""World-model size of the cpu presets (bench.pretrain and a PWM model trained from scratch)."""
SMOKE_NETWORKS = {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "critic_iterations": 2}
BASELINE_CPU = {"ppo": (256, 250), "sac": (64, 250), "bptt": (32, 64)}
"""(envs, iterations) of the cpu preset of PPO, SAC and BPTT: SHAC's 2.05M env-steps, with PPO on more envs
(its regime is many envs; 32 steps each), SAC on 128 steps per iteration, BPTT on 1000-step windows."""
BASELINE_SMOKE = {
    "ppo": {"horizon": 8, "hidden": (32, 32)},
    "sac": {
        "steps_per_iteration": 8,
        "batch_size": 16,
        "buffer_size": 1024,
        "actor_hidden": (32, 32),
        "critic_hidden": (32, 32),
    },
    "bptt": {"actor_hidden": (32, 32)},  # its window is the smoke episode: 32 steps
}


@dataclass(frozen=True)
class RunConfig:
    eval_episodes: int = 16
    """Deterministic evaluation episodes per evaluation point: one env each, run to its first episode end."""
    eval_interval: float = 0.02
    """Evaluate every this fraction of the env-step budget, plus at the start and at the end."""
    torch_threads: int | None = 1
    """torch intra-op threads, fixed in every preset: runs are bit-reproducible for the same thread count
    and device (None: torch's default, all cores, which differs between machines)."""

    def __post_init__(self) -> None:
        if self.eval_episodes < 1:
            raise ConfigError(f"run.eval_episodes must be >= 1, got {self.eval_episodes}")
        if not 0.0 < self.eval_interval <= 1.0:
            raise ConfigError(f"run.eval_interval must be in (0, 1], got {self.eval_interval}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"run.torch_threads must be >= 1 or null, got {self.torch_threads}")


def default_variant(algo: str) -> str:
    check_algo(algo)
    return DEFAULT_VARIANTS[algo]


def published_config(algo: str, variant: str, env: str) -> tuple[Any, int]:
    """The published config of ``algo``'s ``variant`` for ``env`` and its number of training envs."""
    check_algo(algo)
    if variant not in VARIANTS[algo]:
        raise ConfigError(f"unknown variant {variant!r} for {algo}; valid: {', '.join(VARIANTS[algo])}")
    changes, num_envs = PER_ENV[(algo, variant)].get(env, ({}, GENERIC_NUM_ENVS))
    return replace(VARIANTS[algo][variant], **changes), num_envs


def _budget(algo: str, variant: str, config: Any, num_envs: int, preset: str) -> tuple[Any, int]:
    """The budget preset applied to a published config."""
    if algo == "tdmpc2":
        return _tdmpc2_budget(config, num_envs, preset)
    if algo in BASELINE_CPU:
        if preset == "cpu":
            envs, iterations = BASELINE_CPU[algo]
            return replace(config, max_epochs=iterations), envs
        if preset == "smoke":
            return replace(config, max_epochs=4, **BASELINE_SMOKE[algo]), 4
        return config, num_envs
    if preset == "cpu":
        if algo == "shac":
            return replace(config, max_epochs=CPU_ITERATIONS), CPU_NUM_ENVS
        model = world_model_config(CPU_WORLD_MODEL)
        return replace(config, max_epochs=PWM_CPU_EPOCHS[variant], world_model=model), CPU_NUM_ENVS
    if preset == "smoke":
        config = replace(config, horizon=8, max_epochs=4, **SMOKE_NETWORKS)
        if algo == "pwm":  # the tiny model of bench.pretrain --preset smoke
            config = replace(
                config,
                world_model=world_model_config("tiny"),
                model_training=WMTrainConfig(horizon=8, batch_size=16),
                wm_bootstrap_steps=4,
                batch_size=None,  # offline start states: the 4 envs' worth
            )
        return config, 4
    return config, num_envs


# TD-MPC2 on one CPU core: the small world model, 16 envs x 64 steps x 100 iterations (102,400 env steps), one
# iteration of random seed steps, a smaller planner (MPPI over 64 samples, 3 iterations; TD-MPC2: 512, 6) and
# evaluation every 10% of the budget; cost measured in the README (TD-MPC2 section).
TDMPC2_CPU = {
    "world_model": tdmpc2_world_model(CPU_WORLD_MODEL),
    "steps_per_iteration": 64,
    "max_epochs": 100,
    "seed_steps": 1024,
    "mppi": MPPIConfig(iterations=3, num_samples=64, num_elites=8, num_policy_trajectories=4),
}
TDMPC2_CPU_NUM_ENVS = 16
TDMPC2_SMOKE = {
    "world_model": tdmpc2_world_model("tiny"),
    "batch_size": 16,
    "steps_per_iteration": 8,
    "max_epochs": 4,
    "seed_steps": 32,
    "seed_updates": 4,
    "mppi": MPPIConfig(iterations=2, num_samples=16, num_elites=4, num_policy_trajectories=4),
}


def _tdmpc2_budget(config: TDMPC2Config, num_envs: int, preset: str) -> tuple[TDMPC2Config, int]:
    if preset == "cpu":
        return replace(config, **TDMPC2_CPU), TDMPC2_CPU_NUM_ENVS
    if preset == "smoke":
        return replace(config, **TDMPC2_SMOKE), 4
    return config, num_envs


def resolve_settings(
    algo: str, env: str, preset: str, variant: str | None = None, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Settings of ``algo`` (``variant``, or its default) for ``env`` under ``preset``, then ``--set``
    ``overrides`` (ConfigError for an unknown key or a bad value)."""
    variant = variant or default_variant(algo)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    config, num_envs = _budget(algo, variant, *published_config(algo, variant, env), preset)
    env_settings: dict[str, Any] = {"num_envs": num_envs, **ENV_DEFAULTS}
    run = RunConfig()
    if preset == "smoke":
        env_settings["episode_length"] = 32
        run = RunConfig(eval_episodes=2, eval_interval=0.5)
    elif preset == "cpu" and algo == "tdmpc2":
        run = RunConfig(eval_interval=0.1)  # every evaluation step plans
    defaults = {"env": env_settings, "algo": config.to_dict(), "run": asdict(run)}
    return apply_overrides(defaults, overrides, env)


# -- world-model pretraining (bench.pretrain) ----------------------------------------------------------

PRETRAIN_PRESET_HELP = {
    "smoke": "seconds: tiny model, horizon 4, batch 16, 20 steps",
    "cpu": "the small model (latent 128, hidden 256: 281k parameters for the ant), 2,000 steps "
    "(about 0.2 s per step on one CPU core: under 10 minutes)",
    "paper": "the paper model and README steps: Ant 100k, Humanoid 200k, SNU 200k (others 50k)",
}


@dataclass(frozen=True)
class PretrainSettings(JsonConfig):
    steps: int
    """Total gradient steps."""
    world_model: WorldModelConfig
    """Architecture."""
    train: WMTrainConfig
    """Loss and optimiser settings."""
    max_rows: int | None = 1_000_000
    """Rows (T + 1 per episode) of the random episode subset trained on (PWM's buffer); None: all."""
    heldout_fraction: float = 0.05
    """Fraction of whole episodes held out of training (seeded); the model's one-step and H-step errors on
    them are logged (``heldout_*``) and their ids recorded in the checkpoint for PWM's diagnostics."""
    log_every: int = 100
    """Steps per pretrain.csv row (means over the interval)."""
    checkpoint_every: int = 5_000
    """Steps between checkpoints/latest.pt writes."""
    torch_threads: int | None = 1
    """torch intra-op threads, fixed in every preset (bit-reproducible for the same count and device);
    None: torch's default."""


def pretrain_settings(
    preset: str,
    env: str,
    steps: int | None = None,
    size: str | None = None,
    variant: str | None = None,
    reward_bins: int | None = None,
    termination_head: bool = False,
) -> PretrainSettings:
    """``bench.pretrain``'s settings of ``preset`` for ``env``, with the CLI's optional changes. A termination
    head (our extension, for offline PWM) only when asked (dropped for a dataset without flags)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if preset == "smoke":
        settings = PretrainSettings(
            steps=20,
            world_model=world_model_config("tiny"),
            train=WMTrainConfig(horizon=4, batch_size=16),
            log_every=1,
            checkpoint_every=5,
        )
    elif preset == "cpu":
        settings = PretrainSettings(
            2_000, world_model_config(CPU_WORLD_MODEL), WMTrainConfig(), log_every=20, checkpoint_every=200
        )
    else:
        settings = PretrainSettings(
            PRETRAIN_PAPER_STEPS.get(env, PRETRAIN_DEFAULT_STEPS), world_model_config(), WMTrainConfig()
        )
    model = settings.world_model
    try:
        if size is not None:
            model = world_model_config(size, variant=model.variant)
        changes = {"variant": variant, "reward_bins": reward_bins, "termination_head": termination_head}
        model = replace(model, **{k: v for k, v in changes.items() if v is not None})
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    return replace(settings, world_model=model, steps=steps or settings.steps)


def run_config(settings: dict[str, Any]) -> RunConfig:
    return RunConfig(**settings["run"])


def env_overrides(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``env`` section without ``num_envs`` and without unset (None) entries: kwargs for envs.make."""
    return {k: v for k, v in settings["env"].items() if k != "num_envs" and v is not None}
