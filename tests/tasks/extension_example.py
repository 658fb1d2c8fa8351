import numpy as np

from algind_gym.skills import builtin_library
from algind_gym.tasks import (
    EXACT,
    ArgSpec,
    TaskSpec,
    Workspace,
    compile_task_program,
    register_task,
)

# 1. A new skill from assembly text: out = x + 1 on scalars.
library = builtin_library()
library.add_assembly(
    """
.skill s_inc(x: scalar, out: scalar)
    load   r0, x, 0
    addi   r0, r0, 1
    store  out, 0, r0
    ret
""",
    description="Increment a scalar: out = x + 1.",
)

# 2. A new task: add one to every element of a sequence of digits.
task = register_task(
    TaskSpec(
        name="Increment",
        description="Add one to every element: out[i] = x[i] + 1.",
        args=(ArgSpec("x", "vector"), ArgSpec("out", "vector", "out")),
        generator=lambda rng, n: {"x": rng.integers(0, 10, size=n).astype(np.float64)},
        oracle=lambda ex: {"out": ex["x"] + 1},
        tolerance=EXACT,
        train_lengths=(1, 2, 4),
        test_lengths=(16, 32),
        level=1,
        track="user",
    )
)

# 3. Solve it with one action -- map(s_inc) -- on 4 examples at a test length.
ws = Workspace(library, task, length=32, batch=4, seed=0)
state = ws.reset()
ws.execute(state, "map", ws.bind(["&s_inc", "x", "out"]))
print(task.env_id, ws.score(state).accuracy)  # AlgInd/Increment-v0 1.0

# 4. The solved program becomes a library skill that later tasks can call.
skill = compile_task_program(library, task, [("map", ["&s_inc", "x", "out"])])
print(skill.key, skill.signature)  # Increment@1 Increment(x: vector) -> out: vector
