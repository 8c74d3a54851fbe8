#!/usr/bin/env bash
# pki.sh DIR: build the integration-test PKI in DIR with the openssl CLI, the way an operator
# would (`openssl req -x509` for roots, CSRs signed with `openssl x509 -req -extfile`, and
# `openssl ca` where dates or revocation need its database).  Nothing here is committed; the
# tests call it at run time.  At the end it checks every certificate with `openssl verify`.
#
# Files in DIR (keys NAME.key, mode 0600; every leaf NAME.crt is the leaf alone):
#   root.crt root.key        "Ferry Test Root CA"
#   int.crt int.key          "Ferry Test Intermediate CA" (pathlen 0), issued by root
#   other-ca.crt other-ca.key "Ferry Test Other CA" (unrelated)
#   ca.crt                   bundle: root only          ca-int.crt: root + intermediate
#   node1.*                  ferry's own identity: DNS node1.test, localhost, IP 127.0.0.1; both EKUs
#   node1-rsa.*              the same, RSA 2048
#   node1-enc.key node1.pass node1-wrong.pass   node1.key encrypted (AES-256), its passphrase
#   mismatch.crt mismatch.key   node1.crt with an unrelated key
#   node1-expired.*  node1-server.* (serverAuth only)  node1-client.* (clientAuth only)
# Peer certificates (SAN DNS:peer.test, DNS:alt.peer.test, IP:127.0.0.1 unless said):
#   good        ECDSA P-256, both EKUs           good-rsa   RSA 2048, both EKUs
#   int-good    issued by the intermediate; int-good-chain.crt = leaf + intermediate
#   server-only serverAuth only                  client-only  clientAuth only
#   no-eku      no extendedKeyUsage extension    wrong-san  SAN DNS:wrong.test, IP:10.9.9.9
#   cn-only     CN=peer.test, no SAN             ip-only    SAN IP:127.0.0.1 only
#   wild        SAN DNS:*.wild.test                dns-ip     SAN DNS:127.0.0.1, DNS:peer.test (no IP SAN)
#   spiffe      SAN URI:spiffe://site-b.example.org/ns/db/replicator only, subject O=Ferry Test only
#   expired     valid 2020-01-01..2020-02-01     not-yet    valid from 2099
#   other       issued by the other CA           self       self-signed leaf (CA:FALSE)
#   nonca       issued by the `good` leaf; nonca-chain.crt = nonca + good
#   revoked     issued by root, revoked in root.crl
#   int-revoked issued by the intermediate, revoked in int.crl; int-revoked-chain.crt
#   deep        root -> deep-int1 -> deep-int2 -> deep; deep-chain.crt = leaf + both ints,
#               deep-ints.crt = the two intermediates (levels 0..3: too deep for verify_depth 1)
#   bad-sig     `good` with one byte of its signature flipped
#   critx       an unknown critical extension
#   CRLs: root.crl int.crl; crl.pem = both; crl-root-only.pem; crl-expired.pem (root CRL
#   expired in 2020 + int.crl)
set -euo pipefail

D=${1:?usage: pki.sh DIR}
mkdir -p "$D"
D=$(cd "$D" && pwd)
cd "$D"
umask 077

cat >ext.cnf <<'CNF'
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused

[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_int1 ]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_int ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ both ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::SAN}

[ server ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::SAN}

[ client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::SAN}

[ noeku ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::SAN}

