"""Fixed Warp buffers the simulator's launch plans read and write (all float64, leading dim = env)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import warp as wp

from envs.sim.kernels import Inertia, Motion, State, Subtree
from envs.sim.model import Model, make_struct


def _zeros(device: str, grad: bool, **shapes: tuple[tuple[int, ...], type]) -> dict[str, wp.array]:
    """Zeroed arrays by name, from ``name=(shape, dtype)``."""
    return {
        name: wp.zeros(shape, dtype=dtype, device=device, requires_grad=grad)
        for name, (shape, dtype) in shapes.items()
    }


def _state(model: Model, num_envs: int, grad: bool) -> State:
    shapes = {"q": ((num_envs, model.nq), wp.float64), "qd": ((num_envs, model.nv), wp.float64)}
    return make_struct(State, **_zeros(model.device, grad, **shapes))


def arrays_with_grad(*buffers: StepInputs | SubstepBuffers | MassMatrixBuffers) -> list[wp.array]:
    """Every array with a gradient in the given buffer sets."""
    return [a for buffer in buffers for a in buffer.arrays() if a.requires_grad]


_INPUTS = ("q", "qd", "actuation", "muscle_force")


@dataclass
class StepInputs:
    """Inputs of one control step, copied in from torch before a plan runs."""

    state: State
    actuation: wp.array
    muscle_force: wp.array
    """[N, max(muscle_count, 1)]; unused by a model without muscles."""

    def arrays(self) -> list[wp.array]:
        return [self.state.q, self.state.qd, self.actuation, self.muscle_force]

    @staticmethod
    def allocate(model: Model, num_envs: int, grad: bool) -> StepInputs:
        n, f64 = num_envs, wp.float64
        forces = _zeros(
            model.device,
            grad,
            actuation=((n, model.nv), f64),
            muscle_force=((n, max(model.muscle_count, 1)), f64),
        )
        return StepInputs(state=_state(model, num_envs, grad), **forces)

    def __post_init__(self) -> None:
        # torch views of the buffers, made once: wp.to_torch costs more than the copy at small N
        self.views = {
            name: wp.to_torch(a, requires_grad=False) for name, a in zip(_INPUTS, self.arrays(), strict=True)
        }

    def load(
        self, q: torch.Tensor, qd: torch.Tensor, actuation: torch.Tensor, muscle_force: torch.Tensor | None
    ) -> None:
        """Copy the tensors in (on torch's current stream); no muscle force means zero."""
        given = {"q": q, "qd": qd, "actuation": actuation}
        if muscle_force is not None and muscle_force.numel():
            given["muscle_force"] = muscle_force
        else:
            self.views["muscle_force"].zero_()
        for name, tensor in given.items():
            view = self.views[name]
            if tensor.shape != view.shape:
                raise ValueError(f"{name} must have shape {tuple(view.shape)}, got {tuple(tensor.shape)}")
            view.copy_(tensor.detach())

    def grads(self) -> tuple[torch.Tensor, ...]:
        """Copies of the gradients of (q, qd, actuation, muscle_force)."""
        return tuple(wp.to_torch(a.grad).clone() for a in self.arrays())


@dataclass
class SubstepBuffers:
    """Intermediates of one substep, and the state it reaches."""

    motion: Motion
    inertia: Inertia
    joint_S: wp.array
    """Motion subspace column of each dof."""
    body_fext: wp.array
    """External (contact and muscle) wrench per link."""
    body_F_children: wp.array
    """Wrench the children of each link pass up to it."""
    tau: wp.array
    """Generalized force: actuation + passive + external - bias."""
    qdd: wp.array
    state: State

    def arrays(self) -> list[wp.array]:
        m, i, s = self.motion, self.inertia, self.state
        rest = [self.joint_S, self.body_fext, self.body_F_children, self.tau, self.qdd]
        return [m.X, m.V, m.A, i.h, i.J, i.f, *rest, s.q, s.qd]

    @staticmethod
    def allocate(model: Model, num_envs: int, grad: bool) -> SubstepBuffers:
        dev, f64, spatial = model.device, wp.float64, wp.spatial_vectord
        links, dofs = (num_envs, model.num_links), (num_envs, model.nv)
        motion = _zeros(dev, grad, X=(links, wp.transformd), V=(links, spatial), A=(links, spatial))
        inertia = _zeros(dev, grad, h=(links, wp.vec3d), J=(links, wp.mat33d), f=(links, spatial))
        return SubstepBuffers(
            motion=make_struct(Motion, **motion),
            inertia=make_struct(Inertia, **inertia),
            state=_state(model, num_envs, grad),
            **_zeros(
                dev,
                grad,
                joint_S=(dofs, spatial),
                body_fext=(links, spatial),
                body_F_children=(links, spatial),
                tau=(dofs, f64),
                qdd=(dofs, f64),
            ),
        )


@dataclass
class MassMatrixBuffers:
    """Mass matrix, its factor, and the subtree-inertia accumulators of one refresh."""

    H: wp.array
    L: wp.array
    """Cholesky factor of H + diag(armature); never differentiated (the solve's adjoint reads it)."""
    subtree: Subtree

    def arrays(self) -> list[wp.array]:
        return [self.H, self.L, self.subtree.m, self.subtree.h, self.subtree.J]

    @staticmethod
    def allocate(model: Model, num_envs: int, grad: bool) -> MassMatrixBuffers:
        links, matrix = (num_envs, model.num_links), (num_envs, model.nv, model.nv)
        subtree = _zeros(model.device, grad, m=(links, wp.float64), h=(links, wp.vec3d), J=(links, wp.mat33d))
        return MassMatrixBuffers(
            H=wp.zeros(matrix, dtype=wp.float64, device=model.device, requires_grad=grad),
            L=wp.zeros(matrix, dtype=wp.float64, device=model.device),
            subtree=make_struct(Subtree, **subtree),
        )
