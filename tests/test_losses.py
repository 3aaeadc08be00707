"""The sampled softmax against a numpy reference written element by element."""

import jax.numpy as jnp
import numpy as np
import pytest

from mmrec import losses


def reference_loss(user, item, ids, log_q, temperature, logq_weight, mask_hits):
  b = len(ids)
  total = 0.0
  for i in range(b):
    logits = []
    for j in range(b):
      if mask_hits and j != i and ids[j] == ids[i]:
        continue  # an accidental hit is not a negative
      z = float(np.dot(user[i], item[j])) / temperature
      z -= logq_weight * log_q[j]
      logits.append((j, z))
    zs = np.array([z for _, z in logits])
    m = zs.max()
    log_norm = m + np.log(np.exp(zs - m).sum())
    positive = dict(logits)[i]
    total += log_norm - positive
  return total / b


@pytest.mark.parametrize("logq", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("mask_hits", [True, False])
def test_sampled_softmax_matches_reference(logq, mask_hits):
  rng = np.random.default_rng(0)
  b, d = 7, 5
  user = rng.normal(size=(b, d)).astype(np.float32)
  item = rng.normal(size=(b, d)).astype(np.float32)
  ids = np.array([3, 1, 3, 4, 1, 1, 9], np.int32)  # accidental hits: 3 twice, 1 three times
  log_q = np.log(rng.uniform(0.01, 0.5, size=b)).astype(np.float32)
  loss, metrics = losses.sampled_softmax(jnp.asarray(user), jnp.asarray(item), jnp.asarray(ids),
                                         jnp.asarray(log_q), temperature=0.5,
                                         logq_weight=logq, mask_accidental_hits=mask_hits)
  expected = reference_loss(user, item, ids, log_q, 0.5, logq, mask_hits)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert 0.0 <= float(metrics["in_batch_accuracy"]) <= 1.0


def test_logq_correction_penalises_popular_negatives():
  """With identical scores, the correction lowers the loss of rows whose negatives are popular."""
  b = 4
  user = jnp.ones((b, 2)) / np.sqrt(2)
  item = jnp.ones((b, 2)) / np.sqrt(2)
  ids = jnp.arange(b)
  log_q = jnp.log(jnp.array([0.7, 0.1, 0.1, 0.1]))
  plain, _ = losses.sampled_softmax(user, item, ids, log_q, temperature=1.0, logq_weight=0.0)
  corrected, _ = losses.sampled_softmax(user, item, ids, log_q, temperature=1.0)
  np.testing.assert_allclose(float(plain), np.log(b), rtol=1e-6)  # uniform logits: log B
  assert float(corrected) != pytest.approx(float(plain))
