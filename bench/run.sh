#!/usr/bin/env bash
# wsgate's benchmark against nginx, HAProxy, Apache 2.4 (mpm_event) and a
# direct connection, in one run. See bench/README.md.
#
#   bench/run.sh [--smoke] [--only echo64,echo16k,connect,http,hold,burst]
#                [--only wss64,wss16k,tlsconnect,https,tlshold]   (TLS; not default)
#                [--proxies wsgate,nginx,haproxy,apache,direct] [--runs N]
#                [--duration S] [--hold-n N] [--burst-n N] [--hold-s S]
#                [--results FILE] [--no-install] [--no-build] [--keep-tmp]
#                [--callgrind] [--segments]
#
# Environment: PROXY_CPU (1), LOAD_CPU (0), BENCH_NICE (-10),
# BENCH_BACKEND_PORT (23001), BENCH_BACKEND_HOST (127.0.0.1),
# BENCH_PROXY_PORT (23080); WSGATE_BASE, a wsgate binary measured as the
# proxy "wsgate-base" beside the current build (before/after in one run).
# WSGATE_CONF_EXTRA: lines added to wsgate's plain configuration before its
# ProxyPass lines (to measure what a feature costs, e.g. a status page).
#
# Each proxy is started fresh for every scenario, pinned to CPU $PROXY_CPU (1)
# with one worker; the echo backend and the load generator share CPU
# $LOAD_CPU (0). Results are appended to bench/results.jsonl (a temporary
# file under --smoke) and printed as markdown tables (medians over runs).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")

SMOKE=0
ONLY=""
PROXIES="wsgate,nginx,haproxy,apache,direct"
RUNS=""
DURATION=""
HOLD_N=""
BURST_N=""
HOLD_S=""
RESULTS=""
INSTALL=1
BUILD=1
KEEP_TMP=0
CALLGRIND=0
SEGMENTS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --only) ONLY="$2"; shift ;;
        --proxies) PROXIES="$2"; shift ;;
        --runs) RUNS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --hold-n) HOLD_N="$2"; shift ;;
        --burst-n) BURST_N="$2"; shift ;;
        --hold-s) HOLD_S="$2"; shift ;;
        --results) RESULTS="$2"; shift ;;
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        --keep-tmp) KEEP_TMP=1 ;;
        --callgrind) CALLGRIND=1 ;;
        --segments) SEGMENTS=1 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

PROXY_CPU=${PROXY_CPU:-1}
# The benchmark's processes run at a higher priority than whatever else the
# machine is doing (a build, a test suite): less noise. 0 to switch off.
NICE=${BENCH_NICE:--10}
[ "$(id -u)" = 0 ] || NICE=0
# A plain command (no shell function), so that `$!` of a background start is
# the PID of the proxy itself: nice and taskset exec it.
PIN=(nice -n "$NICE" taskset -c)
# --callgrind: each proxy runs under valgrind's callgrind, which counts the
# instructions it executes in user space (not the kernel's): a figure that
# does not drift with the machine's load, to compare the proxies' own code
# per unit of work. Rates under valgrind mean nothing; see the last table.
WRAP=()
if [ "$CALLGRIND" = 1 ]; then
    WRAP=(valgrind -q --tool=callgrind --trace-children=yes --callgrind-out-file=CGOUT.%p)
    # Every unit counted, from the first: instructions are divided by them.
    WARMUP_OVERRIDE=0
fi
# --segments: the kernel's share of the work, counted rather than timed:
# TCP segments the proxy sends (tcpdump on lo; the proxy is the sender of
# a segment from its listening port or to the backend's port) and system
# calls it makes (perf's raw_syscalls tracepoint), per unit of work. On
# loopback a segment's delivery runs in its sender's system call, so these
# two counts are most of a proxy's kernel time. Rates mean nothing here
# (the capture itself costs the sender CPU).
if [ "$SEGMENTS" = 1 ]; then
    WARMUP_OVERRIDE=0
