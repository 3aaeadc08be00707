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


def log_softmax_np(z):
  m = z.max()
  return z - (m + np.log(np.exp(z - m).sum()))


def test_masked_token_cross_entropy_matches_reference():
  rng = np.random.default_rng(1)
  b, l, v = 3, 5, 7
  logits = rng.normal(size=(b, l, v)).astype(np.float32)
  targets = rng.integers(0, v, (b, l)).astype(np.int32)
  weights = (rng.uniform(size=(b, l)) < 0.4).astype(np.float32)
  weights[0, 0] = 1.0
  total, count, correct = 0.0, 0.0, 0.0
  for i in range(b):
    for j in range(l):
      if weights[i, j]:
        total -= log_softmax_np(logits[i, j].astype(np.float64))[targets[i, j]]
        count += 1
        correct += logits[i, j].argmax() == targets[i, j]
  loss, metrics = losses.masked_token_cross_entropy(jnp.asarray(logits), jnp.asarray(targets),
                                                    jnp.asarray(weights))
  np.testing.assert_allclose(float(loss), total / count, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["accuracy"]), correct / count, rtol=1e-6)


def test_masked_token_cross_entropy_ignores_unmasked_positions():
  logits = jnp.zeros((1, 3, 4)).at[0, 1].set(jnp.array([0.0, 0.0, 9.0, 0.0]))
  targets = jnp.array([[0, 2, 1]])
  loss, _ = losses.masked_token_cross_entropy(logits, targets, jnp.array([[1.0, 0.0, 1.0]]))
  np.testing.assert_allclose(float(loss), np.log(4.0), rtol=1e-6)  # uniform rows only


def test_nt_xent_matches_reference():
  rng = np.random.default_rng(2)
  b, d, tau = 4, 6, 0.3
  v1 = rng.normal(size=(b, d)).astype(np.float32)
  v2 = rng.normal(size=(b, d)).astype(np.float32)
  z = np.concatenate([v1, v2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  total = 0.0
  for i in range(2 * b):
    partner = (i + b) % (2 * b)
    others = [k for k in range(2 * b) if k != i]
    sims = np.array([z[i] @ z[k] / tau for k in others])
    total -= log_softmax_np(sims)[others.index(partner)]
  loss, metrics = losses.nt_xent(jnp.asarray(v1), jnp.asarray(v2), temperature=tau)
  np.testing.assert_allclose(float(loss), total / (2 * b), rtol=1e-5)
  perfect, _ = losses.nt_xent(jnp.asarray(v1), jnp.asarray(v1), temperature=0.01)
  assert float(perfect) < float(loss)  # identical views are the easiest case


def test_sigmoid_contrastive_matches_reference():
  rng = np.random.default_rng(3)
  b, d = 5, 4
  image = rng.normal(size=(b, d)).astype(np.float32)
  text = rng.normal(size=(b, d)).astype(np.float32)
  log_t, bias = np.log(10.0), -10.0
  x = image / np.linalg.norm(image, axis=1, keepdims=True)
  y = text / np.linalg.norm(text, axis=1, keepdims=True)
  total = 0.0
  for i in range(b):
    for j in range(b):
      label = 1.0 if i == j else -1.0
      logit = np.exp(log_t) * float(x[i] @ y[j]) + bias
      total += np.log1p(np.exp(-label * logit))  # -log sigmoid(label * logit)
  loss, _ = losses.sigmoid_contrastive(jnp.asarray(image), jnp.asarray(text),
                                       jnp.asarray(log_t, jnp.float32), jnp.asarray(bias))
  np.testing.assert_allclose(float(loss), total / b, rtol=1e-5)


def reference_full_softmax(user, catalog, targets, mask, temperature, exclude, average="user"):
  """Per user: the mean over its targets of -log softmax over the non-excluded items,
  averaged over users ("user") or every target's term averaged ("interaction")."""
  per_user, every = [], []
  for i in range(len(user)):
    picked = [t for t, m in zip(targets[i], mask[i]) if m]
    if not picked:
      continue
    z = {j: float(np.dot(user[i], catalog[j])) / temperature
         for j in range(len(catalog)) if not exclude[j]}
    zs = np.array(list(z.values()))
    log_norm = zs.max() + np.log(np.exp(zs - zs.max()).sum())
    per_user.append(np.mean([log_norm - z[t] for t in picked]))
    every += [log_norm - z[t] for t in picked]
  return np.mean(per_user) if average == "user" else np.mean(every)


@pytest.mark.parametrize("average", ["user", "interaction"])
def test_full_softmax_matches_reference(average):
  rng = np.random.default_rng(1)
  b, n, d = 5, 11, 4
  user = rng.normal(size=(b, d)).astype(np.float32)
  catalog = rng.normal(size=(n, d)).astype(np.float32)
  exclude = np.zeros(n, bool)
  exclude[[2, 7]] = True  # e.g. cold items: out of the softmax
  targets = rng.choice([0, 1, 3, 4, 5, 6, 8, 9, 10], size=(b, 3)).astype(np.int32)
  mask = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]], bool)  # user 2: none
  loss, metrics = losses.full_softmax(jnp.asarray(user), jnp.asarray(catalog),
                                      jnp.asarray(targets), jnp.asarray(mask),
                                      temperature=0.7, exclude=jnp.asarray(exclude),
                                      average=average)
  expected = reference_full_softmax(user, catalog, targets, mask, 0.7, exclude, average)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert 0.0 <= float(metrics["top1_hit"]) <= 1.0


def reference_mixed(user, item, ids, log_q, sampled, sampled_ids, num_items, temperature):
  """Candidates: the batch's positives (logit - log(B q_j)) and the uniform samples
  (logit - log(M / N)); any candidate equal to row i's positive, other than the
  positive's own column, is dropped."""
  b, m = len(ids), len(sampled_ids)
  total = 0.0
  for i in range(b):
    zs = []
    for j in range(b):
      if j == i or ids[j] != ids[i]:
        zs.append(float(np.dot(user[i], item[j])) / temperature - np.log(b * np.exp(log_q[j])))
    for j in range(m):
      if sampled_ids[j] != ids[i]:
        zs.append(float(np.dot(user[i], sampled[j])) / temperature - np.log(m / num_items))
    positive = float(np.dot(user[i], item[i])) / temperature - np.log(b * np.exp(log_q[i]))
    zs = np.array(zs)
    total += zs.max() + np.log(np.exp(zs - zs.max()).sum()) - positive
  return total / b


def test_mixed_negatives_softmax_matches_reference():
  rng = np.random.default_rng(2)
  b, m, d, n = 6, 5, 4, 40
  user, item = (rng.normal(size=(b, d)).astype(np.float32) for _ in range(2))
  sampled = rng.normal(size=(m, d)).astype(np.float32)
  ids = np.array([3, 1, 3, 4, 8, 1], np.int32)
  sampled_ids = np.array([1, 20, 3, 33, 5], np.int32)  # 1 and 3 are also positives
  log_q = np.log(rng.uniform(0.01, 0.2, size=b)).astype(np.float32)
  loss, _ = losses.mixed_negatives_softmax(
      *map(jnp.asarray, (user, item, ids, log_q, sampled, sampled_ids)), n, temperature=0.3)
  expected = reference_mixed(user, item, ids, log_q, sampled, sampled_ids, n, 0.3)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
