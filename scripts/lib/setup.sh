# Shared setup for scripts/: installs what the project needs, once.

step() { printf '\n==> %s\n' "$*"; }

# libssl-dev: the system OpenSSL the gateway's TLS is built on. Further packages may be named
# (the tests add prometheus, which brings promtool).
ensure_system_packages() {
    local missing=()
    local package
    for package in libssl-dev "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        step "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    fi
}

# .venv with the pinned interop packages; reinstalled only when requirements change.
ensure_python_venv() {
    install_venv .venv Tests/Interop/requirements.txt
    # The MCP Python SDK 1.x, for the genuinely legacy upstream (it cannot share .venv with 2.x).
    install_venv .venv-legacy Tests/Interop/requirements-legacy.txt
}

# install_venv DIR REQUIREMENTS: a virtual environment with pinned packages, reinstalled only
# when the requirements change.
install_venv() {
    local venv=$1
    local requirements=$2
    local stamp=$venv/.requirements.sha256
    local wanted
    wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        return
    fi
    step "creating $venv with the pinned packages of $requirements"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    echo "$wanted" > "$stamp"
}
