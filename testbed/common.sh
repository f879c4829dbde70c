# Shared by testbed/demo and testbed/test: make sure a Rust toolchain and the peers
# are here (installing what is missing), then build.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, bridges, nftables)" >&2; exit 1; }

ensure_rust() {
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v cargo >/dev/null 2>&1; then
    echo "installing Rust from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cargo rustc >/dev/null
  fi
  local have need
  have=$(rustc --version | awk '{print $2}')
  need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    echo "rustc $have is older than the $need mcgate needs; install a newer toolchain (rustup)" >&2
    exit 1
  fi
}

ensure_rust
"$repo/testbed/tb" setup
