#!/usr/bin/env bash
# The GPU path checked in one call on a machine that reaches no package registry.
#
#   bench/gpu_check.sh --prepare   here: wheels and .debs the GPU machine lacks, in .gpu-check/
#   bench/gpu_check.sh             there (carry .gpu-check, $OUT set): install, then each step
#   bench/gpu_check.sh --dry-run   the same steps on CPU with tiny budgets (tests/test_gpu_check.py)
#
# Each step's output goes to $OUT/logs/<step>.log and one line per step to $OUT/summary.txt; a
# failing step is recorded and the next one runs. The logs are packed into $OUT/logs.tar.gz at
# the end (the device tool returns at most 8 files) unless GPU_CHECK_KEEP_LOGS=1.
# Knobs: GPU_CHECK_BUDGET (s per run), GPU_CHECK_SECONDS (the whole check), GPU_CHECK_VOCAB,
# GPU_CHECK_EVAL_TOKENS, GPU_CHECK_DEVICE (run mode's device: cuda), PYTHON, GPU_CHECK_DIR,
# GPU_CHECK_PY_VERSION (--prepare's target Python: 3.12, the GPU image's).
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHECK_DIR=${GPU_CHECK_DIR:-$ROOT/.gpu-check}
LIMIT_BYTES=$((64 * 1024 * 1024))  # what one device call may carry
# On the GPU image already (KINDS.md): shipping them would shadow the image's builds.
ON_IMAGE='^(numpy|packaging|pyyaml|typing_extensions|markupsafe|tqdm|torch|nvidia_.*|triton)$'
# What `import ratchet...` needs for init, a headless loop and the dashboard; anthropic (the
# Claude agent) and textual-serve (attach --web) are left out: the check uses neither.
NEEDED=("textual>=8.0,<9" "textual-plotext>=1.0" "plotext>=5.2,<6" "GitPython>=3.1.40"
        "optuna>=4.0" "pyseccomp>=0.1.2")

