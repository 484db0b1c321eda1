"""Stepping one control step (S substeps) forward, and its backward by recomputation.

The forward pass reuses one set of scratch buffers and records nothing. The backward pass of a control
step recomputes that step's substeps with a buffer set per substep (and per mass-matrix refresh, so the
adjoint never reads a later substep's matrices), then runs their adjoints in reverse. Only the step's
inputs are kept between forward and backward: memory does not grow with substeps x horizon.

Both passes are launch plans on fixed buffers (``envs.sim.plan``), built from one description of a
substep (``Simulator._substep``): a call copies its tensors into the input buffers and replays a plan,
since packing kernel arguments in Python costs more than the kernels at small N. The forward plan is built
in ``__init__``, the backward plan by the first backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import warp as wp

from envs.sim import kernels, linalg
from envs.sim.buffers import MassMatrixBuffers, StepInputs, SubstepBuffers, arrays_with_grad
from envs.sim.model import Model
from envs.sim.plan import Clear, Launch, OpSequence, Step, adjoint_ops, forward_ops


@dataclass
class Dynamics:
    """The equation of motion ``mass_matrix @ qdd = force`` at one state, as a substep computes it."""

    mass_matrix: torch.Tensor
    """[N, nv, nv], armature included (what MuJoCo's ``mj_fullM`` gives)."""
    force: torch.Tensor
    """[N, nv] generalized force: actuation + passive + contact + muscle forces - bias forces."""
    qdd: torch.Tensor
    """[N, nv] joint accelerations."""


@dataclass
class BackwardPlan:
    """The backward pass of a control step, on its own buffers."""

    inputs: StepInputs
    """The step's inputs; their gradients are the result."""
    output: kernels.State
    """The step's final state; its gradients are the seed."""
    recompute: OpSequence
    """Clears every gradient, then recomputes the substeps."""
    adjoint: OpSequence
    """The substeps' adjoints in reverse order."""
    buffers: list[SubstepBuffers | MassMatrixBuffers]
    """The per-substep and per-refresh buffers the plans run on (owned here, not only by the ops)."""


class Simulator:
    """Steps ``num_envs`` copies of ``model``; torch float64 tensors in and out."""

    def __init__(self, model: Model, num_envs: int):
        self.model = model
        self.num_envs = num_envs
        p = model.params
        self.substeps = p.substeps
        self.refresh_every = p.mass_matrix_interval
        self.h = wp.float64(p.control_dt / p.substeps)
        self.base_acceleration = wp.vec3d(*(-model.gravity))
        n, dev, substeps = num_envs, model.device, range(p.substeps)
        # z of solve_adjoint, shared by every substep (their adjoints run one after another)
        self._solve_scratch = wp.zeros((n, model.nv), dtype=wp.float64, device=dev)

        # Forward: fixed inputs, two substep buffer sets used alternately, one mass-matrix set.
        self._inputs = StepInputs.allocate(model, n, grad=False)
        self._scratch = [SubstepBuffers.allocate(model, n, grad=False) for _ in range(2)]
        self._scratch_mass = MassMatrixBuffers.allocate(model, n, grad=False)
        forward = self._control_step(
            self._inputs, [self._scratch[s % 2] for s in substeps], [self._scratch_mass for _ in substeps]
        )
        self._forward = OpSequence(dev, forward_ops([step for plan in forward for step in plan], dev))
        self._first_substep = OpSequence(dev, forward_ops(forward[0], dev))
        self._kinematics = OpSequence(dev, forward_ops(forward[0][:1], dev))  # link_dynamics alone

        # Built by the first backward: its S gradient-carrying buffer sets would only cost memory in a
        # simulator that never differentiates (an evaluation env: +110 MiB for the humanoid at N = 64).
        self._backward_plan: BackwardPlan | None = None

    def _build_backward_plan(self) -> BackwardPlan:
        """A buffer set with gradients per substep and per mass-matrix refresh, and the plans on them."""
        model, n, dev, substeps = self.model, self.num_envs, self.model.device, range(self.substeps)
        inputs = StepInputs.allocate(model, n, grad=True)
        bufs = [SubstepBuffers.allocate(model, n, grad=True) for _ in substeps]
        num_refreshes = -(-self.substeps // self.refresh_every)
        masses = [MassMatrixBuffers.allocate(model, n, grad=True) for _ in range(num_refreshes)]
        plans = self._control_step(inputs, bufs, [masses[s // self.refresh_every] for s in substeps])
        steps = [step for plan in plans for step in plan]
        zero_grads = [a.grad.zero_ for a in arrays_with_grad(inputs, *bufs, *masses)]
        return BackwardPlan(
            inputs=inputs,
            output=bufs[-1].state,
            recompute=OpSequence(dev, zero_grads + forward_ops(steps, dev)),
            adjoint=OpSequence(dev, adjoint_ops(steps, dev)),
            buffers=[*bufs, *masses],
        )

    # -- the launch plan --------------------------------------------------------------------------
    def _control_step(
        self, inputs: StepInputs, bufs: list[SubstepBuffers], masses: list[MassMatrixBuffers]
    ) -> list[list[Step]]:
        """The steps of each substep, substep s writing ``bufs[s]`` and ``masses[s]``."""
        plans, state = [], inputs.state
        for s, (buf, mass) in enumerate(zip(bufs, masses, strict=True)):
            plans.append(self._substep(state, inputs, buf, mass, refresh=s % self.refresh_every == 0))
            state = buf.state
        return plans

    def _substep(
        self,
        state: kernels.State,
        inputs: StepInputs,
        buf: SubstepBuffers,
        mass: MassMatrixBuffers,
        refresh: bool,
    ) -> list[Step]:
        """One substep from ``state`` under ``inputs``' forces into ``buf``; refreshes ``mass`` if asked."""
        m, n = self.model, self.num_envs
        steps: list[Step] = [
            Launch(
                kernels.link_dynamics,
                n,
                [m.links, m.bodies, self.base_acceleration, state],
                [buf.motion, buf.inertia, buf.joint_S],
            ),
            Clear(buf.body_fext),
        ]
        if m.num_contacts:
            contact = [m.contact, buf.motion]
            steps.append(Launch(kernels.ground_contact, (n, m.num_contacts), contact, [buf.body_fext]))
        if m.num_segments:
            muscles = [m.muscles, inputs.muscle_force, buf.motion]
            steps.append(Launch(kernels.muscle_forces, (n, m.num_segments), muscles, [buf.body_fext]))
        steps += [
            Clear(buf.body_F_children),
            Launch(
                kernels.joint_forces,
                n,
                [m.links, m.joints, state, inputs.actuation, buf.inertia, buf.joint_S, buf.body_fext],
                [buf.body_F_children, buf.tau],
            ),
        ]
        if refresh:
            steps += [Clear(mass.subtree.m), Clear(mass.subtree.h), Clear(mass.subtree.J)]
            steps.append(
                Launch(
                    kernels.mass_matrix,
                    n,
                    [m.links, m.bodies.mass, m.mass_layout, buf.inertia, buf.joint_S],
                    [mass.subtree, mass.H],
                )
            )
            # Not differentiated: the solve's adjoint below gives H's gradient directly.
            steps.append(Launch(linalg.cholesky, n, [m.nv, mass.H, m.dof_armature], [mass.L], adjoint=None))
        # Only built into a plan for buffers with gradients (the backward pass).
        solve_adjoint = Launch(
            linalg.solve_adjoint,
            n,
            [m.nv, mass.L, buf.qdd, buf.qdd.grad, self._solve_scratch, buf.tau.grad, mass.H.grad],
            [],
        )
        steps.append(Launch(linalg.solve, n, [m.nv, mass.L, buf.tau], [buf.qdd], adjoint=solve_adjoint))
        steps.append(Launch(kernels.integrate, n, [m.links, self.h, state, buf.qdd], [buf.state]))
        return steps

    # -- control step -----------------------------------------------------------------------------
    def forward(
        self,
        q: torch.Tensor,
        qd: torch.Tensor,
        actuation: torch.Tensor,
        muscle_force: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One control step without recording; returns new (q, qd) tensors."""
        self._inputs.load(q, qd, actuation, muscle_force)
        self._forward.run()
        out = self._scratch[(self.substeps - 1) % 2]
        return wp.to_torch(out.state.q).clone(), wp.to_torch(out.state.qd).clone()

    def backward(
        self,
        q: torch.Tensor,
        qd: torch.Tensor,
        actuation: torch.Tensor,
        muscle_force: torch.Tensor | None,
        adj_q_out: torch.Tensor,
        adj_qd_out: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Vector-Jacobian product of one control step, recomputing its substeps.

        Returns the gradients of (q, qd, actuation, muscle_force); the last is None for a model without
        muscles or when ``muscle_force`` is None.
        """
        if self._backward_plan is None:
            self._backward_plan = self._build_backward_plan()
        plan = self._backward_plan
        plan.inputs.load(q, qd, actuation, muscle_force)
        plan.recompute.run()
        wp.to_torch(plan.output.q.grad).copy_(adj_q_out.detach())
        wp.to_torch(plan.output.qd.grad).copy_(adj_qd_out.detach())
        plan.adjoint.run()
        adj_q, adj_qd, adj_act, adj_mf = plan.inputs.grads()
        has_muscles = self.model.num_segments > 0 and muscle_force is not None
        return adj_q, adj_qd, adj_act, adj_mf if has_muscles else None

    # -- diagnostics ------------------------------------------------------------------------------
    def link_transforms(self, q: torch.Tensor) -> torch.Tensor:
        """World transforms [N, num_links, 7] (position, quaternion xyzw) of every link at ``q``."""
        zero = torch.zeros(self.num_envs, self.model.nv, dtype=torch.float64, device=q.device)
        self._inputs.load(q.to(torch.float64), zero, zero, None)
        self._kinematics.run()
        return wp.to_torch(self._scratch[0].motion.X).clone()

    def dynamics(
        self,
        q: torch.Tensor,
        qd: torch.Tensor,
        actuation: torch.Tensor,
        muscle_force: torch.Tensor | None = None,
    ) -> Dynamics:
        """The equation of motion at (q, qd) under the given forces, from the first substep of a control
        step (which always refreshes the mass matrix). For tests and inspection; not differentiable."""
        self._inputs.load(q, qd, actuation, muscle_force)
        self._first_substep.run()
        buf = self._scratch[0]
        H = wp.to_torch(self._scratch_mass.H)
        return Dynamics(
            mass_matrix=H + torch.diag(wp.to_torch(self.model.dof_armature)),
            force=wp.to_torch(buf.tau).clone(),
            qdd=wp.to_torch(buf.qdd).clone(),
        )
