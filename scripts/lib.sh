# Shared set-up for scripts/test, scripts/demo and scripts/bench (sourced, not run).
# Installs the MariaDB server binaries when no server is available (Debian/Ubuntu),
# makes .venv and installs the project with its test extras. Idempotent and quick
# on a machine that already has everything.

have_server() {
    # Debian puts mariadbd in /usr/sbin, which a non-root PATH often lacks.
    command -v mariadbd >/dev/null || command -v mysqld >/dev/null ||
        [[ -x /usr/sbin/mariadbd || -x /usr/sbin/mysqld ]]
}

ensure_server() {
    if [[ -n "${ONLINEDDL_TEST_DSN:-}" ]] || have_server; then
        return 0
    fi
    if ! command -v apt-get >/dev/null; then
        echo "no mariadbd/mysqld and no apt-get: install MariaDB or MySQL," \
            "or set ONLINEDDL_TEST_DSN=mysql://user:password@host:port" >&2
        exit 1
    fi
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    echo "installing MariaDB server binaries (mariadb-server-core)" >&2
    $sudo apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y mariadb-server-core mariadb-client-core
}

ensure_venv() {
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    # Reinstall only when pyproject.toml changed since the last install.
    local stamp=.venv/.onlineddl-installed
    if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
        .venv/bin/pip install -q -e '.[test]'
        touch "$stamp"
    fi
}
