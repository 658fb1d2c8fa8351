"""The task-agnostic transformer policy: SB3 actor-critic over the tables observation.

**Network** (:class:`TablesPolicyNet`). Every row of the tables observation
(:mod:`algind_gym.envs.tables`) becomes a token: one per pointer-table entry (its 18
features; a skill entry also gets the embedding of the skill row it points to), one per
skill (its features and slot signature, plus a learned embedding of its row), and one
global token (calls made and left, the
potential, the length). Padding rows are masked out (and trimmed to the largest real count
in the batch). A small pre-norm transformer encoder mixes them. Then:

* **skill head**: a linear score per skill token plus ``log N_s``, the log of the number of
  valid bindings of skill ``s`` (from the masks), and a HALT score from the global token.
  With the pointer heads near uniform at initialisation, the policy then starts near the
  uniform distribution over valid ``(skill, bindings)`` actions (what a masked policy over
  the discrete encoding starts from), instead of favouring skills with few bindings;
* **pointer heads**: for slot ``j``, a query ``W_j h_s + U c_j`` from the *chosen* skill's
  token ``h_s`` and the sum ``c_j`` of the pointer tokens already bound to slots ``< j``
  attends over the pointer tokens (``W_k h_p``); the scores are slot ``j``'s logits
  (slots are chosen in order, so ``zipmap(&s_mul, x, ?, t)`` knows ``x`` is taken);
* **value head**: an MLP on the global token.

No layer has a size that depends on the task: parameters depend only on ``d_model``,
the feature widths and the table caps, so one network acts in every task.

*Row embeddings.* The skill table describes a skill by its kind, level and slot
signature, so ``s_add``, ``s_sub``, ``s_mul``... have identical rows, and a network that is
blind to row order (a transformer without positions) could never prefer ``s_mul`` to
``s_add``; likewise two inputs ``x`` and ``y`` differ only in their data summaries, and
two slot heads then pick the same one (``zipmap(&s_mul, x, x, t)``). Each skill row
therefore gets a learned embedding of its index (skill rows follow the library's order,
which is append-only, so a skill keeps its row in every task of a library), and each
pointer row a learned embedding of its *role and rank within that role* (input 0, input
1, output 0, scratch 0, ...), not of its absolute index: the first scratch vector is row
2 in Sum (one input) and row 3 in DotProduct (two), and an embedding by absolute row would
give the same buffer a different identity in each task, hindering transfer.

**Distribution** (autoregressive: skill, then slot by slot). An action is
``(s, p_0, ..., p_{A-1})``; ``log pi(a) = log pi(s) + sum_j log pi(p_j | s, p_<j)`` over the
slots ``s`` has (sampling runs the slots in order; training scores given actions in one
pass, teacher-forced). The masks come from the observation and are exact:
``skill_mask`` masks the skill, and slot ``j``'s pointers are masked with
``class_mask[slot_class[s, j]]`` *for the chosen skill s* (a mask the factorised
``MultiDiscrete`` masks of sb3-contrib cannot express).

*Dataflow refinement* (``dataflow=True``, the default): a slot that reads (role ``in`` or
``inout``) is also denied output and scratch buffers that no call of the episode has
written yet (pointer feature 17), i.e. uninitialised memory; a skill left without a
binding for some slot is masked. Such a read would see the machines' initial contents
(random, different per example), never a computed value; this is the def-use rule of the
search agents' ``dataflow`` option (:meth:`agents.tree.SearchTree.candidates`), and on
DotProduct it cuts the first step's choices from 2,440 to 524. The ``log N_s`` offset of the
skill head counts the refined bindings. Slots beyond ``s``'s arity are
fixed to 0 with probability 1 (log-probability 0, entropy 0). The reported entropy is
``H(s) + sum_j H(p_j | s, p_<j)`` at the taken action, a one-sample estimate of the
joint entropy. So the policy never samples an invalid action, under PPO as under MaskablePPO;
the ``action_masks`` that MaskablePPO passes (a coarser projection) are not needed and
ignored.

**Use** (:func:`transformer_policy_class`): ``ppo`` gets
:class:`TransformerActorCriticPolicy`, ``maskable_ppo``
:class:`MaskableTransformerPolicy`. ``policy_kwargs``: ``d_model`` (32), ``n_heads`` (4),
``n_layers`` (2), ``dim_feedforward`` (64), ``dataflow`` (True), ``use_masks`` (True),
``length_invariant`` (False; below), plus SB3's ``optimizer_class`` / ``optimizer_kwargs``.

*Length-invariant actor* (``length_invariant=True``): the actor does not see any input
whose value depends on the episode's length or on the data's values. Column by column
(:mod:`algind_gym.envs.tables`), zeroed before the encoder:

* pointer 10-11 (``log2(1 + rows/cols)``): the length itself;
* pointer 13-15 (symlog mean/min/max of the data over the K machines): the inputs' data,
  and for written buffers values whose distribution moves with the length (a sum of
  ``n`` products grows with ``n``);
* pointer 16 and global 2 (fraction of output elements right, the potential): the
  reward-side signal; it depends on the data (a wrong output can be right by chance) and
  on the length (a program right on a prefix). The actor does not need it to stop: an
  episode ends by itself once every output is right;
* global 3 (``log2(1 + length)``).

Kept: the type and role one-hots (0-9), the skill reference (12), the written flag (17),
the whole skill table (static, plus column 7, the calls of each skill so far), the masks,
and globals 0-1 (calls made and left). The potential (global 2) goes to the **critic**
only: the value head reads the encoder's global token plus a linear embedding of the
potential, so the value estimate keeps the reward-side signal while the actor's logits do
not depend on it. The masks are fixed per task (the env builds its table spec once) but
for the dataflow rule's written flags, so they do not depend on the length either. So the
actor's logits are a function of the task and of what the observation keeps of the call
history (calls per skill, which buffers were written, calls made and left): the greedy
program written at any length is the one written at the training lengths
(``tests/agents/test_rl_length_invariant.py`` checks the logits bit for bit on DotProduct
at lengths 2 and 64 after the same calls). The option adds one ``Linear(1, d_model)`` (the
critic's potential embedding); the parameter count still does not depend on the task. The
default stays ``False``: saved models (trained with every column) load and act as before,
and with the option the shipped VectorAdd run solves VectorAdd by 5,000 timesteps and then
loses it (``experiments/results/rl_notes.md``, section (a''')).

*Without masks* (``use_masks=False``; ``ppo.yml``'s transformer entry, the unmasked
baseline): the skill mask, the class masks and the dataflow rule are ignored; the policy
still picks only rows that exist in the task (not padding) and fills only the chosen
skill's slots, so it acts in the task's full skill x pointer product and an invalid action
ends the episode with the environment's fault penalty, as for PPO with the MLP policy. The action space must be the fixed one of
:mod:`agents.rl.tables` (``MultiDiscrete([S + 1] + [P] * A)``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from algind_gym.envs.tables import SKILL_FEATURES, SLOT_FEATURES, SLOT_ROLES, TYPES

NEG = -1e8
"""Logit of a masked choice (finite, so entropies stay finite)."""
TABLE_KEYS = ("pointers", "skills", "skill_mask", "slot_class", "class_mask", "globals")
SKILL_REF = 12
"""Pointer feature column holding ``1 + skill row`` for a skill entry."""
ROLE_COLUMNS = slice(5, 10)
"""Pointer feature columns of the role one-hot (input, output, scratch, constant, skill)."""
N_ROLES = 5
WRITTEN = 17
"""Pointer feature column: 1 once an earlier call of the episode wrote the entry."""
SLOT_OUT_ROLE = len(TYPES) + SLOT_ROLES.index("out")
"""Column of the ``out`` role within a slot's features (type one-hot, then the role's)."""
LENGTH_POINTER_COLUMNS = (10, 11, 13, 14, 15, 16)
"""Pointer columns hidden from the actor by ``length_invariant`` (shape, data, fraction
right; see the module docstring)."""
LENGTH_GLOBAL_COLUMNS = (2, 3)
"""Global columns hidden from the actor by ``length_invariant`` (potential, length)."""
POTENTIAL = 2
"""Global column of the potential (what the critic keeps under ``length_invariant``)."""


class TablesPolicyNet(nn.Module):
    """Encoder and heads (see the module docstring); sizes from the observation space."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 64,
        dataflow: bool = True,
        use_masks: bool = True,
        length_invariant: bool = False,
    ) -> None:
        super().__init__()
        self.dataflow = bool(dataflow)
        self.use_masks = bool(use_masks)
        self.length_invariant = bool(length_invariant)
        self.n_pointers, ptr_f = observation_space["pointers"].shape
        self.n_skills, skill_f = observation_space["skills"].shape
        self.arity = observation_space["slot_class"].shape[1]
        glob_f = observation_space["globals"].shape[0]
        self.d = d_model
        self.ptr_in = nn.Linear(ptr_f, d_model)
        self.skill_in = nn.Linear(skill_f, d_model)
        self.glob_in = nn.Linear(glob_f, d_model)
        self.kind = nn.Parameter(torch.randn(3, d_model) * 0.02)
        self.skill_row = nn.Parameter(torch.randn(self.n_skills, d_model) * 0.02)
        self.pointer_rank = nn.Parameter(torch.randn(N_ROLES, self.n_pointers, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.skill_score = nn.Linear(d_model, 1)
        self.halt_score = nn.Linear(d_model, 1)
        self.slot_query = nn.Linear(d_model, self.arity * d_model)
        self.pointer_key = nn.Linear(d_model, d_model)
        self.prev_query = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh(), nn.Linear(d_model, 1))
        self.value_potential = nn.Linear(1, d_model) if self.length_invariant else None

    def actor_inputs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``obs`` with the columns ``length_invariant`` hides zeroed (``obs`` itself when
        the option is off)."""
        if not self.length_invariant:
            return obs
        ptr, glob = obs["pointers"].clone(), obs["globals"].clone()
        ptr[..., list(LENGTH_POINTER_COLUMNS)] = 0.0
        glob[..., list(LENGTH_GLOBAL_COLUMNS)] = 0.0
        return {**obs, "pointers": ptr, "globals": glob}

    def critic(self, obs: dict[str, torch.Tensor], enc: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, 1)`` value estimates: from the global token, plus the potential under
        ``length_invariant`` (which the actor does not see)."""
        h = enc["glob"]
        if self.value_potential is not None:
            h = h + self.value_potential(obs["globals"][..., POTENTIAL : POTENTIAL + 1])
        return self.value(h)

    # ---------------------------------------------------------------- encoder
    def encode(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs = self.actor_inputs(obs)
        ptr, skl = obs["pointers"], obs["skills"]
        ptr_present = ptr[..., :10].abs().sum(-1) > 0
        skill_present = skl[..., 0] > 0.5
        n_p = _used(ptr_present)
        n_s = _used(skill_present)
        ptr, skl = ptr[:, :n_p], skl[:, :n_s]
        ptr_present, skill_present = ptr_present[:, :n_p], skill_present[:, :n_s]
        skill_tok = self.skill_in(skl) + self.skill_row[:n_s]
        ref = ptr[..., SKILL_REF].round().long()  # 1 + skill row, 0 for data entries
        ptr_feat = ptr.clone()
        ptr_feat[..., SKILL_REF] = 0.0
        linked = torch.gather(
            torch.cat([torch.zeros_like(skill_tok[:, :1]), skill_tok], dim=1),
            1,
            ref.clamp(0, n_s).unsqueeze(-1).expand(-1, -1, self.d),
        )
        ptr_tok = self.ptr_in(ptr_feat) + linked + self.rank_embedding(ptr) + self.kind[0]
        skill_tok = skill_tok + self.kind[1]
        glob_tok = (self.glob_in(obs["globals"]) + self.kind[2]).unsqueeze(1)
        tokens = torch.cat([glob_tok, ptr_tok, skill_tok], dim=1)
        pad = torch.cat([torch.zeros_like(ptr_present[:, :1]), ~ptr_present, ~skill_present], dim=1)
        # no mask when no row is padding (one task per batch, rows trimmed): PyTorch's
        # inference fast path then skips its masked softmax, a fifth of a rollout step's time
        h = self.norm(self.encoder(tokens, src_key_padding_mask=pad if pad.any() else None))
        return {
            "allowed": self.slot_allowed(obs, ptr_present, n_s),
            "glob": h[:, 0],
            "ptr": h[:, 1 : 1 + n_p],
            "skill": h[:, 1 + n_p :],
            "ptr_present": ptr_present,
            "skill_present": skill_present,
        }

    def rank_embedding(self, ptr: torch.Tensor) -> torch.Tensor:
        """``(B, P', d)``: the embedding of each row's (role, rank among that role's rows)."""
        roles = ptr[..., ROLE_COLUMNS]  # one-hot (zero for padding rows)
        rank = ((torch.cumsum(roles, dim=1) - roles) * roles).sum(-1).round().long()
        role = roles.argmax(-1)
        return self.pointer_rank[role, rank.clamp(max=self.n_pointers - 1)]

    # ------------------------------------------------------------------ heads
    def skill_logits(self, obs, enc) -> torch.Tensor:
        """``(B, S + 1)`` masked logits; index ``S`` is HALT."""
        n_s = enc["skill"].shape[1]
        allowed = enc["allowed"]  # (B, S', A, P')
        slot_used = obs["slot_class"][:, :n_s] >= 0  # (B, S', A)
        counts = allowed.sum(-1)  # (B, S', A)
        log_bind = torch.where(slot_used, counts.clamp(min=1).float().log(), 0.0).sum(-1)
        scores = self.skill_score(enc["skill"]).squeeze(-1) + log_bind
        ok = enc["skill_present"]
        if self.use_masks:
            ok = ok & (obs["skill_mask"][:, :n_s] > 0.5)
        ok = ok & ((counts > 0) | ~slot_used).all(-1)
        scores = F.pad(scores.masked_fill(~ok, NEG), (0, self.n_skills - n_s), value=NEG)
        logits = torch.cat([scores, self.halt_score(enc["glob"])], dim=-1)
        return logits

    def slot_allowed(self, obs, ptr_present, n_s: int) -> torch.Tensor:
        """``(B, S', A, P')``: may pointer ``p`` be bound to slot ``j`` of skill ``s``?

        The observation's exact mask (``class_mask[slot_class[s, j], p]``), and with
        ``dataflow`` also: a slot that reads (role ``in`` or ``inout``) takes only an entry
        that holds a value, i.e. an input, a constant, a skill, or an output or scratch
        buffer that an earlier call of the episode wrote (pointer feature 17).
        """
        n_p = ptr_present.shape[1]
        cls = obs["slot_class"][:, :n_s].round().long()  # (B, S', A)
        b, _, a = cls.shape
        if not self.use_masks:  # every existing row for every slot the skill has
            return (cls >= 0).unsqueeze(-1) & ptr_present[:, None, None, :]
        cmask = obs["class_mask"][:, :, :n_p] > 0.5  # (B, C, P')
        allowed = torch.gather(cmask, 1, cls.clamp(min=0).view(b, -1, 1).expand(-1, -1, n_p)).view(
            b, n_s, a, n_p
        )
        allowed = allowed & (cls >= 0).unsqueeze(-1) & ptr_present[:, None, None, :]
        if self.dataflow:
            ptr = obs["pointers"][:, :n_p]
            roles = ptr[..., ROLE_COLUMNS] > 0.5  # input, output, scratch, constant, skill
            has_value = roles[..., 0] | roles[..., 3] | roles[..., 4] | (ptr[..., WRITTEN] > 0.5)
            cols = SKILL_FEATURES + SLOT_FEATURES * torch.arange(a) + SLOT_OUT_ROLE
            writes_only = obs["skills"][:, :n_s][..., cols] > 0.5  # (B, S', A)
            allowed = allowed & (writes_only.unsqueeze(-1) | has_value[:, None, None, :])
        return allowed

    def slot_context(self, obs, enc, skill: torch.Tensor) -> dict[str, torch.Tensor]:
        """What every slot's logits share once the ``skill`` is chosen: its slot queries,
        the pointer keys, the allowed pointers and the ``(B, A)`` flags of the slots it has
        (computed once per action, then reused slot by slot)."""
        b = enc["ptr"].shape[0]
        n_s = enc["skill"].shape[1]
        halt = skill >= self.n_skills
        s = skill.clamp(max=max(n_s - 1, 0))
        rows = torch.arange(b, device=skill.device)
        cls = obs["slot_class"][rows, s].round().long()  # (B, A)
        used = (cls >= 0) & ~halt.unsqueeze(-1)
        return {
            "used": used,
            "query": self.slot_query(enc["skill"][rows, s]).view(b, self.arity, self.d),
            "key": self.pointer_key(enc["ptr"]) / math.sqrt(self.d),  # (B, P', d)
            "allowed": enc["allowed"][rows, s] & used.unsqueeze(-1),  # (B, A, P')
        }

    def slot_logits(
        self, enc, ctx: dict[str, torch.Tensor], pointers: torch.Tensor, slots: slice
    ) -> torch.Tensor:
        """``(B, len(slots), P)`` masked logits of the given slots, slot ``j`` given the
        ``pointers`` bound to slots ``< j`` (later entries of ``pointers`` are not read)."""
        n_p = enc["ptr"].shape[1]
        used = ctx["used"]
        # what the earlier slots chose: the exclusive running sum of their pointer tokens
        chosen = torch.gather(
            enc["ptr"], 1, pointers.clamp(0, n_p - 1).unsqueeze(-1).expand(-1, -1, self.d)
        ) * used.unsqueeze(-1)
        before = (torch.cumsum(chosen, dim=1) - chosen)[:, slots]
        q = ctx["query"][:, slots] + self.prev_query(before)
        scores = torch.einsum("bad,bpd->bap", q, ctx["key"])
        allowed = ctx["allowed"][:, slots]
        scores = F.pad(scores.masked_fill(~allowed, NEG), (0, self.n_pointers - n_p), value=NEG)
        # a slot the skill does not have: pointer 0 with probability 1
        fixed = torch.full_like(scores[:1, :1], NEG)
        fixed[..., 0] = 0.0
        return torch.where(used[:, slots].unsqueeze(-1), scores, fixed)

    def pointer_logits(
        self, obs, enc, skill: torch.Tensor, pointers: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, A, P)`` masked logits of every slot of the chosen ``skill``, slot ``j``
        given the ``pointers`` bound to slots ``< j`` (teacher forcing; later entries of
        ``pointers`` are not read), and the ``(B, A)`` flags of the slots the skill has."""
        ctx = self.slot_context(obs, enc, skill)
        return self.slot_logits(enc, ctx, pointers, slice(None)), ctx["used"]

    # ----------------------------------------------------------- distribution
    def act(self, obs, deterministic: bool = False):
        """Sample (or take the mode of) an action; returns ``(actions, values, log_prob)``.

        The skill first, then the slots in order, each given the earlier ones; the
        skill's slot queries, the pointer keys and masks are computed once per action."""
        enc = self.encode(obs)
        sd = _categorical(self.skill_logits(obs, enc))
        skill = sd.probs.argmax(-1) if deterministic else sd.sample()
        ctx = self.slot_context(obs, enc, skill)
        used = ctx["used"]
        ptrs = torch.zeros(skill.shape[0], self.arity, dtype=torch.long, device=skill.device)
        log_prob = sd.log_prob(skill)
        for j in range(self.arity):
            if not used[:, j].any():
                break  # no skill in the batch has slot j (nor any later one)
            pd = _categorical(self.slot_logits(enc, ctx, ptrs, slice(j, j + 1))[:, 0])
            ptrs[:, j] = pd.probs.argmax(-1) if deterministic else pd.sample()
            log_prob = log_prob + pd.log_prob(ptrs[:, j]) * used[:, j]
        actions = torch.cat([skill.unsqueeze(-1), ptrs], dim=-1)
        return actions, self.critic(obs, enc), log_prob

    def evaluate(self, obs, actions: torch.Tensor):
        """``(values, log_prob, entropy)`` of given actions (teacher-forced slots)."""
        actions = actions.long()
        enc = self.encode(obs)
        sd = _categorical(self.skill_logits(obs, enc))
        skill = actions[:, 0]
        pl, used = self.pointer_logits(obs, enc, skill, actions[:, 1:])
        pd = _categorical(pl)
        log_prob = sd.log_prob(skill) + (pd.log_prob(actions[:, 1:]) * used).sum(-1)
        entropy = sd.entropy() + (pd.entropy() * used).sum(-1)
        return self.critic(obs, enc), log_prob, entropy


def _categorical(logits: torch.Tensor) -> torch.distributions.Categorical:
    """A categorical over ``logits`` without torch's argument checks (the logits are finite
    by construction: masked choices get ``NEG``); the checks cost about as much as the
    distribution itself at these sizes (a rollout step builds one per slot)."""
    return torch.distributions.Categorical(logits=logits, validate_args=False)


def _used(present: torch.Tensor) -> int:
    """Rows up to the last present one in any batch element (at least 1)."""
    any_row = present.any(0).nonzero()
    return int(any_row.max()) + 1 if any_row.numel() else 1


class _TablesPolicy:
    """The SB3 side shared by both policy classes (mixed into an actor-critic policy)."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 64,
        dataflow: bool = True,
        use_masks: bool = True,
        length_invariant: bool = False,
        **kwargs: Any,
    ) -> None:
        check_spaces(observation_space, action_space)
        self._net_kwargs = {
            "d_model": d_model,
            "n_heads": n_heads,
            "n_layers": n_layers,
            "dim_feedforward": dim_feedforward,
            "dataflow": dataflow,
            "use_masks": use_masks,
            "length_invariant": length_invariant,
        }
        kwargs.setdefault("ortho_init", False)
        kwargs.pop("net_arch", None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule) -> None:
        self.net = TablesPolicyNet(self.observation_space, **self._net_kwargs)
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self._net_kwargs)
        data.pop("net_arch", None)
        return data

    def _obs(self, obs) -> dict[str, torch.Tensor]:
        return {k: obs[k].float() for k in TABLE_KEYS}

    def forward(self, obs, deterministic: bool = False, action_masks=None):
        return self.net.act(self._obs(obs), deterministic)

    def evaluate_actions(self, obs, actions, action_masks=None):
        return self.net.evaluate(self._obs(obs), actions)

    def predict_values(self, obs) -> torch.Tensor:
        o = self._obs(obs)
        return self.net.critic(o, self.net.encode(o))

    def _predict(self, observation, deterministic: bool = False, action_masks=None):
        return self.net.act(self._obs(observation), deterministic)[0]

    def get_distribution(self, obs, action_masks=None):
        raise NotImplementedError(
            "the transformer policy's distribution is conditional (pointers given the skill); "
            "use forward(), evaluate_actions() or predict()"
        )


class TransformerActorCriticPolicy(_TablesPolicy, ActorCriticPolicy):
    """The transformer policy for SB3 ``PPO`` (see the module docstring)."""


class MaskableTransformerPolicy(_TablesPolicy, MaskableActorCriticPolicy):
    """The transformer policy for sb3-contrib ``MaskablePPO`` (see the module docstring)."""


def transformer_policy_class(algo: str) -> type:
    """The policy class for ``algo`` (``ppo`` or ``maskable_ppo``)."""
    if algo == "ppo":
        return TransformerActorCriticPolicy
    if algo == "maskable_ppo":
        return MaskableTransformerPolicy
    raise ValueError(f"the transformer policy works with ppo and maskable_ppo, not {algo}")


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """The tables observation and the fixed action space of :mod:`agents.rl.tables`."""
    if not isinstance(observation_space, spaces.Dict) or not set(TABLE_KEYS) <= set(
        observation_space.spaces
    ):
        raise ValueError(
            "the transformer policy reads the tables observation (keys "
            f"{list(TABLE_KEYS)}); create the env with observation_mode='tables'"
        )
    from agents.rl.tables import fixed_action_space

    want = fixed_action_space(observation_space)
    if action_space != want:
        raise ValueError(
            f"the transformer policy acts in the fixed action space {want}, got {action_space}; "
            "wrap the env with agents.rl.tables.TablesActions (train() does)"
        )
