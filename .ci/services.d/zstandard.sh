# Sourced by .ci/services (which defines say, port_open, wait_port and LOG_DIR).
# The test of the README's capture reader runs it with Python's `zstandard` package. Nothing
# is started: it is a library. Installed with pip only when the import fails.
if python3 -c "import zstandard" >/dev/null 2>&1; then
    say "zstandard already installed"
else
    say "installing zstandard (pip)"
    if ! pip install -q zstandard >"${LOG_DIR:-/tmp}/zstandard-install.log" 2>&1; then
        say "ERROR: pip install zstandard failed (log: ${LOG_DIR:-/tmp}/zstandard-install.log)"
        return 1
    fi
    python3 -c "import zstandard" || {
        say "ERROR: zstandard still cannot be imported after installing"
        return 1
    }
    say "zstandard $(python3 -c 'import zstandard; print(zstandard.__version__)') installed"
fi
