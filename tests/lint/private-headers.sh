#!/usr/bin/env bash
# Goal (issue 14, "only public library APIs"): no file under proxy/ or tls/ includes a libevent
# header that is not public API, or calls OpenSSL I/O on an SSL that a bufferevent owns.
#
#   tests/lint/private-headers.sh [DIR...]      default: proxy tls under the source tree
#
# 1. Includes.  libevent 2.1's public headers are <event2/X.h> for X in PUBLIC_EVENT2 below.
#    Refused: every other event2/ header (the deprecated *_struct.h, *_compat.h,
#    keyvalq_struct.h, the generated event-config.h), libevent 1.4's headers (<event.h>,
#    <evutil.h>, <evhttp.h>, <evdns.h>, <evrpc.h>) and libevent's internals (*-internal.h,
#    evthread-internal.h, ...: never installed, but a vendored copy could be put on the path).
# 3. A bufferevent's own I/O.  A function that takes a bufferevent's socket (bufferevent_getfd)
#    or buffers must not read or write that socket itself nor unfreeze the buffers (FD_IO).
# 2. SSL owned by a bufferevent.  A function (house style: the name starts a line, the body runs
#    from a "{" line to a "}" line) that takes an SSL with bufferevent_openssl_get_ssl() must not
#    call OpenSSL's I/O or state changers (SSL_IO below), nor a tls/ function that does (found
#    by the same rule over tls/).  Reading (peer certificate, version, verify result) is fine.
#    ALLOW lists the exceptions by file:function, each with its reason; there is none.
# Before checking the tree it checks itself on files it writes to a temp dir (a bad file must
# fail with the right message, a good one must pass), so a broken pattern cannot pass silently.
set -euo pipefail

SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}

PUBLIC_EVENT2="buffer bufferevent bufferevent_ssl dns event http listener rpc tag thread util"
PUBLIC_EVENT2+=" visibility"
LEGACY="event evutil evhttp evdns evrpc"
SSL_IO="SSL_read SSL_read_ex SSL_peek SSL_peek_ex SSL_write SSL_write_ex SSL_sendfile"
SSL_IO+=" SSL_shutdown SSL_do_handshake SSL_accept SSL_connect SSL_renegotiate SSL_key_update"
SSL_IO+=" SSL_free_buffers SSL_alloc_buffers SSL_clear SSL_free SSL_set_bio SSL_set_fd"
SSL_IO+=" SSL_set_shutdown SSL_set_quiet_shutdown SSL_set_read_ahead SSL_set_mode"
SSL_IO+=" SSL_clear_mode SSL_set_options SSL_clear_options SSL_stateless"
FD_IO="read readv recv recvmsg recvfrom write writev send sendmsg sendto splice sendfile"
FD_IO+=" evbuffer_read evbuffer_write evbuffer_write_atmost evbuffer_freeze evbuffer_unfreeze"

# None since the core runs on proxy_io (issue 14): the close_notify of a TLS half-close, once
# the one exception (proxy_relay.c's proxy_shutdown_write), is proxy_io_shutdown() on ferry's
# own socket.  An entry is "file:function", with its reason above it.
ALLOW=""

