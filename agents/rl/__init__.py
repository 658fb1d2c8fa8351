"""Reinforcement-learning baselines on the composition environments (the ``rl`` extra).

* :mod:`agents.rl.train` -- :func:`~agents.rl.train.train` (``algind-gym train``): SB3 PPO,
  A2C, :class:`~agents.rl.masked_dqn.MaskedDQN` or sb3-contrib MaskablePPO on the
  vector env, with evaluation at every length, checkpoints and a saved model.
* :mod:`agents.rl.evaluate` -- loading a saved model, replaying it
  (``algind-gym evaluate``), success rates per length.
* :mod:`agents.rl.hyperparams` -- the RL Zoo-layout YAML files in
  ``experiments/hyperparams/``.
* :mod:`agents.rl.vec_env` -- a Gymnasium vector env as an SB3 ``VecEnv``.
* :mod:`agents.rl.masked_dqn` -- DQN whose choices respect the action masks.
* :mod:`agents.rl.solve_agents` -- a trained model as a :func:`agents.solve` agent.
* :mod:`agents.rl.tables` -- the fixed action space over the tables observation, and
  :class:`~agents.rl.tables.MultiTaskEnv` (a task per episode).
* :mod:`agents.rl.policies` -- the task-agnostic transformer policy (``--policy transformer``).
* :mod:`agents.rl.learned_prior` -- the policy as an MCTS prior, behaviour cloning.

Only :mod:`agents.rl.solve_agents` is imported by ``agents``; it imports SB3 lazily.
"""
