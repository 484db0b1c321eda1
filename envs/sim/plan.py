"""Launch plans: Warp operations described once, then replayed forward and in reverse.

The simulator describes a control step as a list of steps (kernel launches and array clears) on fixed
buffers. From that one description it builds the forward replay and the backward replay. The adjoint of
a differentiable launch is built with Warp's public API only: ``wp.launch(..., adjoint=True)`` with the
adjoint arguments ``wp.Tape.get_adjoint`` gives, which is what ``wp.Tape.backward`` launches for a
recorded launch. tests/test_simulator_api.py checks that against ``wp.Tape.backward`` bit for bit, so a
Warp release that differentiates recorded launches differently fails that test instead of the gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import warp as wp

Op = Callable[[], None]


@dataclass(frozen=True)
class Launch:
    """One kernel launch on fixed arguments."""

    kernel: wp.Kernel
    dim: int | tuple[int, ...]
    inputs: Sequence[Any]
    outputs: Sequence[Any]
    adjoint: Launch | Literal["auto"] | None = "auto"
    """In the backward pass: "auto" runs Warp's generated adjoint, a ``Launch`` runs that hand-written
    adjoint instead, None runs nothing (a launch whose adjoint a later launch's hand-written one covers)."""

    def forward_op(self, device: str) -> Op:
        cmd = wp.launch(
            self.kernel,
            dim=self.dim,
            inputs=self.inputs,
            outputs=self.outputs,
            device=device,
            record_cmd=True,
        )
        return cmd.launch

    def adjoint_op(self, device: str) -> Op | None:
        if self.adjoint is None:
            return None
        if isinstance(self.adjoint, Launch):
            return self.adjoint.forward_op(device)
        adjoint_of = wp.Tape().get_adjoint  # a.grad for arrays, zero for scalars, mirrored structs
        cmd = wp.launch(
            self.kernel,
            dim=self.dim,
            inputs=self.inputs,
            outputs=self.outputs,
            adj_inputs=[adjoint_of(a) for a in self.inputs],
            adj_outputs=[adjoint_of(a) for a in self.outputs],
            device=device,
            adjoint=True,
            record_cmd=True,
        )
        return cmd.launch


@dataclass(frozen=True)
class Clear:
    """Zero an accumulator before launches add into it; nothing to do in the backward pass."""

    array: wp.array

    def forward_op(self, device: str) -> Op:
        return self.array.zero_

    def adjoint_op(self, device: str) -> Op | None:
        return None


Step = Launch | Clear


def forward_ops(steps: Sequence[Step], device: str) -> list[Op]:
    return [step.forward_op(device) for step in steps]


def adjoint_ops(steps: Sequence[Step], device: str) -> list[Op]:
    """The backward pass of ``steps``: their adjoints in reverse order."""
    ops = (step.adjoint_op(device) for step in reversed(steps))
    return [op for op in ops if op is not None]


class OpSequence:
    """Prebuilt operations run in order: as one captured graph on the CPU (replayed in C++, no Python
    per launch), on CUDA as plain launches on torch's current stream so that they are ordered with the
    torch copies around them.
    """

    def __init__(self, device: str, ops: list[Op]):
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