fi
LOAD_CPU=${LOAD_CPU:-0}
BACKEND_PORT=${BENCH_BACKEND_PORT:-23001}
# How the proxies' configurations name the backend (it listens on
# 127.0.0.1): BENCH_BACKEND_HOST=localhost measures a backend named by a
# host name, as most deployments name theirs.
BACKEND_HOST=${BENCH_BACKEND_HOST:-127.0.0.1}
PROXY_PORT=${BENCH_PROXY_PORT:-23080}

# Sizes: the issue's in a full run, tiny ones for --smoke (CI).
if [ "$SMOKE" = 1 ]; then
    RUNS=${RUNS:-1}; DURATION=${DURATION:-1}; WARMUP=0.2
    HOLD_N=${HOLD_N:-200}; BURST_N=${BURST_N:-200}; HOLD_S=${HOLD_S:-0.5}
    E64_CONNS=10; E16_CONNS=2; CONNECT_WORKERS=5; HTTP_CONNS=5; SETTLE=0.1
else
    RUNS=${RUNS:-3}; DURATION=${DURATION:-10}; WARMUP=1
    HOLD_N=${HOLD_N:-9000}; BURST_N=${BURST_N:-9000}; HOLD_S=${HOLD_S:-10}
    E64_CONNS=100; E16_CONNS=10; CONNECT_WORKERS=50; HTTP_CONNS=50; SETTLE=1
fi
WARMUP=${WARMUP_OVERRIDE:-$WARMUP}
# The TLS scenarios (wss64, wss16k, tlsconnect, https, tlshold) are not in
# the default list; --smoke runs tlsconnect too (certificates, every
# proxy's TLS configuration, handshake, upgrade, echo, close), so that
# they cannot rot.
if [ "$SMOKE" = 1 ]; then
    SCENARIOS=${ONLY:-echo64,echo16k,connect,http,hold,burst,tlsconnect}
else
    SCENARIOS=${ONLY:-echo64,echo16k,connect,http,hold,burst}
fi
SCENARIOS=${SCENARIOS//,/ }
PROXIES=${PROXIES//,/ }
for p in $PROXIES; do
    case "$p" in wsgate|wsgate-base|nginx|haproxy|apache|direct) ;; *) echo "run.sh: unknown proxy $p" >&2; exit 2 ;; esac
done
for s in $SCENARIOS; do
    case "$s" in echo64|echo16k|connect|http|hold|burst|soak|wss64|wss16k|tlsconnect|https|tlshold) ;; *) echo "run.sh: unknown scenario $s" >&2; exit 2 ;; esac
done
# The TLS scenarios: a plain one with the client side over TLS.
tls_base() {
    case "$1" in
        wss64) echo echo64 ;; wss16k) echo echo16k ;; tlsconnect) echo connect ;;
        https) echo http ;; tlshold) echo hold ;; *) return 1 ;;
    esac
}
is_tls() { tls_base "$1" >/dev/null; }
ANY_TLS=0
for s in $SCENARIOS; do is_tls "$s" && ANY_TLS=1; done
has() { case " $PROXIES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
log() { echo "[bench $(date +%T)] $*" >&2; }

if has wsgate-base && ! [ -x "${WSGATE_BASE:-}" ]; then
    echo "run.sh: --proxies wsgate-base needs WSGATE_BASE=PATH to a wsgate binary" >&2
    exit 2
fi

# ---------------------------------------------------------------- limits
# 9,000 tunnels are 18,000 sockets in the proxy: take the whole hard limit.
HARD=$(ulimit -Hn)
ulimit -n "$HARD" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ]; then
    for n in HOLD_N BURST_N; do
        if [ $((${!n} * 2 + 100)) -gt "$NOFILE" ]; then
            echo "run.sh: $n=${!n} needs $((${!n} * 2 + 100)) open files in the proxy; ulimit -n is $NOFILE" >&2
            exit 2
        fi
    done
fi

