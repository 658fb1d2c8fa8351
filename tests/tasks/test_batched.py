"""Batched generators and oracles agree with the per-example ones (algind_gym.tasks.batched)."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.skills.signature import ArgSpec
from algind_gym.tasks import get_task, list_tasks
from algind_gym.tasks.batched import BATCHED
from algind_gym.tasks.spec import EXACT, TaskSpec, unstack

BATCHED_TASKS = [t.name for t in list_tasks() if t.name in BATCHED]


def test_every_builtin_task_but_the_regression_has_batched_functions():
    names = {t.name for t in list_tasks()}
    assert set(BATCHED) <= names
    assert names - set(BATCHED) <= {"TrainLinearRegression"}
    for name in BATCHED:
        task = get_task(name)
        assert task.batch_generator is BATCHED[name][0]
        assert task.batch_oracle is BATCHED[name][1]


@pytest.mark.parametrize("name", BATCHED_TASKS)
def test_batched_oracle_agrees_with_the_per_example_oracle(name):
    task = get_task(name)
    for length in (*task.train_lengths, task.test_lengths[0]):
        k = 5
        examples = task.batch_generator(np.random.default_rng(length), length, k)
        expected = task.batch_oracle(examples)
        assert set(expected) == set(task.outputs)
        for i, ex in enumerate(unstack(examples, k)):
            want = task.oracle(ex)
            for n in task.outputs:
                got = expected[n][i]
                assert np.shape(got) == np.shape(want[n]), (name, length, n)
                if task.tolerance == EXACT:
                    np.testing.assert_array_equal(got, want[n], err_msg=f"{name} {n}")
                else:  # summation order may differ in the last bit
                    np.testing.assert_allclose(got, want[n], rtol=1e-12, atol=1e-14)
                assert task.tolerance.close(got, want[n]).all()


@pytest.mark.parametrize("name", BATCHED_TASKS)
def test_batched_generator_draws_examples_like_the_per_example_one(name):
    task = get_task(name)
    for length in (task.train_lengths[-1], task.test_lengths[0]):
        k = 64
        batch = task.batch_generator(np.random.default_rng(0), length, k)
        single = task.generator(np.random.default_rng(0), length)
        assert set(batch) == set(single)
        pooled = {n: [] for n in single}
        for _ in range(k):
            for n, v in task.generator(np.random.default_rng(_ + 1), length).items():
                pooled[n].append(np.asarray(v))
        for n, v in single.items():
            b = np.asarray(batch[n])
            assert b.shape == (k, *np.shape(v)), (name, n)
            assert b.dtype == np.asarray(v).dtype, (name, n)
            ref = np.stack(pooled[n])
            # same support: integers stay integers, and the ranges agree
            assert np.array_equal(b, np.round(b)) == np.array_equal(ref, np.round(ref)), n
            assert ref.min() - 0.1 <= b.min() and b.max() <= ref.max() + 0.1, (name, n)


def test_draw_falls_back_to_per_example_functions_in_stream_order():
    task = TaskSpec(
        "PerExampleOnly",
        "out = x + 1",
        (ArgSpec("x", "vector"), ArgSpec("out", "vector", "out")),
        lambda rng, n: {"x": rng.integers(0, 10, size=n).astype(np.float64)},
        lambda ex: {"out": ex["x"] + 1},
    )
    examples, expected = task.draw(np.random.default_rng(3), 4, 3)
    rng = np.random.default_rng(3)
    for i in range(3):
        x = task.generator(rng, 4)["x"]
        np.testing.assert_array_equal(examples["x"][i], x)
        np.testing.assert_array_equal(expected["out"][i], x + 1)


def test_draw_refuses_a_batched_generator_without_a_leading_axis():
    task = get_task("VectorAdd")
    bad = TaskSpec(
        "BadBatch",
        task.description,
        task.args,
        task.generator,
        task.oracle,
        batch_generator=lambda rng, n, k: {"x": rng.uniform(size=n), "y": rng.uniform(size=n)},
    )
    with pytest.raises(ValueError, match="leading axis of 3"):
        bad.draw(np.random.default_rng(0), 4, 3)
