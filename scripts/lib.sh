# Shared by scripts/demo.sh and scripts/test.sh: make sure the machine has what Gantry
# needs, installing Debian packages when we are root, or saying exactly what to install.

need_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed. Install Rust 1.95 or newer (https://rustup.rs), then run this again." >&2
    exit 4
  fi
}

# ensure_packages CMD:PACKAGE ... — installs PACKAGE when CMD (a command or a path) is missing.
ensure_packages() {
  local missing=()
  for pair in "$@"; do
    local probe=${pair%%:*} pkg=${pair#*:}
    if [[ $probe == /* ]]; then [ -e "$probe" ] && continue; else command -v "$probe" >/dev/null 2>&1 && continue; fi
    missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "error: missing packages: ${missing[*]}" >&2
    echo "       install them with: sudo apt-get install ${missing[*]}" >&2
    exit 4
  fi
}