# ---------------------------------------------------------------- install
if [ "$INSTALL" = 1 ]; then
    need=()
    has nginx && ! [ -x /usr/sbin/nginx ] && need+=(nginx)
    has haproxy && ! [ -x /usr/sbin/haproxy ] && need+=(haproxy)
    has apache && ! [ -x /usr/sbin/apache2 ] && need+=(apache2)
    command -v taskset >/dev/null || need+=(util-linux)
    [ "$ANY_TLS" = 1 ] && ! command -v openssl >/dev/null && need+=(openssl)
    [ "$CALLGRIND" = 1 ] && ! command -v valgrind >/dev/null && need+=(valgrind)
    [ "$SEGMENTS" = 1 ] && ! command -v tcpdump >/dev/null && need+=(tcpdump)
    [ "$SEGMENTS" = 1 ] && ! command -v perf >/dev/null && need+=(linux-perf)
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq "${need[@]}" >&2
    fi
fi

# ---------------------------------------------------------------- build
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WSGATE=$TARGET_DIR/release/wsgate
LG_DIR=$BENCH/loadgen/target/release
if [ "$BUILD" = 1 ]; then
    if has wsgate; then
        log "cargo build --release (wsgate)"
        (cd "$ROOT" && cargo build --release --quiet --bin wsgate) >&2
    fi
    log "cargo build --release (loadgen, echo-backend)"
    (cd "$BENCH/loadgen" && env -u CARGO_TARGET_DIR cargo build --release --quiet) >&2
fi
LG=$LG_DIR/loadgen
BACKEND=$LG_DIR/echo-backend

# ---------------------------------------------------------------- processes
TMP=$(mktemp -d /tmp/wsgate-bench.XXXXXX)
BACKEND_PID=""
PROXY_PID=""
PROXY_NAME=""
# tcpdump and perf around a scenario (--segments).
COUNT_PIDS=()

# All descendants of a process (Apache's child, nginx's worker), as PID:STARTTIME.
descendants() {
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do
        echo "$c:$(starttime "$c")"
        descendants "$c"
    done
}
# Field 22 of /proc/PID/stat: tells a process from a later one with the same PID.
starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# Stops one process that this script started, and its descendants:
# SIGTERM, then SIGKILL after 15 s (Apache with thousands of threads is slow).
stop_pid() {
    local pid=$1 i kids k
    [ -n "$pid" ] || return 0
    kids=$(descendants "$pid")
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        # wsgate: a second SIGTERM stops at once (after the loadgen closed everything).
        [ "$i" = 5 ] && [[ "$PROXY_NAME" = wsgate* ]] && kill -TERM "$pid" 2>/dev/null
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for k in $kids; do
        for i in $(seq 50); do [ "$(starttime "${k%%:*}")" = "${k#*:}" ] || break; sleep 0.1; done
        if [ "$(starttime "${k%%:*}")" = "${k#*:}" ]; then
            log "pid ${k%%:*} (child of $pid) still there: SIGKILL"
            kill -KILL "${k%%:*}" 2>/dev/null || true
        fi
    done
}

