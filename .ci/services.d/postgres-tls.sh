# Sourced by .ci/services (which provides say, port_open, wait_port and LOG_DIR).
#
# A second PostgreSQL cluster, `feeder_tls`, on 127.0.0.1:5433 with TLS on, for the tests of
# the postgres writer's sslmode options. The machine's main cluster on 5432 is left as it is.
#
# Made once, at the first run, with openssl, under $LOG_DIR/pg-tls (readable by the tests):
#   ca.crt          the test CA the server certificate is signed by
#   server.crt/key  the server's certificate, for localhost and 127.0.0.1 only
#   client.crt/key  a client certificate for the role feeder_cert (CN=feeder_cert)
#   other-ca.crt    a CA that signed nothing here, to check that a wrong CA is refused
# Authentication is trust on loopback, except for feeder_cert, which must show its client
# certificate, and feeder_scram, which signs in with the password `feeder-scram-test` over
# TLS. Database `test`.

pg_tls_dir="$LOG_DIR/pg-tls"
pg_tls_port=5433
pg_tls_cluster=feeder_tls

if ! ls /etc/postgresql >/dev/null 2>&1; then
    say "installing postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! command -v openssl >/dev/null 2>&1; then
    say "installing openssl"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
pg_tls_version=$(ls /etc/postgresql | sort -V | tail -1)
pg_tls_conf="/etc/postgresql/$pg_tls_version/$pg_tls_cluster"

# Certificates: made when any is missing (a fresh machine, or /tmp cleared while the cluster
# stayed); the running server is then told to reload them.
pg_tls_new_certs=0
if [ ! -s "$pg_tls_dir/ca.crt" ] || [ ! -s "$pg_tls_dir/server.crt" ] ||
    [ ! -s "$pg_tls_dir/server.key" ] || [ ! -s "$pg_tls_dir/client.crt" ] ||
    [ ! -s "$pg_tls_dir/other-ca.crt" ]; then
    say "making the test CA and certificates in $pg_tls_dir"
    rm -rf "$pg_tls_dir"
    mkdir -p "$pg_tls_dir"
    (
        cd "$pg_tls_dir"
        ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
        ca() { # key cert name
            ec "$1"
            openssl req -x509 -new -key "$1" -out "$2" -days 3650 -subj "/CN=$3" \
                -addext "basicConstraints=critical,CA:TRUE" \
                -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        }
        leaf() { # name subject extensions
            ec "$1.key"
            openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
            printf '%s\n' "$3" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
                -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
            rm -f "$1.csr" "$1.ext"
        }
        ca ca.key ca.crt "crypto-feeder test CA"
        ca other-ca.key other-ca.crt "crypto-feeder other test CA"
        leaf server localhost "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
        leaf client feeder_cert "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
        rm -f other-ca.key
    )
    # The server insists that its key is its own and private.
    chown postgres:postgres "$pg_tls_dir/server.key"
    chmod 600 "$pg_tls_dir/server.key"
    pg_tls_new_certs=1
fi

if [ ! -f "$pg_tls_conf/postgresql.conf" ]; then
    say "creating postgresql cluster $pg_tls_version/$pg_tls_cluster on port $pg_tls_port"
    # What a dropped cluster of this name left behind (the files written below).
    rm -rf "$pg_tls_conf"
    pg_createcluster "$pg_tls_version" "$pg_tls_cluster" -p "$pg_tls_port" --start-conf=manual \
        -- --auth-local=trust --auth-host=trust >"$LOG_DIR/pg-tls-create.log" 2>&1
fi
# The settings are rewritten when they differ from these (an older version of this script),
# and a running server reloads them.
pg_tls_settings="listen_addresses = '127.0.0.1'
ssl = on
ssl_cert_file = '$pg_tls_dir/server.crt'
ssl_key_file = '$pg_tls_dir/server.key'
ssl_ca_file = '$pg_tls_dir/ca.crt'"
pg_tls_hba="# feeder_cert must show a client certificate signed by the test CA, with its name as CN.
hostssl all feeder_cert  127.0.0.1/32 cert
host    all feeder_cert  0.0.0.0/0    reject
# feeder_scram signs in with a password over TLS (SCRAM, bound to the TLS channel).
hostssl all feeder_scram 127.0.0.1/32 scram-sha-256
local   all all                       trust
host    all all          127.0.0.1/32 trust"
if [ "$(cat "$pg_tls_conf/conf.d/feeder-tls.conf" 2>/dev/null)" != "$pg_tls_settings" ] ||
    [ "$(cat "$pg_tls_conf/pg_hba.conf" 2>/dev/null)" != "$pg_tls_hba" ]; then
    printf '%s\n' "$pg_tls_settings" >"$pg_tls_conf/conf.d/feeder-tls.conf"
    printf '%s\n' "$pg_tls_hba" >"$pg_tls_conf/pg_hba.conf"
    pg_tls_new_certs=1
fi

if port_open "$pg_tls_port"; then
    say "postgresql with TLS already running"
    if [ "$pg_tls_new_certs" = 1 ]; then
        say "reloading postgresql $pg_tls_version/$pg_tls_cluster"
        pg_ctlcluster --skip-systemctl-redirect "$pg_tls_version" "$pg_tls_cluster" reload
    fi
else
    say "starting postgresql $pg_tls_version/$pg_tls_cluster (TLS) on 127.0.0.1:$pg_tls_port"
    pg_ctlcluster --skip-systemctl-redirect "$pg_tls_version" "$pg_tls_cluster" start
fi
wait_port "postgresql (TLS)" "$pg_tls_port" 60
if ! su postgres -c "psql -p $pg_tls_port -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" 2>/dev/null | grep -q 1; then
    say "creating database test on port $pg_tls_port"
    su postgres -c "createdb -p $pg_tls_port test"
fi
if ! su postgres -c "psql -p $pg_tls_port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='feeder_cert'\"" 2>/dev/null | grep -q 1; then
    say "creating role feeder_cert on port $pg_tls_port"
    su postgres -c "psql -p $pg_tls_port -d test -qc 'CREATE ROLE feeder_cert LOGIN; GRANT ALL ON SCHEMA public TO feeder_cert'" >/dev/null
fi
if ! su postgres -c "psql -p $pg_tls_port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='feeder_scram'\"" 2>/dev/null | grep -q 1; then
    say "creating role feeder_scram on port $pg_tls_port"
    su postgres -c "psql -p $pg_tls_port -d test -qc \"SET password_encryption = 'scram-sha-256'; CREATE ROLE feeder_scram LOGIN PASSWORD 'feeder-scram-test'; GRANT ALL ON SCHEMA public TO feeder_scram\"" >/dev/null
fi
