"""Stepping one control step (S substeps) forward, and its backward by recomputation.

The forward pass reuses one set of scratch buffers and records nothing. The backward pass of a control
step recomputes that step's substeps on a Warp tape with a buffer set per substep (and per mass-matrix
refresh, so the tape never replays a later step's matrices), then runs the tape backwards. Only the
step's inputs are kept between forward and backward: memory does not grow with substeps x horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import warp as wp

from envs.sim import kernels, linalg
from envs.sim.model import Model


def _zeros(shape, dtype, device, grad):
    return wp.zeros(shape, dtype=dtype, device=device, requires_grad=grad)


@dataclass
class SubstepBuffers:
    """Intermediates of one substep (per env, per link or per dof)."""

    body_X: wp.array
    body_V: wp.array
    body_A: wp.array
    body_h: wp.array
    body_J: wp.array
    body_f: wp.array
    body_fext: wp.array
    body_F_children: wp.array
    joint_S: wp.array
    tau: wp.array
    qdd: wp.array
    q: wp.array
    """State reached by this substep."""
    qd: wp.array

    @staticmethod
    def allocate(model: Model, num_envs: int, grad: bool) -> SubstepBuffers:
        n, nl, nv, dev = num_envs, model.num_links, model.nv, model.device
        return SubstepBuffers(
            body_X=_zeros((n, nl), wp.transformd, dev, grad),
            body_V=_zeros((n, nl), wp.spatial_vectord, dev, grad),
            body_A=_zeros((n, nl), wp.spatial_vectord, dev, grad),
            body_h=_zeros((n, nl), wp.vec3d, dev, grad),
            body_J=_zeros((n, nl), wp.mat33d, dev, grad),
            body_f=_zeros((n, nl), wp.spatial_vectord, dev, grad),
            body_fext=_zeros((n, nl), wp.spatial_vectord, dev, grad),
            body_F_children=_zeros((n, nl), wp.spatial_vectord, dev, grad),
            joint_S=_zeros((n, nv), wp.spatial_vectord, dev, grad),
            tau=_zeros((n, nv), wp.float64, dev, grad),
            qdd=_zeros((n, nv), wp.float64, dev, grad),
            q=_zeros((n, model.nq), wp.float64, dev, grad),
            qd=_zeros((n, nv), wp.float64, dev, grad),
        )


@dataclass
class MassMatrixBuffers:
    """Mass matrix, its factor, and the subtree-inertia accumulators of one refresh."""

    H: wp.array
    L: wp.array
    children_m: wp.array
    children_h: wp.array
    children_J: wp.array

    @staticmethod
    def allocate(model: Model, num_envs: int, grad: bool) -> MassMatrixBuffers:
        n, nl, nv, dev = num_envs, model.num_links, model.nv, model.device
        return MassMatrixBuffers(
            H=_zeros((n, nv, nv), wp.float64, dev, grad),
            L=_zeros((n, nv, nv), wp.float64, dev, False),
            children_m=_zeros((n, nl), wp.float64, dev, grad),
            children_h=_zeros((n, nl), wp.vec3d, dev, grad),
            children_J=_zeros((n, nl), wp.mat33d, dev, grad),
        )


class OpSequence:
    """Prebuilt Warp operations run in order: as one captured graph on the CPU (replayed in C++, no
    Python per launch), on CUDA as plain launches on torch's current stream so that they are ordered
    with the torch copies around them.
    """

    def __init__(self, device: str, ops: list):
        self.device, self.ops, self.graph = device, ops, None
        if wp.get_device(device).is_cpu:
            wp.capture_begin(device=device)
            try:
                for op in ops:
                    op()
            finally:
                self.graph = wp.capture_end(device=device)

    def run(self) -> None:
        if self.graph is not None:
            wp.capture_launch(self.graph)
            return
        with wp.ScopedStream(wp.stream_from_torch(torch.cuda.current_stream(self.device))):
            for op in self.ops:
                op()


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
        self.up = wp.vec3d(*model.up)
        self.contact = (
            wp.float64(p.contact_ke),
            wp.float64(p.contact_kd),
            wp.float64(p.contact_kf),
            wp.float64(p.contact_mu),
            wp.float64(p.friction_smoothing),
        )
        self.num_refreshes = -(-self.substeps // self.refresh_every)
        # Forward scratch: two substep buffer sets used alternately, one mass-matrix set.
        self._scratch = [SubstepBuffers.allocate(model, num_envs, False) for _ in range(2)]
        self._scratch_mass = MassMatrixBuffers.allocate(model, num_envs, False)
        self._taped: list[SubstepBuffers] | None = None
        self._inputs: SubstepBuffers | None = None
        self._tape: wp.Tape | None = None

    # -- one substep ------------------------------------------------------------------------------
    def _substep(
        self,
        q: wp.array,
        qd: wp.array,
        actuation: wp.array,
        muscle_force: wp.array | None,
        buf: SubstepBuffers,
        mass: MassMatrixBuffers,
        refresh: bool,
        tape: wp.Tape | None,
        plan: list | None = None,
    ) -> None:
        """Run one substep, or with ``plan`` given, append its operations there without running them."""
        m, n, dev = self.model, self.num_envs, self.model.device
        record = plan is not None

        def launch(kernel, **kwargs):
            cmd = wp.launch(kernel, record_cmd=record, **kwargs)
            if record:
                plan.append(cmd.launch)

        def zero(array):
            plan.append(array.zero_) if record else array.zero_()

        launch(kernels.link_dynamics, dim=n, **self._link_dynamics_args(q, qd, buf))
        zero(buf.body_fext)
        if m.num_contacts:
            launch(
                kernels.ground_contact,
                dim=(n, m.num_contacts),
                inputs=[
                    m.contact_link,
                    m.contact_point,
                    m.contact_offset,
                    self.up,
                    *self.contact,
                    buf.body_X,
                    buf.body_V,
                ],
                outputs=[buf.body_fext],
            )
        if m.num_segments:
            launch(
                kernels.muscle_forces,
                dim=(n, m.num_segments),
                inputs=[
                    m.segment_muscle,
                    m.segment_link_a,
                    m.segment_point_a,
                    m.segment_link_b,
                    m.segment_point_b,
                    muscle_force,
                    buf.body_X,
                ],
                outputs=[buf.body_fext],
            )
        zero(buf.body_F_children)
        launch(
            kernels.joint_forces,
            dim=n,
            inputs=[
                m.link_parent,
                m.link_type,
                m.link_q_start,
                m.link_qd_start,
                m.link_stiffness,
                m.link_damping,
                m.link_limit_lower,
                m.link_limit_upper,
                m.link_limit_ke,
                m.link_limit_kd,
                m.link_spring_ref,
                m.num_links,
                q,
                qd,
                actuation,
                buf.body_f,
                buf.body_fext,
                buf.joint_S,
            ],
            outputs=[buf.body_F_children, buf.tau],
        )
        if refresh:
            zero(mass.children_m)
            zero(mass.children_h)
            zero(mass.children_J)
            launch(
                kernels.mass_matrix,
                dim=n,
                inputs=[
                    m.link_parent,
                    m.link_mass,
                    m.num_links,
                    m.mass_row_start,
                    m.mass_row_col,
                    m.dof_link,
                    buf.body_h,
                    buf.body_J,
                    buf.joint_S,
                ],
                outputs=[mass.children_m, mass.children_h, mass.children_J, mass.H],
            )
            launch(
                linalg.cholesky,
                dim=n,
                inputs=[m.nv, mass.H, m.dof_armature],
                outputs=[mass.L],
                record_tape=False,
            )
        launch(
            linalg.solve,
            dim=n,
            inputs=[m.nv, mass.L, buf.tau],
            outputs=[buf.qdd],
            record_tape=False,
        )
        if tape is not None:
            z = wp.zeros_like(buf.qdd, requires_grad=False)

            def solve_backward(buf=buf, mass=mass, z=z):
                wp.launch(
                    linalg.solve_adjoint,
                    dim=n,
                    inputs=[m.nv, mass.L, buf.qdd, buf.qdd.grad, z, buf.tau.grad, mass.H.grad],
                    device=dev,
                )

            tape.record_func(backward=solve_backward, arrays=[buf.qdd, buf.tau, mass.H])
        launch(
            kernels.integrate,
            dim=n,
            inputs=[m.link_type, m.link_q_start, m.link_qd_start, m.num_links, self.h, q, qd, buf.qdd],
            outputs=[buf.q, buf.qd],
        )

    def _link_dynamics_args(self, q: wp.array, qd: wp.array, buf: SubstepBuffers) -> dict:
        m = self.model
        return dict(
            inputs=[
                m.link_parent,
                m.link_type,
                m.link_q_start,
                m.link_qd_start,
                m.link_X_pj,
                m.link_anchor,
                m.link_axis,
                m.link_mass,
                m.link_com,
                m.link_inertia,
                m.num_links,
                self.base_acceleration,
                q,
                qd,
            ],
            outputs=[buf.body_X, buf.body_V, buf.body_A, buf.body_h, buf.body_J, buf.body_f, buf.joint_S],
        )

    def link_transforms(self, q: torch.Tensor) -> torch.Tensor:
        """World transforms [N, num_links, 7] (position, quaternion xyzw) of every link at ``q``."""
        buf = self._scratch[0]
        q = wp.from_torch(q.detach().to(torch.float64).contiguous())
        qd = wp.zeros((self.num_envs, self.model.nv), dtype=wp.float64, device=self.model.device)
        wp.launch(
            kernels.link_dynamics,
            dim=self.num_envs,
            device=self.model.device,
            **self._link_dynamics_args(q, qd, buf),
        )
        return wp.to_torch(buf.body_X).clone()

    # -- control step -----------------------------------------------------------------------------
    def forward(
        self,
        q: torch.Tensor,
        qd: torch.Tensor,
        actuation: torch.Tensor,
        muscle_force: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One control step without recording; returns new (q, qd) tensors.

        Inputs are copied into fixed buffers so each substep replays prebuilt Warp launches
        (packing kernel arguments in Python costs more than the kernels at small N).
        """
        if self._inputs is None:
            self._inputs = SubstepBuffers.allocate(self.model, self.num_envs, False)
            self._input_act = _zeros((self.num_envs, self.model.nv), wp.float64, self.model.device, False)
            self._input_mf = _zeros(
                (self.num_envs, max(self.model.muscle_count, 1)), wp.float64, self.model.device, False
            )
            self._forward = OpSequence(self.model.device, self._forward_ops())
        wp.to_torch(self._inputs.q).copy_(q.detach())
        wp.to_torch(self._inputs.qd).copy_(qd.detach())
        wp.to_torch(self._input_act).copy_(actuation.detach())
        if muscle_force is not None and muscle_force.numel():
            wp.to_torch(self._input_mf).copy_(muscle_force.detach())
        self._forward.run()
        out = self._scratch[(self.substeps - 1) % 2]
        return wp.to_torch(out.q).clone(), wp.to_torch(out.qd).clone()

    def _forward_ops(self) -> list:
        """The S substeps of a control step from the fixed input buffers, as prebuilt operations."""
        plans: dict[tuple[bool, int, bool], list] = {}
        ops = []
        for s in range(self.substeps):
            key = (s == 0, s % 2, s % self.refresh_every == 0)
            if key not in plans:
                source = self._inputs if s == 0 else self._scratch[(s - 1) % 2]
                plans[key] = []
                self._substep(
                    source.q,
                    source.qd,
                    self._input_act,
                    self._input_mf,
                    self._scratch[s % 2],
                    self._scratch_mass,
                    key[2],
                    None,
                    plans[key],
                )
            ops += plans[key]
        return ops

    @staticmethod
    def _prebuilt_adjoint(tape: wp.Tape) -> list:
        """The tape's backward pass as prebuilt launches (what ``Tape.backward`` would run, in order).

        The tape is recorded once on fixed buffers, so its adjoint launches never change; building
        them once avoids re-packing every kernel's arguments in Python on each backward.
        """
        plan = []
        for launch in reversed(tape.launches):
            if callable(launch):
                plan.append(launch)
                continue
            kernel, dim, max_blocks, inputs, outputs, device = launch[:6]
            cmd = wp.launch(
                kernel,
                dim=dim,
                inputs=inputs,
                outputs=outputs,
                adj_inputs=[tape.get_adjoint(a) for a in inputs],
                adj_outputs=[tape.get_adjoint(a) for a in outputs],
                device=device,
                adjoint=True,
                max_blocks=max_blocks,
                record_cmd=True,
            )
            plan.append(cmd.launch)
        return plan

    def _run_taped(self, tape: wp.Tape | None, plan: list | None) -> None:
        wq, wqd = self._taped_in.q, self._taped_in.qd
        for s, buf in enumerate(self._taped):
            mass = self._taped_mass[s // self.refresh_every]
            refresh = s % self.refresh_every == 0
            self._substep(wq, wqd, self._taped_act, self._taped_mf, buf, mass, refresh, tape, plan)
            wq, wqd = buf.q, buf.qd

    def backward(
        self,
        q: torch.Tensor,
        qd: torch.Tensor,
        actuation: torch.Tensor,
        muscle_force: torch.Tensor | None,
        adj_q_out: torch.Tensor,
        adj_qd_out: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Vector-Jacobian product of one control step, recomputing its substeps on a tape."""
        model, n, dev = self.model, self.num_envs, self.model.device
        if self._taped is None:
            self._taped = [SubstepBuffers.allocate(model, n, True) for _ in range(self.substeps)]
            self._taped_mass = [MassMatrixBuffers.allocate(model, n, True) for _ in range(self.num_refreshes)]
            self._taped_in = SubstepBuffers.allocate(model, n, True)
            self._taped_act = _zeros((n, model.nv), wp.float64, dev, True)
            self._taped_mf = _zeros((n, max(model.muscle_count, 1)), wp.float64, dev, True)
            # wp.Tape.zero() only clears gradients the tape allocated itself, so keep our own list.
            sets = [*self._taped, *self._taped_mass, self._taped_in]
            self._taped_grads = [a.grad for s in sets for a in vars(s).values() if a.requires_grad]
            self._taped_grads += [self._taped_act.grad, self._taped_mf.grad]
        start = self._taped_in
        wp.to_torch(start.q).copy_(q.detach())
        wp.to_torch(start.qd).copy_(qd.detach())
        wp.to_torch(self._taped_act).copy_(actuation.detach())
        has_muscles = model.num_segments > 0 and muscle_force is not None
        if has_muscles:
            wp.to_torch(self._taped_mf).copy_(muscle_force.detach())
        if self._tape is None:
            # Record the substeps once on fixed buffers; later calls replay the same launches.
            self._tape, replay = wp.Tape(), []
            with self._tape:
                self._run_taped(self._tape, None)
            self._run_taped(None, replay)
            zero_grads = [g.zero_ for g in self._taped_grads]
            self._taped_forward = OpSequence(dev, zero_grads + replay)
            self._taped_adjoint = OpSequence(dev, self._prebuilt_adjoint(self._tape))
        self._taped_forward.run()
        wq, wqd = self._taped[-1].q, self._taped[-1].qd
        wp.to_torch(wq.grad).copy_(adj_q_out.detach())
        wp.to_torch(wqd.grad).copy_(adj_qd_out.detach())
        self._taped_adjoint.run()
        adj_q = wp.to_torch(start.q.grad).clone()
        adj_qd = wp.to_torch(start.qd.grad).clone()
        adj_act = wp.to_torch(self._taped_act.grad).clone()
        adj_mf = wp.to_torch(self._taped_mf.grad).clone() if has_muscles else None
        return adj_q, adj_qd, adj_act, adj_mf