cleanup() {
    local rc=$?
    [ ${#COUNT_PIDS[@]} -gt 0 ] && kill -INT "${COUNT_PIDS[@]}" 2>/dev/null
    stop_pid "$PROXY_PID"
    PROXY_NAME=""
    stop_pid "$BACKEND_PID"
    if [ "$KEEP_TMP" = 1 ] || [ $rc -ne 0 ]; then
        log "logs and configurations kept in $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- TLS
# One CA and one ECDSA P-256 server certificate (SAN bench.test, signed by
# the CA) per run, shared by every proxy; the load generator verifies the
# certificate against the CA (--ca) for the name it sends (--sni).
# TLS 1.3 only, TLS_AES_128_GCM_SHA256 only, X25519 only, everywhere.
TLS_NAME=bench.test
TLS_DIR=$TMP/tls
make_certs() {
    mkdir -p "$TLS_DIR"
    local ext="$TLS_DIR/server.ext"
    printf '%s\n' "subjectAltName=DNS:$TLS_NAME" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$ext"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$TLS_DIR/ca.key" -sha256 -days 30 -subj "/CN=wsgate bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$TLS_DIR/ca.pem" 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/key.pem" 2>/dev/null
    openssl req -new -key "$TLS_DIR/key.pem" -subj "/CN=$TLS_NAME" -out "$TLS_DIR/server.csr" 2>/dev/null
    openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$ext" -out "$TLS_DIR/cert.pem" 2>/dev/null
    # HAProxy takes the certificate and its key in one file.
    cat "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" > "$TLS_DIR/haproxy.pem"
    openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/cert.pem" >/dev/null
}

# ---------------------------------------------------------------- configurations
# Threads Apache needs: one per tunnel (mod_proxy_wstunnel holds a worker
# thread per tunnel), with room to spare.
apache_threads() {
    case "$1" in
        hold|tlshold) echo $((HOLD_N + 64)) ;;
        burst) echo $((BURST_N + 64)) ;;
        *) echo 256 ;;
    esac
}

# The TLS virtual host wsgate and Apache both serve (the same directives).
tls_vhost() {
    cat <<EOF
<VirtualHost *:$PROXY_PORT>
    ServerName $TLS_NAME
    SSLEngine on
    SSLCertificateFile $TLS_DIR/cert.pem
    SSLCertificateKeyFile $TLS_DIR/key.pem
    SSLProtocol -all +TLSv1.3
    SSLCipherSuite TLSv1.3 TLS_AES_128_GCM_SHA256
    SSLOpenSSLConfCmd Curves X25519
    ProxyPass /ws ws://$BACKEND_HOST:$BACKEND_PORT/
    ProxyPass / http://$BACKEND_HOST:$BACKEND_PORT/
</VirtualHost>
EOF
}

write_wsgate() {
    if is_tls "$1"; then
        cat > "$TMP/wsgate.conf" <<EOF
Listen 127.0.0.1:$PROXY_PORT https
LogLevel error
Timeout 300
KeepAliveTimeout 60
MaxKeepAliveRequests 0
EOF
        tls_vhost >> "$TMP/wsgate.conf"
        return
    fi
    cat > "$TMP/wsgate.conf" <<EOF
Listen 127.0.0.1:$PROXY_PORT
LogLevel error
Timeout 300
KeepAliveTimeout 60
MaxKeepAliveRequests 0
${WSGATE_CONF_EXTRA:-}
ProxyPass /ws ws://$BACKEND_HOST:$BACKEND_PORT/
ProxyPass / http://$BACKEND_HOST:$BACKEND_PORT/
EOF
}

