"""The Transformer CPU: compiled weights that execute the ISA, one instruction per pass.

Public names:

* :class:`TransformerCPU` -- the ``nn.Module`` (``path="fused"`` or ``"dense"``; the fused
  path runs as eager torch ops or as one numba-compiled loop, :mod:`algind_gym.cpu.kernel`);
* :func:`compile_cpu` / :class:`CompiledCPU` -- the weight compiler and its output;
* :func:`make_backend` / :data:`BACKENDS` -- the one backend switch used above this layer;
* :func:`verify_cpu`, :func:`bench_cpu` -- the logic of ``algind-gym verify-cpu`` and
  ``algind-gym bench-cpu``;
* :func:`random_machines` -- the program/state fuzzer.
"""

from algind_gym.cpu.backend import BACKENDS, Backend, make_backend
from algind_gym.cpu.bench import bench_backend, bench_cpu
from algind_gym.cpu.compiler import CompiledCPU, compile_cpu
from algind_gym.cpu.fuzz import random_machines
from algind_gym.cpu.model import TransformerCPU
from algind_gym.cpu.verify import verify_cpu

__all__ = [
    "BACKENDS",
    "Backend",
    "CompiledCPU",
    "TransformerCPU",
    "bench_backend",
    "bench_cpu",
    "compile_cpu",
    "make_backend",
    "random_machines",
    "verify_cpu",
]
