"""The gradient composer (:class:`GradientComposer`, registered as ``"gradient"``).

Modules: :mod:`~agents.gradient.ops` (candidate ops), :mod:`~agents.gradient.step` (the
batched differentiable step, hybrid exact/torch run),
:mod:`~agents.gradient.soft` (alpha, W^in and the soft forward pass),
:mod:`~agents.gradient.composer` (training, discretisation, verification),
:mod:`~agents.gradient.monitor` (TensorBoard, progress bar, alpha plot),
:mod:`~agents.gradient.prior` (the description prior for ``init="description"``).
"""

from agents.gradient.composer import GradientComposer, training_length

__all__ = ["GradientComposer", "training_length"]
