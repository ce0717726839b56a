# rsyslog, for the `syslog` writer's tests (sourced by .ci/services).
#
# Only the binaries are needed: each test starts its own unprivileged rsyslogd on a free
# loopback port, with its own config, pid file, work directory and output file, so it can
# stop and restart it. The machine's own syslog is never configured or started here.
# rsyslog-gnutls provides the TLS stream driver (RFC 5425) the TLS tests use; openssl makes
# their test certificates.
rsyslog_missing=()
command -v rsyslogd >/dev/null 2>&1 || rsyslog_missing+=(rsyslog)
# The gtls driver is a loadable module of rsyslog.
if ! compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null \
    && ! compgen -G '/usr/lib/rsyslog/lmnsd_gtls.so' >/dev/null; then
    rsyslog_missing+=(rsyslog-gnutls)
fi
command -v openssl >/dev/null 2>&1 || rsyslog_missing+=(openssl)
if ((${#rsyslog_missing[@]})); then
    say "installing ${rsyslog_missing[*]}"
    apt-get update -qq
    # --no-install-recommends: no logrotate or other extras the tests do not use.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${rsyslog_missing[@]}" >"$LOG_DIR/rsyslog-install.log" 2>&1
fi
if command -v rsyslogd >/dev/null 2>&1; then
    say "rsyslogd available ($(rsyslogd -v 2>/dev/null | head -1))"
else
    say "ERROR: rsyslogd is not installed (log: $LOG_DIR/rsyslog-install.log)"
    return 1
fi
unset rsyslog_missing
