#!/usr/bin/env bash
# Train mmrec on a Cloud TPU VM: create it, copy this repo to every worker, install,
# run `mmrec train` on all workers at once (one process per host, jax.distributed joins
# them), stream the logs here, copy nothing back (checkpoints go to --workdir: a directory
# every host shares, e.g. a gcsfuse mount of a bucket at /gcs/BUCKET or a Filestore mount),
# then delete the TPU. See docs/scaling.md.
#
#   tools/tpu_launch.sh --name mmrec-v5e-16 --zone us-west4-a --type v5litepod-16 \
#     --version v2-alpha-tpuv5-lite --config tpu_configs/v5e_16.py --workdir /gcs/BUCKET/runs/x
#
# Options: --slices N (multi-slice over DCN, through a queued resource), --project P,
# --keep (do not delete the TPU at the end), --dry-run (print the gcloud commands only),
# and anything after `--` is passed to `mmrec train` (e.g. -- --config.train.steps=1000).
set -euo pipefail

NAME="" ZONE="" TYPE="" VERSION="" CONFIG="" WORKDIR="" PROJECT="" SLICES=1 KEEP=0 DRY=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --type) TYPE="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --slices) SLICES="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "tpu_launch.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
for v in NAME ZONE TYPE VERSION CONFIG WORKDIR; do
  [[ -n "${!v}" ]] || { echo "tpu_launch.sh: --${v,,} is required" >&2; exit 2; }
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GLOBAL=(--zone "$ZONE")
[[ -n "$PROJECT" ]] && GLOBAL+=(--project "$PROJECT")
run() { echo "+ $*" >&2; [[ $DRY == 1 ]] || "$@"; }

# The TPU VMs (one per slice) this job runs on.
if [[ "$SLICES" -gt 1 ]]; then
  NODES=(); for i in $(seq 0 $((SLICES - 1))); do NODES+=("$NAME-$i"); done
else
  NODES=("$NAME")
fi

cleanup() {
  [[ $KEEP == 1 ]] && { echo "keeping $NAME (--keep); delete it when done" >&2; return; }
  if [[ "$SLICES" -gt 1 ]]; then
    run gcloud compute tpus queued-resources delete "$NAME" "${GLOBAL[@]}" --force --quiet --async
  else
    run gcloud compute tpus tpu-vm delete "$NAME" "${GLOBAL[@]}" --quiet --async
  fi
}
trap cleanup EXIT

# 1. Create.
if [[ "$SLICES" -gt 1 ]]; then
  run gcloud compute tpus queued-resources create "$NAME" "${GLOBAL[@]}" \
    --accelerator-type "$TYPE" --runtime-version "$VERSION" \
    --node-count "$SLICES" --node-prefix "$NAME"
  until [[ $DRY == 1 ]] || gcloud compute tpus queued-resources describe "$NAME" "${GLOBAL[@]}" \
      --format 'value(state.state)' | grep -q ACTIVE; do sleep 30; done
else
  run gcloud compute tpus tpu-vm create "$NAME" "${GLOBAL[@]}" \
    --accelerator-type "$TYPE" --version "$VERSION"
fi

# 2. Copy the repo (tracked files) to every worker and install it with the TPU runtime.
ARCHIVE="$(mktemp -d)/mmrec.tar.gz"
run git -C "$ROOT" archive --format tar.gz -o "$ARCHIVE" HEAD
SETUP='mkdir -p ~/mmrec && tar xzf ~/mmrec.tar.gz -C ~/mmrec && cd ~/mmrec &&
  python3 -m venv .venv && .venv/bin/pip install -q -U pip &&
  .venv/bin/pip install -q -e ".[tpu]" "jax[tpu]"'
for node in "${NODES[@]}"; do
  run gcloud compute tpus tpu-vm scp "$ARCHIVE" "$node:~/mmrec.tar.gz" "${GLOBAL[@]}" --worker=all
  run gcloud compute tpus tpu-vm ssh "$node" "${GLOBAL[@]}" --worker=all --command "$SETUP"
done

# 3. Run on all workers of all slices; each streams its output here, prefixed by its node.
TRAIN="cd ~/mmrec && MMREC_DISTRIBUTED=auto .venv/bin/mmrec train --config $CONFIG \
  --workdir $WORKDIR ${EXTRA[*]:-}"
PIDS=()
for node in "${NODES[@]}"; do
  run gcloud compute tpus tpu-vm ssh "$node" "${GLOBAL[@]}" --worker=all --command "$TRAIN" \
    2>&1 | sed -u "s/^/[$node] /" &
  PIDS+=($!)
done
STATUS=0
for pid in "${PIDS[@]}"; do wait "$pid" || STATUS=1; done
echo "training finished with status $STATUS; outputs in $WORKDIR" >&2
exit $STATUS