[ cnonly ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ selfleaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
subjectAltName = ${ENV::SAN}

[ critx ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::SAN}
1.3.6.1.4.1.55555.1 = critical,ASN1:UTF8String:ferry-test
CNF
export SAN="DNS:unused"
PEER_SAN="DNS:peer.test,DNS:alt.peer.test,IP:127.0.0.1"

key() { # key NAME ec|rsa
    if [ "${2:-ec}" = rsa ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
    fi
    chmod 600 "$1.key"
}

# ca_db NAME: an `openssl ca` database for the CA NAME.crt/NAME.key
ca_db() {
    local n=$1
    mkdir -p "$n.db/new"
    : >"$n.db/index.txt"
    echo 1000 >"$n.db/crlnumber"
    openssl rand -hex 16 >"$n.db/serial"
    cat >"$n.db/ca.cnf" <<CNF
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = $D/$n.db
database = \$dir/index.txt
new_certs_dir = \$dir/new
certificate = $D/$n.crt
private_key = $D/$n.key
serial = \$dir/serial
crlnumber = \$dir/crlnumber
default_md = sha256
default_days = 365
default_crl_days = 3650
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
organizationName = optional
CNF
}

# leaf NAME CA SECTION SAN CN [ec|rsa]: key, CSR, signed with `openssl x509 -req` (CN "": none)
leaf() {
    local n=$1 ca=$2 sec=$3 san=$4 cn=$5 kt=${6:-ec}
    key "$n" "$kt"
    openssl req -new -key "$n.key" -subj "/O=Ferry Test${cn:+/CN=$cn}" -config ext.cnf -out "$n.csr"
    SAN=$san openssl x509 -req -in "$n.csr" -CA "$ca.crt" -CAkey "$ca.key" \
        -CAserial "$ca.srl" -CAcreateserial -days 825 -sha256 \
        -extfile ext.cnf -extensions "$sec" -out "$n.crt" 2>/dev/null
}

# dated NAME CA START END: a `both` leaf with explicit dates, signed with `openssl ca`
dated() {
    local n=$1 ca=$2 start=$3 end=$4 cn=${5:-peer.test} san=${6:-$PEER_SAN}
    key "$n"
    openssl req -new -key "$n.key" -subj "/O=Ferry Test${cn:+/CN=$cn}" -config ext.cnf -out "$n.csr"
    SAN=$san openssl ca -batch -notext -config "$ca.db/ca.cnf" -in "$n.csr" -out "$n.crt" \
        -startdate "$start" -enddate "$end" -extfile ext.cnf -extensions both 2>/dev/null
}

# ---- CAs ----
key root
openssl req -x509 -new -key root.key -subj "/O=Ferry Test/CN=Ferry Test Root CA" -days 3650 \
    -sha256 -config ext.cnf -extensions v3_ca -out root.crt
ca_db root

key int
openssl req -new -key int.key -subj "/O=Ferry Test/CN=Ferry Test Intermediate CA" \
    -config ext.cnf -out int.csr
openssl x509 -req -in int.csr -CA root.crt -CAkey root.key -CAserial root.srl -CAcreateserial \
    -days 3650 -sha256 -extfile ext.cnf -extensions v3_int -out int.crt 2>/dev/null
ca_db int

# a deeper chain for verify_depth: root -> deep-int1 (pathlen 1) -> deep-int2 -> deep leaf
key deep-int1
openssl req -new -key deep-int1.key -subj "/O=Ferry Test/CN=Ferry Test Deep Int 1" \
    -config ext.cnf -out deep-int1.csr
openssl x509 -req -in deep-int1.csr -CA root.crt -CAkey root.key -CAserial root.srl \
    -days 3650 -sha256 -extfile ext.cnf -extensions v3_int1 -out deep-int1.crt 2>/dev/null
key deep-int2
openssl req -new -key deep-int2.key -subj "/O=Ferry Test/CN=Ferry Test Deep Int 2" \
    -config ext.cnf -out deep-int2.csr
openssl x509 -req -in deep-int2.csr -CA deep-int1.crt -CAkey deep-int1.key \
    -CAserial deep-int1.srl -CAcreateserial -days 3650 -sha256 -extfile ext.cnf \
    -extensions v3_int -out deep-int2.crt 2>/dev/null

key other-ca
openssl req -x509 -new -key other-ca.key -subj "/O=Ferry Test/CN=Ferry Test Other CA" \
    -days 3650 -sha256 -config ext.cnf -extensions v3_ca -out other-ca.crt

cp root.crt ca.crt
cat root.crt int.crt >ca-int.crt

# ---- ferry's own identities ----
NODE_SAN="DNS:node1.test,DNS:localhost,IP:127.0.0.1"
leaf node1 root both "$NODE_SAN" node1.test
leaf node1-rsa root both "$NODE_SAN" node1.test rsa
leaf node1-server root server "$NODE_SAN" node1.test
leaf node1-client root client "$NODE_SAN" node1.test
dated node1-expired root 20200101000000Z 20200201000000Z node1.test "$NODE_SAN"
echo "correct horse battery staple" >node1.pass
echo "wrong passphrase" >node1-wrong.pass
chmod 600 node1.pass node1-wrong.pass
openssl pkey -in node1.key -aes256 -passout file:node1.pass -out node1-enc.key
chmod 600 node1-enc.key
cp node1.crt mismatch.crt
key mismatch

# ---- peer certificates ----
leaf good root both "$PEER_SAN" peer.test
leaf good-rsa root both "$PEER_SAN" peer.test rsa
leaf int-good int both "$PEER_SAN" peer.test
cat int-good.crt int.crt >int-good-chain.crt
leaf server-only root server "$PEER_SAN" peer.test
leaf client-only root client "$PEER_SAN" peer.test
leaf no-eku root noeku "$PEER_SAN" peer.test
leaf wrong-san root both "DNS:wrong.test,IP:10.9.9.9" wrong.test
leaf cn-only root cnonly "" peer.test
leaf ip-only root both "IP:127.0.0.1" ip-only
leaf wild root both "DNS:*.wild.test" wild.test
leaf dns-ip root both "DNS:127.0.0.1,DNS:peer.test" dns-ip
# As csi-driver-spiffe or a mesh mints them: one URI SAN (a SPIFFE ID), no DNS SAN, no CN.
leaf spiffe root both "URI:spiffe://site-b.example.org/ns/db/replicator" ""
leaf deep deep-int2 both "$PEER_SAN" peer.test
cat deep.crt deep-int2.crt deep-int1.crt >deep-chain.crt
cat deep-int2.crt deep-int1.crt >deep-ints.crt
leaf other other-ca both "$PEER_SAN" peer.test
leaf critx root critx "$PEER_SAN" peer.test
leaf nonca good both "$PEER_SAN" peer.test
cat nonca.crt good.crt >nonca-chain.crt
dated expired root 20200101000000Z 20200201000000Z
dated not-yet root 20990101000000Z 20991231000000Z

key self
SAN=$PEER_SAN openssl req -x509 -new -key self.key -subj "/O=Ferry Test/CN=peer.test" \
    -days 825 -sha256 -config ext.cnf -extensions selfleaf -out self.crt

# bad-sig: `good` with the last byte of its signature flipped
openssl x509 -in good.crt -outform DER -out bad-sig.der
python3 - bad-sig.der <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-1] ^= 0x01
open(p, "wb").write(bytes(b))
PY
openssl x509 -inform DER -in bad-sig.der -out bad-sig.crt
cp good.key bad-sig.key

# ---- revocation ----
leaf revoked root both "$PEER_SAN" peer.test
leaf int-revoked int both "$PEER_SAN" peer.test
cat int-revoked.crt int.crt >int-revoked-chain.crt
openssl ca -batch -config root.db/ca.cnf -revoke revoked.crt 2>/dev/null
openssl ca -batch -config int.db/ca.cnf -revoke int-revoked.crt 2>/dev/null
openssl ca -batch -config root.db/ca.cnf -gencrl -out root.crl 2>/dev/null
openssl ca -batch -config int.db/ca.cnf -gencrl -out int.crl 2>/dev/null
openssl ca -batch -config root.db/ca.cnf -gencrl -crl_lastupdate 20200101000000Z \
    -crl_nextupdate 20200201000000Z -out root-expired.crl 2>/dev/null
cat root.crl int.crl >crl.pem
cp root.crl crl-root-only.pem
cat root-expired.crl int.crl >crl-expired.pem

chmod 600 ./*.key
rm -f ./*.csr ./*.der

# ---- self-check with openssl verify ----
fails=0
# want NAME CODE ARGS...: `openssl verify ARGS... NAME.crt` gives X509 error CODE (0 = OK)
want() {
    local n=$1 code=$2 out
    shift 2
    out=$(openssl verify -CAfile root.crt "$@" "$n.crt" 2>&1) || true
    if [ "$code" = 0 ]; then
        if ! grep -q "^$n.crt: OK" <<<"$out"; then
            echo "pki.sh: $n expected OK, got: $out" >&2
            fails=$((fails + 1))
        fi
    elif ! grep -q "error $code at" <<<"$out"; then
        echo "pki.sh: $n expected error $code, got: $out" >&2
        fails=$((fails + 1))
    fi
}
for n in node1 node1-rsa good good-rsa wild ip-only cn-only no-eku wrong-san; do
    want "$n" 0 -purpose sslclient
done
want node1 0 -purpose sslserver
want int-good 0 -untrusted int.crt
want int-good 20                                # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
want other 20
want self 18                                    # DEPTH_ZERO_SELF_SIGNED_CERT
want nonca 79 -untrusted good.crt               # INVALID_CA (3.0 numbering)
want expired 10                                 # CERT_HAS_EXPIRED
want node1-expired 10
want not-yet 9                                  # CERT_NOT_YET_VALID
want revoked 0
want revoked 23 -crl_check_all -CRLfile crl.pem # CERT_REVOKED
want int-revoked 23 -untrusted int.crt -crl_check_all -CRLfile crl.pem
want good 0 -crl_check_all -CRLfile crl.pem
want int-good 0 -untrusted int.crt -crl_check_all -CRLfile crl.pem
want int-good 3 -untrusted int.crt -crl_check_all -CRLfile crl-root-only.pem # UNABLE_TO_GET_CRL
want good 12 -crl_check_all -CRLfile crl-expired.pem                      # CRL_HAS_EXPIRED
want bad-sig 7                                  # CERT_SIGNATURE_FAILURE
want critx 34                                   # UNHANDLED_CRITICAL_EXTENSION
want server-only 26 -purpose sslclient          # INVALID_PURPOSE
want client-only 26 -purpose sslserver
want int-good 22 -untrusted int.crt -verify_depth 0 # CERT_CHAIN_TOO_LONG
want deep 0 -untrusted deep-ints.crt -purpose sslclient
want deep 22 -untrusted deep-ints.crt -verify_depth 1
# key/cert pairs
pub() { openssl pkey -in "$1" -pubout 2>/dev/null | sha256sum; }
pubc() { openssl x509 -in "$1" -pubkey -noout | sha256sum; }
[ "$(pub node1.key)" = "$(pubc node1.crt)" ] || { echo "pki.sh: node1 key/cert differ" >&2; fails=$((fails + 1)); }
[ "$(pub mismatch.key)" != "$(pubc mismatch.crt)" ] || { echo "pki.sh: mismatch pair matches" >&2; fails=$((fails + 1)); }
openssl pkey -in node1-enc.key -passin file:node1.pass -noout ||
    { echo "pki.sh: node1-enc.key does not open" >&2; fails=$((fails + 1)); }
if openssl pkey -in node1-enc.key -passin file:node1-wrong.pass -noout 2>/dev/null; then
    echo "pki.sh: node1-enc.key opens with the wrong passphrase" >&2
    fails=$((fails + 1))
fi
if [ "$(stat -c %a node1.key)" != 600 ]; then
    echo "pki.sh: key mode $(stat -c %a node1.key)" >&2
    fails=$((fails + 1))
fi
[ "$fails" = 0 ] || { echo "pki.sh: $fails self-checks failed" >&2; exit 1; }
touch .done
echo "pki.sh: PKI ready in $D"