write_nginx() {
    local listen="listen 127.0.0.1:$PROXY_PORT backlog=4096;" tls=""
    if is_tls "$1"; then
        listen="listen 127.0.0.1:$PROXY_PORT ssl backlog=4096;"
        tls="server_name $TLS_NAME;
        ssl_certificate $TLS_DIR/cert.pem;
        ssl_certificate_key $TLS_DIR/key.pem;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        ssl_session_tickets off;
        ssl_session_cache off;"
    fi
    mkdir -p "$TMP/nginx"
    cat > "$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
$([ "$CALLGRIND" = 1 ] && echo "master_process off; # one process for callgrind to follow")
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
worker_rlimit_nofile 20000;
events {
    worker_connections 19900;
}
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      close;
    }
    upstream backend {
        server $BACKEND_HOST:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        $listen
        $tls
        location /ws {
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

write_haproxy() {
    local tls=""
    is_tls "$1" && tls=" ssl crt $TLS_DIR/haproxy.pem ssl-min-ver TLSv1.3 ciphersuites TLS_AES_128_GCM_SHA256 curves X25519"
    cat > "$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 9950
    log stderr format short local0 err

defaults
    mode http
    log global
    option http-keep-alive
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout tunnel 300s
    timeout http-keep-alive 60s
    timeout http-request 60s
    maxconn 9950

frontend fe
    bind 127.0.0.1:$PROXY_PORT backlog 4096$tls
    default_backend be

backend be
    http-reuse safe
    server s1 $BACKEND_HOST:$BACKEND_PORT
EOF
}

write_apache() {
    local t
    t=$(apache_threads "$1")
    mkdir -p "$TMP/apache"
    cat > "$TMP/apache/apache2.conf" <<EOF
ServerRoot /etc/apache2
DefaultRuntimeDir $TMP/apache
PidFile $TMP/apache/apache2.pid
Mutex file:$TMP/apache default
ErrorLog $TMP/apache/error.log
LogLevel warn
ServerName localhost
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_http_module /usr/lib/apache2/modules/mod_proxy_http.so
LoadModule proxy_wstunnel_module /usr/lib/apache2/modules/mod_proxy_wstunnel.so
$(is_tls "$1" || echo "Listen 127.0.0.1:$PROXY_PORT")
ListenBacklog 4096
# One process; one thread per tunnel (Apache holds a worker thread per tunnel).
ServerLimit 1
StartServers 1
ThreadLimit $t
ThreadsPerChild $t
MaxRequestWorkers $t
MinSpareThreads 1
MaxSpareThreads $t
MaxConnectionsPerChild 0
KeepAlive On
KeepAliveTimeout 60
MaxKeepAliveRequests 0
Timeout 300
ProxyTimeout 300
EOF
    if is_tls "$1"; then
        # mod_ssl with the settings of wsgate's virtual host.
        cat >> "$TMP/apache/apache2.conf" <<EOF
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
Listen 127.0.0.1:$PROXY_PORT https
EOF
        tls_vhost >> "$TMP/apache/apache2.conf"
    else
        cat >> "$TMP/apache/apache2.conf" <<EOF
ProxyPass /ws ws://$BACKEND_HOST:$BACKEND_PORT/
ProxyPass / http://$BACKEND_HOST:$BACKEND_PORT/
EOF
    fi
}

# start_proxy NAME SCENARIO: sets PROXY_PID and TARGET.
start_proxy() {
    local name=$1 sc=$2
    PROXY_NAME=$name
    TARGET=127.0.0.1:$PROXY_PORT
    if [ "$name" != direct ] && "$LG" wait --addr "$TARGET" --timeout 0; then
        log "something already listens on $TARGET: not starting $name"
        return 1
    fi
    case "$name" in
        direct)
            PROXY_PID=""
            TARGET=127.0.0.1:$BACKEND_PORT
            return 0 ;;
        wsgate|wsgate-base)
            write_wsgate "$sc"
            local bin=$WSGATE
            [ "$name" = wsgate-base ] && bin=$WSGATE_BASE
            # A build from before MaxKeepAliveRequests had no such limit.
            if ! "$bin" -t -f "$TMP/wsgate.conf" >/dev/null 2>&1; then
                sed -i '/^MaxKeepAliveRequests /d' "$TMP/wsgate.conf"
            fi
            "${PIN[@]}" "$PROXY_CPU" "${WRAP[@]//CGOUT/$TMP/cg.$name}" env TOKIO_WORKER_THREADS=1 "$bin" -f "$TMP/wsgate.conf" \
                >>"$TMP/$name.log" 2>&1 &
            PROXY_PID=$! ;;
        nginx)
            write_nginx "$sc"
            "${PIN[@]}" "$PROXY_CPU" "${WRAP[@]//CGOUT/$TMP/cg.$name}" /usr/sbin/nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
                -e "$TMP/nginx/error.log" >>"$TMP/nginx.log" 2>&1 &
            PROXY_PID=$! ;;
        haproxy)
            write_haproxy "$sc"
            "${PIN[@]}" "$PROXY_CPU" "${WRAP[@]//CGOUT/$TMP/cg.$name}" /usr/sbin/haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
            PROXY_PID=$! ;;
        apache)
            write_apache "$sc"
            "${PIN[@]}" "$PROXY_CPU" "${WRAP[@]//CGOUT/$TMP/cg.$name}" /usr/sbin/apache2 -f "$TMP/apache/apache2.conf" -DFOREGROUND \
                >>"$TMP/apache.log" 2>&1 &
            PROXY_PID=$! ;;
    esac
    if ! "$LG" wait --addr "$TARGET" --timeout 15 || ! kill -0 "$PROXY_PID" 2>/dev/null; then
        log "$name did not start listening on $TARGET; its log:"
        tail -n 20 "$TMP/$name.log" "$TMP/$name/error.log" 2>/dev/null >&2 || true
        return 1
    fi
    # Let it finish starting (Apache creates its worker threads after listening):
    # wait until its thread count and RSS stop changing.
    "$LG" settle --pid "$PROXY_PID" --timeout 20 || true
    sleep "$SETTLE"
}

