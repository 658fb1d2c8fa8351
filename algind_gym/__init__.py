"""algind-gym: algorithm induction by composing skills on a compiled Transformer CPU.

Importing the package registers the built-in curriculum and one Gymnasium environment per
task (``AlgInd/<Task>-v0``). The layers, bottom up: :mod:`algind_gym.machine` (ISA, state,
assembler, reference interpreter), :mod:`algind_gym.cpu` (the Transformer CPU),
:mod:`algind_gym.skills` (skills and the library), :mod:`algind_gym.tasks` (tasks and the
curriculum), :mod:`algind_gym.envs` (the environments).
"""

__version__ = "0.1.0"


def _register() -> None:
    from envs_registry import register_algind_envs

    register_algind_envs()


_register()
