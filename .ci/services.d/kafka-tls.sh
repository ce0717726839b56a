# Kafka over TLS, for the kafka writer's TLS tests (sourced by .ci/services, which provides
# say, port_open, wait_port, LOG_DIR and a PATH with ~/.cargo/bin; tansu is installed there).
#
#   127.0.0.1:9094  stunnel, TLS with a certificate of a test CA (for localhost and 127.0.0.1)
#   127.0.0.1:9095  a second tansu broker, in memory, plaintext, behind that stunnel
#
# Why a second broker: a Kafka client bootstraps at the address it is given and then connects
# to the addresses the brokers advertise in their metadata. The broker on 9092 advertises
# 127.0.0.1:9092, plaintext, so a client that bootstrapped through TLS would carry on in
# plaintext there (and fail, since it speaks TLS). The broker behind stunnel advertises
# 127.0.0.1:9094 instead, so every connection of a client goes through stunnel, in TLS.
# Its port 9095 listens on loopback only.
#
# Files in $KAFKA_TLS_DIR (default $LOG_DIR/kafka-tls): ca.pem (the test CA the clients
# trust), server.pem and server.key (stunnel's), other-ca.pem (an unrelated CA, for the test
# that a wrong CA is refused).

KAFKA_TLS_DIR=${FEEDER_KAFKA_TLS_DIR:-$LOG_DIR/kafka-tls}
mkdir -p "$KAFKA_TLS_DIR"

if ! command -v stunnel4 >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    say "installing stunnel4 and openssl"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stunnel4 openssl >/dev/null
fi

kafka_tls_make_ca() { # name subject
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
        -keyout "$KAFKA_TLS_DIR/$1.key" -out "$KAFKA_TLS_DIR/$1.pem" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

if [ ! -s "$KAFKA_TLS_DIR/server.pem" ] || [ ! -s "$KAFKA_TLS_DIR/other-ca.pem" ]; then
    say "making the test CA and the Kafka TLS server certificate in $KAFKA_TLS_DIR"
    kafka_tls_make_ca ca "crypto-feeder test CA"
    kafka_tls_make_ca other-ca "crypto-feeder unrelated CA"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$KAFKA_TLS_DIR/server.key" -out "$KAFKA_TLS_DIR/server.csr" 2>/dev/null
    printf '%s\n' \
        "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" >"$KAFKA_TLS_DIR/server.ext"
    openssl x509 -req -in "$KAFKA_TLS_DIR/server.csr" -days 825 -sha256 \
        -CA "$KAFKA_TLS_DIR/ca.pem" -CAkey "$KAFKA_TLS_DIR/ca.key" -CAcreateserial \
        -extfile "$KAFKA_TLS_DIR/server.ext" -out "$KAFKA_TLS_DIR/server.pem" 2>/dev/null
    chmod 600 "$KAFKA_TLS_DIR"/*.key
fi

if port_open 9095; then
    say "kafka behind TLS (tansu on 9095) already running"
else
    say "starting tansu on 127.0.0.1:9095, advertising the TLS port 127.0.0.1:9094"
    setsid nohup tansu broker \
        --listener-url tcp://127.0.0.1:9095 \
        --advertised-listener-url tcp://127.0.0.1:9094 \
        --storage-engine memory://tansu/ >"$LOG_DIR/tansu-tls.log" 2>&1 </dev/null &
fi
wait_port "kafka behind TLS" 9095 60

if port_open 9094; then
    say "stunnel for kafka already running"
else
    cat >"$KAFKA_TLS_DIR/stunnel.conf" <<EOF
foreground = no
pid = $KAFKA_TLS_DIR/stunnel.pid
output = $LOG_DIR/stunnel-kafka.log

[kafka-tls]
accept = 127.0.0.1:9094
connect = 127.0.0.1:9095
cert = $KAFKA_TLS_DIR/server.pem
key = $KAFKA_TLS_DIR/server.key
EOF
    say "starting stunnel on 127.0.0.1:9094 (TLS) in front of 127.0.0.1:9095"
    stunnel4 "$KAFKA_TLS_DIR/stunnel.conf"
fi
wait_port "kafka TLS (stunnel)" 9094 30