# check_includes FILE...: print "FILE:LINE: ..." for each refused include.
check_includes()
{
    awk -v pub=" $PUBLIC_EVENT2 " -v legacy=" $LEGACY " '
        /^[ \t]*#[ \t]*include[ \t]*[<"]/ {
            h = $0
            sub(/^[ \t]*#[ \t]*include[ \t]*[<"]/, "", h)
            sub(/[>"].*$/, "", h)
            base = h
            sub(/^.*\//, "", base)
            name = base
            sub(/\.h$/, "", name)
            why = ""
            if (h ~ /^event2\//) {
                if (index(pub, " " name " ") == 0 || h !~ /^event2\/[^\/]+\.h$/)
                    why = "not a public libevent header"
            } else if (h !~ /\// && index(legacy, " " name " ") > 0 && h ~ /\.h$/) {
                why = "libevent 1.4 compatibility header (deprecated)"
            } else if (base ~ /-internal\.h$/) {
                why = "libevent internal header"
            }
            if (why != "")
                printf "%s:%d: includes <%s>: %s\n", FILENAME, FNR, h, why
        }' "$@"
}

# io_functions FILE...: names of the functions (house style) that take an SSL * argument and
# call one of SSL_IO: helpers that do I/O on the SSL they are given.
io_functions()
{
    awk -v io=" $SSL_IO " '
        /^[A-Za-z_][A-Za-z0-9_]*\(/ { fn = $0; sub(/\(.*/, "", fn); sig = ""; body = 0 }
        /^}/ { fn = "" }
        fn != "" && !body { sig = sig $0; if ($0 ~ /^\{/) body = 1 }
        fn != "" && body && sig ~ /SSL[ \t]*\*/ {
            line = $0
            while (match(line, /SSL_[A-Za-z_]+[ \t]*\(/)) {
                c = substr(line, RSTART, RLENGTH)
                sub(/[ \t]*\($/, "", c)
                if (index(io, " " c " ") > 0)
                    print fn
                line = substr(line, RSTART + RLENGTH)
            }
        }' "$@" | sort -u
}

# check_pair ROOT TRIGGER CALLS WHAT FILE...: print "FILE:LINE: ..." where a function that calls
# TRIGGER (an awk regex) also calls one of CALLS (space-separated names), unless ALLOWed.
check_pair()
{
    local root=$1 trigger=$2 calls=$3 what=$4
    shift 4
    awk -v io=" $calls " -v allow=" $ALLOW " -v root="$root/" -v trig="$trigger" -v what="$what" '
        function flush(   i, rel) {
            if (fn == "" || !got)
                return
            rel = FILENAME
            if (index(rel, root) == 1)
                rel = substr(rel, length(root) + 1)
            if (index(allow, " " rel ":" fn " ") > 0)
                return
            for (i = 1; i <= n; i++)
                printf "%s:%d: %s() calls %s %s\n", FILENAME, at[i], fn, call[i], what
        }
        FNR == 1 { fn = ""; got = 0; n = 0 }
        /^[A-Za-z_][A-Za-z0-9_]*\(/ { fn = $0; sub(/\(.*/, "", fn); got = 0; n = 0 }
        /^}/ { flush(); fn = ""; got = 0; n = 0; next }
        fn != "" {
            if ($0 ~ trig)
                got = 1
            line = $0
            while (match(line, /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/)) {
                c = substr(line, RSTART, RLENGTH)
                sub(/[ \t]*\($/, "", c)
                if (index(io, " " c " ") > 0) {
                    n++
                    at[n] = FNR
                    call[n] = c
                }
                line = substr(line, RSTART + RLENGTH)
            }
        }' "$@"
}

# check_bev_ssl ROOT FILE...: a function that takes a bufferevent's SSL calls one of SSL_IO or
# one of the helpers (in tls/ or the files checked) that do I/O on an SSL argument.
check_bev_ssl()
{
    local root=$1 helpers
    shift
    helpers=$(cd "$root" && io_functions "$@" $(ls tls/*.c 2>/dev/null) | tr '\n' ' ')
    check_pair "$root" 'bufferevent_openssl_get_ssl[ \t]*\(' "$SSL_IO $helpers" \
        "on an SSL from bufferevent_openssl_get_ssl() (the bufferevent owns it)" "$@"
}

# check_bev_io ROOT FILE...: a function that takes a bufferevent's socket or buffers does the
# bufferevent's own I/O behind its back (reads or writes its socket, unfreezes its buffers).
check_bev_io()
{
    local root=$1
    shift
    check_pair "$root" 'bufferevent_(getfd|get_input|get_output)[ \t]*\(' "$FD_IO" \
        "on a bufferevent's socket or buffer (libevent does that I/O)" "$@"
}

# lint ROOT DIR...: all checks over the .c and .h files under ROOT/DIR...; prints the findings.
lint()
{
    local root=$1 files
    shift
    files=$(cd "$root" && find "$@" -type f \( -name '*.c' -o -name '*.h' \) | sort)
    [ -n "$files" ] || { echo "no source files under $* in $root"; return; }
    (cd "$root" && check_includes $files)
    (cd "$root" && check_bev_ssl "$root" $files)
    (cd "$root" && check_bev_io "$root" $files)
}

self_check()
{
    local t out
    t=$(mktemp -d "${TMPDIR:-/tmp}/ferry-lint.XXXXXX")
    mkdir -p "$t/proxy" "$t/tls"
    cat >"$t/proxy/bad.c" <<'C'
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event_compat.h>
#include "bufferevent-internal.h"
#include <evutil.h>

static void
poke(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    (void)SSL_write(ssl, "x", 1);
}

static void
quiet(struct bufferevent *bev)
{
    tls_flush(bufferevent_openssl_get_ssl(bev));
}

static void
read_more(struct bufferevent *bev, struct iovec *iov)
{
    evbuffer_unfreeze(bufferevent_get_input(bev), 0);
    (void)readv(bufferevent_getfd(bev), iov, 1);
}

static void
send_direct(struct evbuffer *in, SSL *ssl)
{
    (void)SSL_write(ssl, "y", 1);
}

static void
write_direct(struct bufferevent *bev, struct evbuffer *in)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (ssl != NULL) {
        send_direct(in, ssl);
    }
}
C
    cat >"$t/tls/tls_x.c" <<'C'
void
tls_flush(SSL *ssl)
{
    (void)SSL_shutdown(ssl);
}
C
    cat >"$t/proxy/good.c" <<'C'
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include "proxy_internal.h"

static int
peer(struct bufferevent *bev, SSL *own)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    return SSL_get0_peer_certificate(ssl) != NULL;
}

static void
mine(SSL *own)
{
    (void)SSL_write(own, "x", 1);
}
C
    out=$(lint "$t" proxy tls)
    rm -rf "$t"
    local want=("proxy/bad.c:2: includes <event2/bufferevent_struct.h>"
        "proxy/bad.c:3: includes <event2/event_compat.h>"
        "proxy/bad.c:4: includes <bufferevent-internal.h>: libevent internal"
        "proxy/bad.c:5: includes <evutil.h>: libevent 1.4"
        "proxy/bad.c:12: poke() calls SSL_write"
        "proxy/bad.c:18: quiet() calls tls_flush"
        "proxy/bad.c:24: read_more() calls evbuffer_unfreeze"
        "proxy/bad.c:25: read_more() calls readv"
        "proxy/bad.c:40: write_direct() calls send_direct")
    local w
    for w in "${want[@]}"; do
        if ! grep -qF "$w" <<<"$out"; then
            echo "FAIL self-check: no finding \"$w\" in:"
            echo "$out"
            return 1
        fi
    done
    if grep -q "good.c\|tls_x.c\|bad.c:1:" <<<"$out"; then
        echo "FAIL self-check: findings on good code:"
        echo "$out"
        return 1
    fi
    if [ "$(wc -l <<<"$out")" -ne "${#want[@]}" ]; then
        echo "FAIL self-check: expected ${#want[@]} findings, got:"
        echo "$out"
        return 1
    fi
    echo "self-check ok: ${#want[@]} planted findings found, none on good code"
}

self_check
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(proxy tls)
out=$(lint "$SRC" "${dirs[@]}")
if [ -n "$out" ]; then
    echo "FAIL: libevent private headers or I/O on a bufferevent's SSL:"
    echo "$out"
    exit 1
fi
echo "ok: ${dirs[*]} use libevent's public headers only and do no I/O on a bufferevent's SSL" \
    "(allowed: ${ALLOW:-none})"
