"""Training losses: retrieval (sampled softmax) and self-supervised (MLM, NT-Xent, SigLIP)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

_MASKED = -1e9


def sampled_softmax(user: jax.Array, item: jax.Array, item_ids: jax.Array, log_q: jax.Array,
                    *, temperature: float, logq_weight: float = 1.0,
                    mask_accidental_hits: bool = True) -> tuple[jax.Array, dict]:
  """In-batch sampled softmax for two-tower retrieval.

  Row i's positive is column i; the other items of the batch are its negatives.
  Popular items appear as in-batch negatives more often than uniform sampling
  would give, so their logits are corrected by subtracting log q_j, the log
  probability of sampling item j into a batch (Yi et al., RecSys 2019). An
  item that is also row i's positive elsewhere in the batch (an accidental
  hit) is masked out of row i's negatives.

  Args:
    user: [B, D] user embeddings. item: [B, D] positive item embeddings.
    item_ids: int [B] item indices, for accidental-hit masking.
    log_q: [B] log sampling probability of each positive item.
  Returns:
    (mean loss, metrics) with in-batch accuracy.
  """
  logits = user @ item.T / temperature
  if logq_weight:
    logits = logits - logq_weight * log_q[None, :]
  if mask_accidental_hits:
    same = item_ids[:, None] == item_ids[None, :]
    logits = jnp.where(same & ~jnp.eye(len(item_ids), dtype=bool), _MASKED, logits)
  labels = jnp.arange(len(item_ids))
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  loss = -log_probs[labels, labels].mean()
  accuracy = (logits.argmax(-1) == labels).mean()
  return loss, {"loss": loss, "in_batch_accuracy": accuracy}


def full_softmax(user: jax.Array, catalog: jax.Array, targets: jax.Array,
                 target_mask: jax.Array, *, temperature: float = 1.0,
                 exclude: jax.Array | None = None, average: str = "user"
                 ) -> tuple[jax.Array, dict]:
  """Multinomial likelihood over the whole catalog (Mult-VAE's, Liang et al. 2018).

  Every item is a negative of every user, so no sampling correction is needed:
  loss = -(1/B) sum_i (1/|T_i|) sum_{j in T_i} log softmax_j(u_i . V^T / temperature)
  with `average="user"`; with "interaction", -(1/sum_i |T_i|) sum_i sum_{j in T_i} ...,
  so that a user weighs as much as their targets (Mult-VAE's sum per user).

  Args:
    user: [B, D]. catalog: [N, D], every item's embedding.
    targets: int [B, T] item indices of each user's targets; target_mask: bool [B, T].
    exclude: optional bool [N], items left out of the softmax (e.g. cold items).
  Returns:
    (the mean loss, metrics).
  """
  if average not in ("user", "interaction"):
    raise ValueError(f"train.loss_average={average!r}: choose 'user' or 'interaction'")
  logits = user @ catalog.T / temperature
  if exclude is not None:
    logits = jnp.where(exclude[None, :], _MASKED, logits)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, targets, axis=1)
  m = target_mask.astype(jnp.float32)
  has = (m.sum(1) > 0).astype(jnp.float32)
  if average == "interaction":
    loss = -(picked * m).sum() / jnp.maximum(m.sum(), 1.0)
  else:
    per_user = -(picked * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    loss = (per_user * has).sum() / jnp.maximum(has.sum(), 1.0)
  hit = ((logits.argmax(-1)[:, None] == targets) & target_mask).any(1)
  return loss, {"loss": loss, "top1_hit": (hit * has).sum() / jnp.maximum(has.sum(), 1.0)}


def mixed_negatives_softmax(user: jax.Array, item: jax.Array, item_ids: jax.Array,
                            log_q: jax.Array, sampled: jax.Array, sampled_ids: jax.Array,
                            num_items: int, *, temperature: float,
                            mask_accidental_hits: bool = True) -> tuple[jax.Array, dict]:
  """Softmax over in-batch negatives mixed with items drawn uniformly from the catalog
  (Yang et al., "Mixed negative sampling", 2020), each source with its own logQ term.

  The B in-batch candidates are the batch's positives, drawn with the data's item
  probability q_j, so each is expected in a batch B q_j times: its logit gets
  -log(B q_j). The M uniform candidates are each expected M/N times: -log(M/N).
  Candidates equal to row i's positive (other than the positive itself) are masked.

  Args:
    user, item: [B, D] users and their positive items. item_ids: int [B]; log_q: [B].
    sampled: [M, D] embeddings of the uniform negatives; sampled_ids: int [M].
  """
  b, m = item.shape[0], sampled.shape[0]
  in_batch = user @ item.T / temperature - (jnp.log(b) + log_q)[None, :]
  uniform = user @ sampled.T / temperature - jnp.log(m / num_items)
  logits = jnp.concatenate([in_batch, uniform], axis=1)
  if mask_accidental_hits:
    ids = jnp.concatenate([item_ids, sampled_ids])
    same = item_ids[:, None] == ids[None, :]
    own = jnp.concatenate([jnp.eye(b, dtype=bool), jnp.zeros((b, m), bool)], axis=1)
    logits = jnp.where(same & ~own, _MASKED, logits)
  labels = jnp.arange(b)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  loss = -log_probs[labels, labels].mean()
  accuracy = (logits.argmax(-1) == labels).mean()
  return loss, {"loss": loss, "in_batch_accuracy": accuracy}


def masked_token_cross_entropy(logits: jax.Array, targets: jax.Array,
                               weights: jax.Array) -> tuple[jax.Array, dict]:
  """Masked-token prediction: cross-entropy at the positions where `weights` > 0.

  Args:
    logits: [B, L, V]. targets: int [B, L], the original tokens.
    weights: [B, L], 1 at the masked (predicted) positions, 0 elsewhere.
  Returns:
    (weighted mean loss, metrics with the accuracy at the masked positions).
  """
  weights = weights.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  total = jnp.maximum(weights.sum(), 1.0)
  loss = (nll * weights).sum() / total
  accuracy = ((logits.argmax(-1) == targets) * weights).sum() / total
  return loss, {"loss": loss, "accuracy": accuracy}


def nt_xent(view1: jax.Array, view2: jax.Array, *, temperature: float) -> tuple[jax.Array, dict]:
  """NT-Xent (SimCLR): each of the 2B views must pick its partner among the other 2B-1.

  Args:
    view1, view2: [B, D] projections of two augmentations of the same B images
      (L2-normalised here, so the logits are cosine similarities / temperature).
  """
  z = jnp.concatenate([view1, view2], axis=0).astype(jnp.float32)
  z = z * jax.lax.rsqrt(jnp.maximum((z * z).sum(-1, keepdims=True), 1e-12))
  n = z.shape[0]
  b = n // 2
  logits = z @ z.T / temperature
  logits = jnp.where(jnp.eye(n, dtype=bool), _MASKED, logits)  # a view is not its own negative
  partner = jnp.concatenate([jnp.arange(b, n), jnp.arange(b)])
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  loss = -log_probs[jnp.arange(n), partner].mean()
  accuracy = (logits.argmax(-1) == partner).mean()
  return loss, {"loss": loss, "accuracy": accuracy}


def sigmoid_contrastive(image: jax.Array, text: jax.Array, log_temperature: jax.Array,
                        bias: jax.Array) -> tuple[jax.Array, dict]:
  """SigLIP (Zhai et al., 2023): every image-text pair is a binary "match?" question.

  Row i matches column i only. loss = -(1/B) sum_ij log sigmoid(z_ij (t x_i.y_j + b)),
  z_ij = +1 on the diagonal and -1 elsewhere, t = exp(log_temperature).

  Args:
    image, text: [B, D] embeddings (L2-normalised here).
    log_temperature, bias: learnable scalars (the paper starts at log 10 and -10).
  """
  def normalize(x):
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum((x * x).sum(-1, keepdims=True), 1e-12))

  logits = jnp.exp(log_temperature) * normalize(image) @ normalize(text).T + bias
  b = logits.shape[0]
  signs = 2.0 * jnp.eye(b) - 1.0
  loss = -jax.nn.log_sigmoid(signs * logits).sum() / b
  labels = jnp.arange(b)
  accuracy = (logits.argmax(-1) == labels).mean()  # image -> text retrieval in the batch
  return loss, {"loss": loss, "accuracy": accuracy}
