"""Retrieval losses."""

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
