import gymnasium as gym
import numpy as np

from algind_gym.skills import builtin_library
from algind_gym.tasks import EXACT, ArgSpec, TaskSpec, compile_task_program, register_task
from envs_registry import register_task_env

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

# 2. A composed skill: map the new skill over a vector.
library.compose(
    "inc_all",
    [("x", "vector"), ("out", "vector")],
    [("map", ["&s_inc", "x", "out"])],
    description="Add one to every element: out[i] = x[i] + 1.",
)

# 3. A new task. Nothing to declare for working memory: the machine offers a scratch
#    pool shaped from the signature (tmp_v0, tmp_v1 like x; tmp_s0, tmp_s1 scalars) and
#    the constants zero and one.
task = register_task(
    TaskSpec(
        name="IncrementedSum",
        description="Sum of the elements plus one each: out = sum_i (x[i] + 1).",
        args=(ArgSpec("x", "vector"), ArgSpec("out", "scalar", "out")),
        generator=lambda rng, n: {"x": rng.integers(0, 10, size=n).astype(np.float64)},
        oracle=lambda ex: {"out": np.sum(ex["x"] + 1)},
        tolerance=EXACT,
        train_lengths=(1, 2, 4),
        test_lengths=(16, 32),
        level=1,
        track="user",
    )
)

# 4. Its environment, with the library that holds the new skills, solved at a test
#    length by two actions: tmp_v0 = inc_all(x); out = fold(s_add, tmp_v0, zero).
env = gym.make(register_task_env(task), library=library, n_examples=4)
env.reset(seed=0, options={"length": 32})
program = [("inc_all", ["x", "tmp_v0"]), ("fold", ["&s_add", "tmp_v0", "zero", "out"])]
for skill, names in program:
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.encode(skill, names))
print(task.env_id, info["success"])  # AlgInd/IncrementedSum-v0 True

# 5. The solved program becomes a skill for later tasks (after a check at every
#    training length; a program that fails one is refused, naming length and example).
skill = compile_task_program(library, task, program)
print(skill.key, skill.signature)  # IncrementedSum@1 IncrementedSum(x: vector) -> out: scalar