stop_proxy() {
    stop_pid "$PROXY_PID"
    PROXY_PID=""
    PROXY_NAME=""
}

scenario_args() {
    if is_tls "$1"; then
        echo "--tls --sni $TLS_NAME --ca $TLS_DIR/ca.pem $(scenario_args "$(tls_base "$1")")"
        return
    fi
    case "$1" in
        echo64) echo "--conns $E64_CONNS --inflight 8 --size 64 --duration $DURATION --warmup $WARMUP" ;;
        echo16k) echo "--conns $E16_CONNS --inflight 4 --size 16384 --duration $DURATION --warmup $WARMUP" ;;
        # Not in the default list (it takes a while): 100 tunnels moving
        # 16 KiB messages for SOAK_S seconds (about 10 GiB at this machine's
        # rate), the proxy's RSS compared at start and end.
        soak) echo "--conns 100 --inflight 4 --size 16384 --duration ${SOAK_S:-30} --warmup $WARMUP" ;;
        connect) echo "--conns $CONNECT_WORKERS --duration $DURATION --warmup $WARMUP" ;;
        http) echo "--conns $HTTP_CONNS --duration $DURATION --warmup $WARMUP" ;;
        hold) echo "--n $HOLD_N --hold $HOLD_S --concurrency 200" ;;
        burst) echo "--n $BURST_N --timeout 60" ;;
    esac
}

# --segments: capture and count around one scenario run.
start_counting() {
    local pids
    pids=$(echo "$PROXY_PID" $(descendants "$PROXY_PID" | cut -d: -f1) | tr ' ' ',')
    tcpdump -i lo -n -s 96 -B 65536 -w "$TMP/seg.pcap" \
        "tcp port $PROXY_PORT or tcp port $BACKEND_PORT" 2>"$TMP/tcpdump.log" &
    COUNT_PIDS=($!)
    perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$TMP/syscalls.txt" 2>/dev/null &
    COUNT_PIDS+=($!)
    sleep 1
}
stop_counting() {
    local sc=$1 px=$2 line=$3 count
    kill -INT "${COUNT_PIDS[@]}" 2>/dev/null || true
    wait "${COUNT_PIDS[@]}" 2>/dev/null || true
    COUNT_PIDS=()
    count=$(grep -o '"count":[0-9]*' <<<"$line" | cut -d: -f2)
    if grep -q ' [1-9][0-9]* packets dropped by kernel' "$TMP/tcpdump.log"; then
        log "tcpdump dropped packets during $sc through $px: $(grep dropped "$TMP/tcpdump.log")"
    fi
    local calls
    calls=$(awk -F, '/raw_syscalls/ {print $1}' "$TMP/syscalls.txt" 2>/dev/null)
    tcpdump -n -r "$TMP/seg.pcap" 2>/dev/null | awk -v pp="$PROXY_PORT" -v bp="$BACKEND_PORT" \
        -v n="${count:-0}" -v sc="$sc" -v px="$px" -v calls="${calls:-0}" '
        {
            split($3, s, "."); split($5, d, "."); sub(":", "", d[5])
            if (!(s[5] == pp || (d[5] == bp && s[5] != bp))) next
            sent++
            if ($NF > 0) data++; else if ($7 ~ /F/) fin++; else if ($7 !~ /[SR]/) ack++
            if ($NF > 0 && $7 ~ /F/) fin++
        }
        END {
            if (n == 0) { printf "| %s | %s | 0 | – | – | – | – | – |\n", sc, px; exit }
            printf "| %s | %s | %d | %.3f | %.3f | %.3f | %.3f | %s |\n", sc, px, n,
                sent / n, data / n, ack / n, fin / n, (calls > 0 ? sprintf("%.2f", calls / n) : "–")
        }' >> "$TMP/segments.md"
    rm -f "$TMP/seg.pcap"
}

