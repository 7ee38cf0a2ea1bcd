# Shared by serve.sh and test.sh: install only what is missing, say what is being done.

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

install_debian_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    echo "creating the virtual environment in .venv"
    python3 -m venv .venv 2>/dev/null || { install_debian_packages python3-venv; python3 -m venv .venv; }
  fi
}

install_project() {
  # Reinstall only when pyproject.toml changed since the last install.
  local stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-$(echo "$1" | tr -c 'a-z' _)"
  if [ ! -e "$stamp" ]; then
    echo "installing the project ($1) into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e "$1"
    touch "$stamp"
  fi
}
