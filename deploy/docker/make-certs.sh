#!/usr/bin/env bash
# deploy/docker/make-certs.sh: everything docker-compose.yml mounts, made with `ferry certs`:
#
#   certs/ca/ca.crt, ca.key                    the private CA of both sites (ca.key stays here)
#   certs/SITE/tls/SITE.example.crt, .key      the node certificate (serverAuth + clientAuth)
#   certs/SITE/tls/ca.crt                      the CA to trust for peers
#   certs/SITE/tls/couchdb.secret              CouchDB's [chttpd_auth] secret, for ferry
#   certs/SITE/couchdb.env                     COUCHDB_PASSWORD and COUCHDB_SECRET, for CouchDB
#   certs/SITE/local.ini                       a copy of local.ini (CouchDB's entrypoint chowns it)
# for SITE in site-a and site-b.  Existing files are kept; remove certs/ to start again.
#
# The ferry binary: $FERRY, else `ferry` on PATH, else ../../build/ferry.  The files under
# certs/SITE/tls are then given to uid/gid 10001, the user "ferry" of the image (keys mode 0600:
# ferry refuses keys that others may read), as root or through sudo.
set -euo pipefail
cd "$(dirname "$0")"

ferry=${FERRY:-}
if [ -z "$ferry" ]; then
    if command -v ferry >/dev/null 2>&1; then
        ferry=ferry
    elif [ -x ../../build/ferry ]; then
        ferry=../../build/ferry
    else
        echo "make-certs.sh: no ferry binary: build it (cmake --build build) or set FERRY=" >&2
        exit 1
    fi
fi
ferry_uid=10001
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

# hex N: N random bytes as lowercase hex.
hex() {
    head -c "$1" /dev/urandom | od -An -v -tx1 | tr -d ' \n'
}

umask 077
mkdir -p certs
if [ ! -f certs/ca/ca.crt ]; then
    "$ferry" certs init-ca --dir certs/ca --name "ferry two-sites demo CA"
fi

for site in site-a site-b; do
    d=certs/$site
    mkdir -p "$d"
    chmod 0755 "$d"
    if [ ! -f "$d/couchdb.env" ]; then
        printf 'COUCHDB_PASSWORD=%s\nCOUCHDB_SECRET=%s\n' "$(hex 16)" "$(hex 32)" >"$d/couchdb.env"
    fi
    install -m 0644 local.ini "$d/local.ini"
    if [ ! -d "$d/tls" ]; then
        [ -e "$d/tls.new" ] && $sudo rm -rf "$d/tls.new"
        # issue writes NAME.crt, NAME.key (0600) and ca.crt into --out.
        "$ferry" certs issue --ca certs/ca --name "$site.example" --dns "$site" --out "$d/tls.new"
        sed -n 's/^COUCHDB_SECRET=//p' "$d/couchdb.env" >"$d/tls.new/couchdb.secret"
        chmod 0644 "$d/tls.new/$site.example.crt" "$d/tls.new/ca.crt"
        chmod 0600 "$d/tls.new/$site.example.key" "$d/tls.new/couchdb.secret"
        chmod 0755 "$d/tls.new"
        mv "$d/tls.new" "$d/tls"
        $sudo chown -R "$ferry_uid:$ferry_uid" "$d/tls"
    fi
    echo "$site: $d/tls, $d/couchdb.env, $d/local.ini"
done
echo "next: docker compose up -d --build   (see the top of docker-compose.yml)"