# ---------------------------------------------------------------- run
if [ -z "$RESULTS" ]; then
    if [ "$SMOKE" = 1 ]; then RESULTS=$TMP/results.jsonl; else RESULTS=$BENCH/results.jsonl; fi
fi
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || COMMIT="$COMMIT+dirty"
MODE=$([ "$SMOKE" = 1 ] && echo smoke || echo full)
RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)-$COMMIT-$MODE"

{
    echo "## wsgate benchmark $RUN_ID"
    echo
    echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), kernel $(uname -r), open files $(ulimit -n)"
    echo "- proxy on CPU $PROXY_CPU; echo backend and load generator on CPU $LOAD_CPU; all at nice $NICE"
    has wsgate && echo "- wsgate: $("$WSGATE" --version 2>&1 | head -1) ($COMMIT), TOKIO_WORKER_THREADS=1"
    has wsgate-base && echo "- wsgate-base: $WSGATE_BASE, TOKIO_WORKER_THREADS=1"
    has nginx && echo "- nginx: $(/usr/sbin/nginx -v 2>&1 | head -1 | sed 's/.*version: //'), worker_processes 1 (+ master)"
    has haproxy && echo "- HAProxy: $(/usr/sbin/haproxy -v | head -1 | awk '{print $3}'), nbthread 1"
    has apache && echo "- Apache: $(/usr/sbin/apache2 -v | head -1 | sed 's/.*version: //'), mpm_event, ServerLimit 1, ThreadsPerChild 256 (hold/burst: N+64)"
    [ "$ANY_TLS" = 1 ] && echo "- TLS scenarios: TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256 certificate, no resumption; $(openssl version | cut -d' ' -f1-2) (nginx, HAProxy, Apache), rustls/ring (wsgate, loadgen)"
    echo
} | tee "$TMP/header.md"

if [ "$ANY_TLS" = 1 ]; then
    make_certs || { log "could not make the TLS certificates"; exit 1; }
fi

start_backend() {
    log "echo backend on 127.0.0.1:$BACKEND_PORT (CPU $LOAD_CPU)"
    "${PIN[@]}" "$LOAD_CPU" "$BACKEND" --listen "127.0.0.1:$BACKEND_PORT" >>"$TMP/backend.log" 2>&1 &
    BACKEND_PID=$!
    "$LG" wait --addr "127.0.0.1:$BACKEND_PORT" --timeout 10 || { log "backend did not start"; cat "$TMP/backend.log" >&2; exit 1; }
}
# The backend must outlive every scenario: if it is gone (it has been seen
# killed from outside), say how it ended and start another, rather than
# measuring 502s for the rest of the run.
check_backend() {
    kill -0 "$BACKEND_PID" 2>/dev/null && return 0
    local st=0
    wait "$BACKEND_PID" 2>/dev/null || st=$?
    log "the echo backend (pid $BACKEND_PID) is gone (exit status $st$([ "$st" -gt 128 ] && echo ", signal $((st - 128))")): restarting it"
    FAILED=$((FAILED + 1))
    start_backend
}
start_backend

