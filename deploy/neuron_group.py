"""The emulator's neurons: one layer's neurons for a block of samples, stepped through
time-major chunks of synaptic input (:class:`NeuronGroup`), with Loihi's integer step
(:mod:`snn2loihi.neuron`) run as :mod:`snn2loihi.neuron_loop` runs it."""

from __future__ import annotations

import torch

from snn2loihi import neuron_compile
from snn2loihi.loihi import ACT_SHIFT
from snn2loihi.neuron import u_wrap_spared
from snn2loihi.neuron_loop import (
    NEURON_BLOCK,
    STEP_CHUNK,
    count_dtype,
    step_any,
    steps_time_major,
)
from snn2loihi.schema import CubaNeuron


class NeuronGroup:
    """One layer's neurons for a block of ``n`` samples, stepped from rest through time-major
    chunks of synaptic input: a pipeline can advance every layer a few steps before the next
    chunk, so each layer's input is consumed while it is in cache (the emulator's CPU loop).

    ``bias_mant``: (m,) integer tensor on the device (m neurons per sample, in the order the
    caller flattens them); ``steps``: the whole run's T (for u's 24-bit-wrap proof from
    ``input_bound``, see :func:`snn2loihi.neuron_loop.integrate`); ``count``: keep each neuron's spike count in
    :attr:`counts` (n, m) (:func:`count_dtype` of T; None when not kept). ``int32_safe``, ``compiled``: as for
    :func:`snn2loihi.neuron_loop.integrate` (compiled: one fused kernel per chunk of :data:`STEP_CHUNK` steps).
    """

    def __init__(
        self,
        n: int,
        bias_mant: torch.Tensor,
        neuron: CubaNeuron,
        *,
        steps: int,
        int32_safe: bool,
        input_bound: int | None = None,
        compiled: bool = False,
        count: bool = False,
    ):
        dtype = torch.int32 if int32_safe else torch.int64
        bias = bias_mant.to(dtype)
        self.bias = bias << ACT_SHIFT if int32_safe else bias  # as the step takes it
        self.neuron = neuron
        self.int32_safe = int32_safe
        self.compiled = compiled
        self.u_in_range = u_wrap_spared(neuron, int32_safe, steps, input_bound)
        shape = (n, bias.shape[0])
        self.u = torch.zeros(shape, dtype=dtype, device=bias.device)
        self.v = torch.zeros_like(self.u)
        # compiled, always counted: one kernel variant whether or not the counts are wanted
        counted = count or (compiled and bias.device.type == "cpu")
        self.counts = torch.zeros(shape, dtype=count_dtype(steps), device=bias.device) if counted else None  # fmt: skip

    def advance(
        self, a: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Step through the k steps of ``a`` (k, n, m) (int32, or float32 holding exact
        integers, when ``int32_safe``; else int64). Returns the spikes (k, n, m) uint8 0/1 and,
        with ``record``, ``u`` and ``v`` after every step (k, n, m) int32 on the CPU.
        Compiled: one fused kernel per :data:`STEP_CHUNK` steps, a shorter tail eagerly."""
        k = a.shape[0]
        if not self.compiled or record or a.is_cuda or k < STEP_CHUNK:
            return self._eager(a, record)
        if k == STEP_CHUNK:
            return self._fused(a), None, None
        spikes = torch.empty((k, *self.u.shape), dtype=torch.uint8, device=a.device)
        whole = k - k % STEP_CHUNK
        for t in range(0, whole, STEP_CHUNK):
            spikes[t : t + STEP_CHUNK] = self._fused(a[t : t + STEP_CHUNK])
        if whole < k:
            spikes[whole:] = self._eager(a[whole:], False)[0]
        return spikes, None, None

    def _eager(self, a: torch.Tensor, record: bool):
        """:meth:`advance` step by step, uncompiled."""
        k = a.shape[0]
        n, m = self.u.shape
        spikes = torch.empty((k, n, m), dtype=torch.uint8, device=a.device)
        u_tr = torch.empty((k, n, m), dtype=torch.int32) if record else None
        v_tr = torch.empty_like(u_tr) if record else None
        # on the CPU, blocks of about NEURON_BLOCK neurons keep each step's temporaries in cache
        sub = n if a.is_cuda else max(1, NEURON_BLOCK // max(1, m))
        for lo in range(0, n, sub):
            hi = min(n, lo + sub)
            u, v = self.u[lo:hi], self.v[lo:hi]
            for t in range(k):
                need_u = record or t == k - 1  # u is kept after the last step only
                s, u, v = step_any(a[t, lo:hi], u, v, self.bias, self.neuron, self.int32_safe, self.u_in_range, need_u)  # fmt: skip
                spikes[t, lo:hi] = s
                if self.counts is not None:
                    self.counts[lo:hi] += s
                if record:
                    u_tr[t, lo:hi] = u.to(torch.int32).cpu()
                    v_tr[t, lo:hi] = v.to(torch.int32).cpu()
            self.u[lo:hi], self.v[lo:hi] = u, v
        return spikes, u_tr, v_tr

    def _fused(self, a: torch.Tensor) -> torch.Tensor:
        """:data:`STEP_CHUNK` steps of ``a`` in one compiled kernel: the spikes (k, n, m)."""
        fn = neuron_compile.compiled("steps_time_major", steps_time_major)
        # detach(): the same memory without view history, so the kernel's guards do not follow
        # the shape of the tensor ``a`` was cut from (one compile serves every layer)
        args = (a.detach(), self.u, self.v, self.bias, self.counts, self.neuron, self.int32_safe, self.u_in_range)  # fmt: skip
        spikes, self.u, self.v, self.counts = neuron_compile.run_compiled(
            fn, steps_time_major, *args
        )
        return spikes
