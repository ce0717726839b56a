# Sourced by .ci/services (which defines say, port_open, wait_port and LOG_DIR).
# The Parquet tests open the `file` writer's parts with two other readers: DuckDB (the
# `duckdb` Python package) and pyarrow. Nothing is started: both are libraries. Installed
# with pip only when an import fails, so this is quick when both are there.
if python3 -c "import duckdb, pyarrow.parquet" >/dev/null 2>&1; then
    say "duckdb and pyarrow already installed"
else
    say "installing duckdb and pyarrow (pip)"
    if ! pip install -q duckdb pyarrow >"${LOG_DIR:-/tmp}/duckdb-install.log" 2>&1; then
        say "ERROR: pip install duckdb pyarrow failed (log: ${LOG_DIR:-/tmp}/duckdb-install.log)"
        return 1
    fi
    python3 -c "import duckdb, pyarrow.parquet" || {
        say "ERROR: duckdb or pyarrow still cannot be imported after installing"
        return 1
    }
    say "duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)') and pyarrow installed"
fi
