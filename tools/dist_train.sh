#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# One process per GPU (or, without GPUs, CPU processes with the gloo backend).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
set -euo pipefail
PROG=tools/dist_train.sh
if [ "$#" -lt 2 ]; then
    echo "Usage: bash $0 CONFIG NUM_PROCS [train.py args...]" >&2
    echo "$PROG: error: expected CONFIG and NUM_PROCS (e.g. bash $PROG configs/textual_inversion.py 8)" >&2
    exit 2
fi
CONFIG=$1
NPROCS=$2
shift 2
# torchrun would start nothing for 0 and misread a word: refuse both here.
if ! [[ "$NPROCS" =~ ^[1-9][0-9]*$ ]]; then
    echo "$PROG: error: NUM_PROCS must be a positive whole number (processes per node, e.g. the GPU count), got '$NPROCS'" >&2
    exit 2
fi
if [ ! -f "$CONFIG" ]; then
    echo "$PROG: error: config $CONFIG does not exist; give the path of a config such as configs/textual_inversion_tiny.py" >&2
    exit 2
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# How a rank words "continue with": this script again, not tools/train.py.
export MMTI_DIST_TRAIN="$0" MMTI_DIST_TRAIN_PROCS="$NPROCS"

# mmti.cli.launch is torchrun, with refused input ending as one line and status 2.
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec python -m mmti.cli.launch \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROCS" \
    --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
