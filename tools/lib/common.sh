# Shared by tools/run and tools/test: install what is missing from Debian's packages, then
# configure and build Release into build/. Sourced only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

DEB_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl python3
  libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev
  librocksdb-dev libxxhash-dev libhyperscan-dev libssl-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
  libhowardhinnant-date-dev tzdata libnats-dev nats-server
  libgtest-dev libgmock-dev libbenchmark-dev
)

# tools/fuzz: clang with libFuzzer and the sanitizer runtimes.
FUZZ_PACKAGES=(clang libclang-rt-dev)

# install_packages PKG...: apt-get install the ones not installed yet (needs root).
install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build_release [TARGET...]: configure once, then build the targets (default: everything,
# tests and benchmarks included) into build/ (programs in build/bin).
build_release() {
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
  # Paths under the checkout are hashed relative to it, so a clone in another folder (CI)
  # reuses the objects of an earlier build.
  export CCACHE_BASEDIR=$ROOT
  export CCACHE_NOHASHDIR=1
  if [[ ! -f build/CMakeCache.txt ]]; then
    cmake --preset release >/dev/null
  fi
  cmake --build build -j"$(nproc)" ${1:+--target "$@"}
}
