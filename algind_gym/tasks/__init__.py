"""Tasks and the hierarchical curriculum (layer 7 of docs/ARCHITECTURE.md).

* :class:`TaskSpec` and the registry (:func:`register_task`, :func:`get_task`,
  :func:`list_tasks`) -- :mod:`algind_gym.tasks.spec`;
* the machine's scratch pool and constants, derived from a task's signature --
  :mod:`algind_gym.tasks.pool`;
* the built-in curriculum, registered on import -- :mod:`algind_gym.tasks.curriculum`;
* :class:`Workspace`, the one way to execute an action on a task, and
  :func:`compile_task_program`, which turns a solved program into a skill --
  :mod:`algind_gym.tasks.workspace`;
* reference solutions (tests and docs only) -- :mod:`algind_gym.tasks.reference`;
* the logic of the ``list``, ``verify-tasks`` and ``show-skill`` commands --
  :mod:`algind_gym.tasks.commands`.
"""

from algind_gym.skills.compose import Temp
from algind_gym.skills.signature import ArgSpec
from algind_gym.tasks.curriculum import register_builtin_tasks
from algind_gym.tasks.spec import (
    EXACT,
    REAL,
    TaskSpec,
    Tolerance,
    get_task,
    list_tasks,
    register_task,
    unregister_task,
)
from algind_gym.tasks.workspace import Score, Workspace, compile_task_program, verify_task_program

register_builtin_tasks()  # with the helper tasks CountLE, CarryIn, Digit10 (helper_tasks.py)

__all__ = [
    "EXACT",
    "REAL",
    "ArgSpec",
    "Score",
    "TaskSpec",
    "Temp",
    "Tolerance",
    "Workspace",
    "compile_task_program",
    "get_task",
    "list_tasks",
    "register_task",
    "unregister_task",
    "verify_task_program",
]