FAILED=0
for r in $(seq "$RUNS"); do
    for sc in $SCENARIOS; do
        for px in $PROXIES; do
            if [ "$px" = direct ] && is_tls "$sc"; then
                continue # the backend speaks no TLS
            fi
            log "run $r/$RUNS: $sc through $px"
            if ! start_proxy "$px" "$sc"; then
                FAILED=$((FAILED + 1))
                stop_proxy
                continue
            fi
            if [ "$SEGMENTS" = 1 ] && [ "$px" != direct ]; then
                start_counting
            fi
            # shellcheck disable=SC2046
            line=$("${PIN[@]}" "$LOAD_CPU" "$LG" "$sc" --addr "$TARGET" --path /ws --http-path / \
                --pid "$PROXY_PID" --backend-pid "$BACKEND_PID" \
                --proxy "$px" --run-id "$RUN_ID" --run "$r" --mode "$MODE" \
                $(scenario_args "$sc") 2>>"$TMP/loadgen.log") || line=""
            if [ -z "$line" ]; then
                line="{\"scenario\":\"$sc\",\"proxy\":\"$px\",\"run_id\":\"$RUN_ID\",\"run\":\"$r\",\"ok\":false,\"first_error\":\"loadgen failed\"}"
            fi
            echo "$line" >> "$RESULTS"
            echo "$line" >> "$TMP/run.jsonl"
            if ! grep -q '"ok":true' <<<"$line"; then
                FAILED=$((FAILED + 1))
                log "FAILED: $sc through $px: $(grep -o '"first_error":"[^"]*"' <<<"$line" || echo "$line")"
            fi
            if [ -n "$PROXY_PID" ] && ! kill -0 "$PROXY_PID" 2>/dev/null; then
                log "$px exited during $sc"
                FAILED=$((FAILED + 1))
            fi
            check_backend
            if [ "$SEGMENTS" = 1 ] && [ "$px" != direct ]; then
                stop_counting "$sc" "$px" "$line"
            fi
            stop_proxy
            if [ "$CALLGRIND" = 1 ] && [ "$px" != direct ]; then
                count=$(grep -o '"count":[0-9]*' <<<"$line" | cut -d: -f2)
                ir=$(cat "$TMP/cg.$px".* 2>/dev/null | awk '/^summary:/ {s += $2} END {printf "%.0f\n", s}')
                # With --keep-tmp, callgrind's files stay for callgrind_annotate
                # (renamed by scenario, so the next one does not add to them).
                if [ "${KEEP_TMP:-0}" = 1 ]; then
                    for f in "$TMP/cg.$px".*; do [ -e "$f" ] && mv "$f" "$TMP/callgrind.$sc.$px.${f##*.}"; done
                else
                    rm -f "$TMP/cg.$px".*
                fi
                echo "| $sc | $px | ${count:-0} | $([ "${count:-0}" -gt 0 ] && echo $((ir / count)) || echo –) |" >> "$TMP/callgrind.md"
            fi
        done
    done
done

"$LG" report --results "$TMP/run.jsonl" --run-id "$RUN_ID" | tee "$TMP/report.md"
if [ -s "$TMP/segments.md" ]; then
    echo
    echo "### kernel work per unit: segments the proxy sent, system calls it made"
    echo
    echo "| scenario | proxy | units | segments sent | of which data | pure ACKs | FINs | system calls |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    cat "$TMP/segments.md"
fi
if [ -s "$TMP/callgrind.md" ]; then
    echo
    echo "### user-space instructions per unit of work (callgrind)"
    echo
    echo "| scenario | proxy | units | instructions per unit |"
    echo "|---|---|---:|---:|"
    cat "$TMP/callgrind.md"
fi
log "results appended to $RESULTS (run id $RUN_ID)"
if [ "$FAILED" -gt 0 ]; then
    log "$FAILED scenario run(s) failed"
    exit 1
fi