prepare() {
    local py=${PYTHON:-python3} stage
    stage=$(mktemp -d)
    rm -rf "$CHECK_DIR" && mkdir -p "$CHECK_DIR/wheels" "$CHECK_DIR/debs"
    # the dependency closure for the GPU machine's Python, binary wheels only
    "$py" -m pip download -q --only-binary=:all: --python-version "${GPU_CHECK_PY_VERSION:-3.12}" \
        --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform any -d "$stage" "${NEEDED[@]}" \
        2> >(grep -v "^WARNING: Location" >&2) || { echo "pip download failed" >&2; return 1; }
    local wheel name
    for wheel in "$stage"/*.whl; do
        name=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
        if [[ $name =~ $ON_IMAGE ]]; then
            echo "left out (on the image): $(basename "$wheel")"
        else
            mv "$wheel" "$CHECK_DIR/wheels/"
        fi
    done
    rm -rf "$stage"
    # bwrap for the sandbox; libseccomp2 for pyseccomp, used only where the image lacks it
    (cd "$CHECK_DIR/debs" && apt-get download -q bubblewrap libseccomp2) \
        || { echo "apt-get download failed" >&2; return 1; }
    (cd "$CHECK_DIR" && find . -type f | sort > MANIFEST)
    ls -l "$CHECK_DIR/wheels" "$CHECK_DIR/debs"
    local total
    total=$(du -sb "$CHECK_DIR" | cut -f1)
    echo "total: $total bytes ($((total / 1024 / 1024)) MiB) in $CHECK_DIR"
    if ((total > LIMIT_BYTES)); then
        echo "over the 64 MiB a device call carries" >&2
        return 1
    fi
}

# ---- run mode -------------------------------------------------------------------------------

elapsed() { echo $((SECONDS - START)); }

# step NAME LIMIT_S COMMAND...: run it with its log, bounded by the time the check has left
step() {
    local name=$1 limit=$2 left rc t0
    shift 2
    left=$((TOTAL_S - $(elapsed)))
    if ((left < 10)); then
        echo "step $name: SKIPPED (the check's ${TOTAL_S} s were spent)" >>"$SUMMARY"
        return 0
    fi
    ((limit > left)) && limit=$left
    t0=$SECONDS
    echo "== $name (limit ${limit} s) at +$(elapsed) s"
    timeout --kill-after=15 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    if ((rc == 0)); then
        echo "step $name: ok ($((SECONDS - t0)) s)" >>"$SUMMARY"
    elif ((rc == 124 || rc == 137)); then
        echo "step $name: FAILED (timed out after ${limit} s)" >>"$SUMMARY"
    else
        echo "step $name: FAILED (exit $rc, $((SECONDS - t0)) s)" >>"$SUMMARY"
    fi
    tail -n "${GPU_CHECK_TAIL:-4}" "$LOGS/$name.log" | sed 's/^/    /' >>"$SUMMARY"
}

note() { echo "note: $*" >>"$SUMMARY"; }

install_offline() {
    # the wheels into a private target first on sys.path; the image's torch stays in use
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$WORK/site" "$CHECK_DIR"/wheels/*.whl || return 1
    # Ratchet itself as pyproject maps it: ratchet.<name> is the repo's <name>/ folder
    mkdir -p "$WORK/site/ratchet"
    local part
    for part in cli engine model prompts tui; do ln -s "$ROOT/$part" "$WORK/site/ratchet/$part"; done
    if ! command -v bwrap >/dev/null; then
        dpkg-deb -x "$CHECK_DIR"/debs/bubblewrap_*.deb "$WORK/root" || return 1
        echo "bwrap unpacked from its .deb"
        ldd "$WORK/root/usr/bin/bwrap" | grep "not found"  # libraries the image lacks, if any
    fi
    if ! ldconfig -p | grep -q 'libseccomp\.so\.2'; then
        dpkg-deb -x "$CHECK_DIR"/debs/libseccomp2_*.deb "$WORK/root" || return 1
        ldconfig "$WORK/root/usr/lib/x86_64-linux-gnu"  # ctypes finds it through the cache
        echo "libseccomp unpacked from its .deb"
    fi
    "$PY" -c "import ratchet.cli.main, ratchet.tui.app, optuna, git, pyseccomp; print('imports ok')"
}

run_checks() {
    local dry=$1
    START=$SECONDS
    if [[ -z ${OUT:-} ]]; then
        [[ $dry == 1 ]] || { echo "OUT is not set (the folder for the results)" >&2; return 2; }
        OUT=$(mktemp -d)
    fi
    mkdir -p "$OUT"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ratchet-gpu-check.XXXXXX")
    LOGS=$OUT/logs SUMMARY=$OUT/summary.txt
    mkdir -p "$LOGS" && : >"$SUMMARY"
    export PYTHONUNBUFFERED=1
    if [[ $dry == 1 ]]; then
        DEV=cpu BUDGET=${GPU_CHECK_BUDGET:-4} TOTAL_S=${GPU_CHECK_SECONDS:-300}
        EVAL=(${GPU_CHECK_EVAL_TOKENS:-65536})
        VOCAB=${GPU_CHECK_VOCAB:-512}
        export RATCHET_PROBE_SECONDS=${RATCHET_PROBE_SECONDS:-0}
        # the environment already installed here, no wheels
        PY=${PYTHON:-$ROOT/.venv/bin/python}
        [[ -x $PY ]] || PY=python3
        echo "gpu check --dry-run: cpu, budget ${BUDGET} s, $PY" >>"$SUMMARY"
        note "dry run: nvidia-smi and NVML readings are skipped or read none; install skipped"
    else
        # 60 s: torch.compile's first step and some training; the profile's own is 360 s
        DEV=${GPU_CHECK_DEVICE:-cuda} BUDGET=${GPU_CHECK_BUDGET:-60} TOTAL_S=${GPU_CHECK_SECONDS:-480}
        EVAL=(${GPU_CHECK_EVAL_TOKENS:-})
        VOCAB=${GPU_CHECK_VOCAB:-8192}
        export RATCHET_PROBE_SECONDS=${RATCHET_PROBE_SECONDS:-10}
        PY=${PYTHON:-python3}  # the image's, which holds torch
        export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
        export PATH=$WORK/root/usr/bin:$PATH LD_LIBRARY_PATH=$WORK/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        echo "gpu check: $DEV, budget ${BUDGET} s, wheels from $CHECK_DIR" >>"$SUMMARY"
        export -f install_offline
        export WORK CHECK_DIR ROOT PY
        step install 120 bash -c install_offline
    fi
    local ws=$WORK/ws ratchet=("$PY" -m ratchet.cli.main)
    export RATCHET_CACHE_DIR=${RATCHET_CACHE_DIR:-$WORK/cache}
    if [[ $dry == 1 ]] || ! command -v nvidia-smi >/dev/null; then
        step nvidia-smi 5 echo "skipped: no nvidia-smi (or a dry run)"
    else
        step nvidia-smi 30 nvidia-smi
    fi
    step versions 60 "$PY" "$ROOT/bench/gpu_check_steps.py" versions
    step init 200 "${ratchet[@]}" init "$ws" --device "$DEV" --budget "$BUDGET" \
        --tokenizer bpe --vocab-size "$VOCAB"
    step tune 30 "$PY" "$ROOT/bench/gpu_check_steps.py" tune "$ws" "${EVAL[@]}"
    step sandbox 120 "$PY" "$ROOT/bench/gpu_check_steps.py" sandbox
    step nvml 30 "$PY" "$ROOT/bench/gpu_check_steps.py" nvml
    step throughput 180 "$PY" "$ROOT/bench/train_throughput.py" --device "$DEV" \
        --budget "$BUDGET" ${EVAL[@]:+--eval-tokens "${EVAL[@]}"}
    step loop 300 bash -c 'cd "$1" && shift && exec "$@"' _ "$ws" "${ratchet[@]}" run \
        --headless --max-experiments 2 --budget "$BUDGET" --tag gpu-check
    # an engine a timed-out loop left behind must not outlive its workspace
    (cd "$ws" 2>/dev/null && "${ratchet[@]}" stop >/dev/null 2>&1) || true
    local events
    events=$(ls -t "$ws"/runs/*/events.jsonl 2>/dev/null | head -1)
    if [[ -z $events ]]; then
        events=$ROOT/tests/data/session_events.jsonl
        note "no session of this check to show: the dashboard shows the recorded one"
    else
        cp "$events" "$OUT/events.jsonl"
    fi
    step dashboard 90 "$PY" "$ROOT/bench/gpu_check_steps.py" screenshot "$events" \
        "$OUT/dashboard.svg"
    echo "total: $(elapsed) s" >>"$SUMMARY"
    if [[ ${GPU_CHECK_KEEP_LOGS:-0} != 1 ]]; then
        tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$LOGS"
    fi
    rm -rf "$WORK"
    cat "$SUMMARY"
    ! grep -q '^step .*: FAILED' "$SUMMARY"
}

case ${1:-} in
    --prepare) prepare ;;
    --dry-run) run_checks 1 ;;
    "") run_checks 0 ;;
    *) echo "usage: bench/gpu_check.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac
