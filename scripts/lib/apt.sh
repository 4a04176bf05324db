# Sourced by the install-*.sh scripts: `as_root CMD...` runs CMD as root (directly, or through
# sudo), or explains which packages to install by hand and exits when neither is possible.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -E "$@"
    else
        echo "$(basename "$0"): not root and no sudo: install the Debian package(s) ${APT_PACKAGES:-listed above} by hand" >&2
        exit 1
    fi
}
export DEBIAN_FRONTEND=noninteractive
