"""The compiled-transformer CPU v2 (opt-in backends; :mod:`algind_gym.cpu` stays the default).

This is a genuine transformer compiled from the micro-op table ``MICROCODE``
(:mod:`algind_gym.cpu_v2.compiler`): a residual stream, hard-attention heads with
``W_Q``, ``W_K``, ``W_V``, ``W_O``, and MLP blocks with weight matrices ``W_1``/``W_2``
(:mod:`algind_gym.cpu_v2.circuit` builds them, :mod:`algind_gym.cpu_v2.blocks` defines the
blocks). Three executors run the same compiled matrices: dense (every matmul over every
cell token, each layer stacked into one multi-head attention per kind of head and a few
wide MLPs: :mod:`algind_gym.cpu_v2.stacked`, run on numpy for inference and on torch for
autograd by :mod:`algind_gym.cpu_v2.dense`), fused torch ops, and one numba loop
(:mod:`algind_gym.cpu_v2.kernel`). All three match the reference interpreter bit for bit.

It is still much slower than :mod:`algind_gym.cpu`: in one side-by-side run of
``experiments/bench_cpu.py`` (divergent workload, float32, one numba thread) on a shared,
heavily loaded 2-core machine its numba kernel ran 5x slower than the default kernel at
batch 1, 29x at batch 8 and 84x at batch 4096 (0.06x the reference interpreter there).
Hence opt-in: ``make_backend("transformer-v2")`` (numba), ``"transformer-v2-torch"`` and
``"transformer-v2-dense"`` (:data:`algind_gym.cpu.backend.OPT_IN_BACKENDS`);
``algind-gym cpu-info`` prints its blocks, heads, ``d_model``, parameters and non-zeros per
matrix. It is meant to replace :mod:`algind_gym.cpu` once it is fast (issue 14).

Public names: :class:`TransformerCPU`, :func:`compile_cpu` / :class:`Circuit`,
:func:`make_v2_backend` / :data:`V2_BACKENDS`, :func:`cpu_info`.
"""

from algind_gym.cpu_v2.backend import V2_BACKENDS, make_v2_backend
from algind_gym.cpu_v2.blocks import Circuit
from algind_gym.cpu_v2.circuit import compile_circuit as compile_cpu
from algind_gym.cpu_v2.info import cpu_info
from algind_gym.cpu_v2.model import TransformerCPU

__all__ = [
    "V2_BACKENDS",
    "Circuit",
    "TransformerCPU",
    "compile_cpu",
    "cpu_info",
    "make_v2_backend",
]
