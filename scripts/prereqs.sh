# Sourced by scripts/dev and scripts/test: installs what a fresh machine lacks and sets the
# shared build directory. Idempotent and quiet when everything is already there.

set -euo pipefail

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)   # apollo-router's build needs it
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)              # the graphql-http audit test
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (apt-get)" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust 1.95 (https://rustup.rs) and run this again" >&2
  exit 1
fi

# One build directory outside the clone, so every clone and CI run reuses the (large) build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchyard/target}"
mkdir -p "$CARGO_TARGET_DIR"
