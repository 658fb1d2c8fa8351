"""Gymnasium environments: one :class:`SkillCompositionEnv` per curriculum task.

``import algind_gym`` registers ``AlgInd/<Task>-v0`` for every task (see
:mod:`envs_registry`).
"""

from algind_gym.envs.composition import SkillCompositionEnv
from algind_gym.envs.vector import AlgIndVectorEnv

__all__ = ["AlgIndVectorEnv", "SkillCompositionEnv"]
