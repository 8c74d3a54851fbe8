#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each of them (see fuzz/README.md).
#   fuzz/run.sh [SECONDS] [TARGET...]      each target for SECONDS (default 60): CI
#   fuzz/run.sh --hours H [TARGET...]      each target for H hours (H may be 0.5): long runs
# Targets: config http name access ident certs pp tunnel (default: all).  A short run starts each
# target from a scratch copy of its seeds (fuzz/corpus/<name>/ plus certificates made here
# with openssl); a long run keeps what it found in build-fuzz/corpus/<name>/ for the next one.
# Prints per target: run time, CPU seconds, executions, exec/s and crashes, and appends them
# to build-fuzz/stats.tsv.  A crash, leak, timeout or sanitizer report is written to
# build-fuzz/artifacts/<name>/ and makes this script exit 1, naming the reproducer and the
# command that replays it.  A long run restarts a target after a crash (at most 5 times) so
# the others still get their hours.
# Needs clang and the libFuzzer runtime (Debian 12: clang libclang-rt-14-dev), and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: fuzz/run.sh [SECONDS] [TARGET...] | fuzz/run.sh --hours H [TARGET...]" >&2
  exit 2
}

all_targets=(config http name access ident certs pp tunnel)
secs=60
long=0
if [ "${1:-}" = "--hours" ]; then
  [ $# -ge 2 ] || usage
  case $2 in
    '' | *[!0-9.]* | *.*.*) usage ;;
  esac
  secs=$(awk -v h="$2" 'BEGIN { printf "%d", h * 3600 }')
  [ "$secs" -gt 0 ] || usage
  long=1
  shift 2
elif [ $# -ge 1 ] && [ -n "$1" ] && [ -z "${1//[0-9]/}" ]; then
  secs=$1
  shift
fi
case $secs in
  '' | *[!0-9]* | 0) usage ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in
    *" $t "*) ;;
    *) echo "fuzz/run.sh: unknown target $t (targets: ${all_targets[*]})" >&2; exit 2 ;;
  esac
done

build=build-fuzz
CC=clang cmake -S . -B "$build" -DFERRY_FUZZ=ON -DFERRY_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j2 --target fuzzers >/dev/null

# Certificates, keys, a CRL and a PKCS#12 bundle made fresh for the certs and ident seeds
# (never committed).  Small keys and SHA-1 on purpose: they are findings inspect reports.
make_cert_seeds() {
  local d=$build/seeds
  rm -rf "$d"
  mkdir -p "$d/corpus/certs" "$d/corpus/ident" "$d/ca"
  (
    cd "$d"
    exec 2>/dev/null
    ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    openssl req -x509 $ec -keyout ca.key -out ca.pem -subj "/CN=Fuzz Root/O=ferry" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign,cRLSign"
    openssl req $ec -keyout int.key -out int.csr -subj "/CN=Fuzz Intermediate"
    printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n' >int.ext
    openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 365 \
      -extfile int.ext -out int.pem
    openssl req $ec -keyout leaf.key -out leaf.csr -subj "/CN=node1.example.org/O=Site A"
    printf 'subjectAltName=DNS:node1.example.org,DNS:*.site-a.example.org,IP:10.0.0.1,IP:::1,URI:spiffe://example.org/node1,email:ops@example.org\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' >leaf.ext
    openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -set_serial 3 -days 20 \
      -extfile leaf.ext -out leaf.pem
    openssl x509 -in leaf.pem -outform DER -out leaf.der
    openssl x509 -in ca.pem -outform DER -out ca.der
    openssl pkey -in leaf.key -outform DER -out leaf.key.der
    openssl pkcs12 -export -in leaf.pem -inkey leaf.key -passout pass:fuzz -out leaf.p12
    openssl req -x509 -newkey rsa:1024 -nodes -sha1 -keyout weak.key -out weak.pem \
      -subj "/CN=weak.example.org" -days 1 -addext "extendedKeyUsage=clientAuth"
    # A CRL from the intermediate revoking the leaf.
    printf 'V\t991231235959Z\t\t03\tunknown\t/CN=node1.example.org\n' >ca/index.txt
    printf '[ca]\ndefault_ca=c\n[c]\ndatabase=ca/index.txt\ncrlnumber=ca/crlnumber\ndefault_md=sha256\ndefault_crl_days=7\n' >ca.cnf
    echo 01 >ca/crlnumber
    openssl ca -config ca.cnf -revoke leaf.pem -keyfile int.key -cert int.pem
    openssl ca -config ca.cnf -gencrl -keyfile int.key -cert int.pem -out int.crl
    cat leaf.pem int.pem >chain.pem
    cat int.pem leaf.pem >misordered.pem
    cat int.pem ca.pem >bundle.pem
  ) || true
  # certs seeds: control byte (1 JSON, 2 CA, 4 key, 8 CRL, 16 name, 32 hostname), files.
  seed() { local name=$1 ctl=$2; shift 2; {
    printf "\\x$ctl"
    local first=1 f
    for f in "$@"; do [ $first = 1 ] || printf '@@@@'; first=0; cat "$d/$f"; done
  } >"$d/corpus/certs/$name" 2>/dev/null || rm -f "$d/corpus/certs/$name"; }
  seed chain-ca-key-name 36 chain.pem ca.pem leaf.key
  seed chain-json 37 chain.pem bundle.pem leaf.key
  seed misordered 02 misordered.pem ca.pem
  seed crl 0a chain.pem ca.pem int.crl
  seed crl-bundle 0b leaf.pem bundle.pem int.crl
  seed der-cert 00 leaf.der
  seed der-key 04 leaf.pem leaf.key.der
  seed pkcs12 01 leaf.p12
  seed weak-sha1 20 weak.pem
  seed wrong-key 04 weak.pem leaf.key
  seed ca-as-cert 02 ca.pem ca.pem
  for f in leaf.der ca.der; do cp "$d/$f" "$d/corpus/ident/$f" 2>/dev/null || true; done
  if [ ! -s "$d/corpus/certs/chain-ca-key-name" ]; then
    echo "fuzz/run.sh: openssl could not make the certificate seeds" >&2
  fi
}
make_cert_seeds

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Longest input per target: a config file, a few pipelined heads, a handful of names or
# rules, a certificate with names, a few PEM files.
declare -A maxlen=([config]=4096 [http]=8192 [name]=512 [access]=2048 [ident]=4096 [certs]=16384 [pp]=1024 [tunnel]=9000)
stats=$build/stats.tsv
[ -f "$stats" ] || printf 'date\ttarget\tseconds\tcpu_s\texecs\texec_per_s\tcrashes\n' >"$stats"
status=0
summary=()
for name in "${targets[@]}"; do
  corpus=$build/corpus/$name
  artifacts=$build/artifacts/$name/
  if [ $long = 0 ]; then
    rm -rf "$corpus" "$artifacts"
  fi
  mkdir -p "$corpus" "$artifacts"
  cp fuzz/corpus/"$name"/* "$corpus"/
  if [ -d "$build/seeds/corpus/$name" ]; then
    cp "$build/seeds/corpus/$name"/* "$corpus"/ 2>/dev/null || true
  fi
  dict=()
  [ -f fuzz/$name.dict ] && dict=(-dict=fuzz/$name.dict)
  log=$build/fuzz_$name.log
  : >"$log"
  echo "== fuzz_$name for ${secs}s (log: $log)"
  before=$(ls "$artifacts" | wc -l)
  left=$secs execs=0 cpu=0 runs=0
  start=$(date +%s)
  while [ "$left" -gt 0 ] && [ $runs -lt 6 ]; do
    runs=$((runs + 1))
    rc=0
    # bash's `time` gives the fuzzer's own user+system CPU seconds.
    TIMEFORMAT='%U %S'
    { time "$build/fuzz/fuzz_$name" -max_total_time="$left" -max_len="${maxlen[$name]}" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" \
        "${dict[@]}" "$corpus" >>"$log" 2>&1 || rc=$?; } 2>"$build/time_$name"
    cpu=$(awk -v c="$cpu" '{ printf "%.1f", c + $1 + $2 }' "$build/time_$name")
    n=$(grep -E '^stat::number_of_executed_units' "$log" | tail -n 1 | awk '{ print $2 }' || true)
    # After a crash libFuzzer prints no stats: count the executions from its last status line.
    if [ $rc != 0 ]; then
      n=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
    fi
    execs=$((execs + ${n:-0}))
    left=$((secs - ($(date +%s) - start)))
    if [ $rc = 0 ] || [ $long = 0 ]; then
      break
    fi
    tail -n 40 "$log" >&2
  done
  elapsed=$(($(date +%s) - start))
  crashes=$(($(ls "$artifacts" | wc -l) - before))
  rate=$(awk -v e="$execs" -v s="$elapsed" 'BEGIN { printf "%d", (s > 0 ? e / s : e) }')
  line=$(printf '%-8s %7ss %8s %12s %9s %8s' "$name" "$elapsed" "$cpu" "$execs" "$rate" "$crashes")
  summary+=("$line")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name" "$elapsed" "$cpu" "$execs" \
    "$rate" "$crashes" >>"$stats"
  echo "   $line"
  if [ "$crashes" -gt 0 ] || [ "$rc" != 0 ]; then
    [ $long = 1 ] || tail -n 60 "$log" >&2
    for a in $(ls -t "$artifacts" | head -n 5); do
      echo "fuzz_$name FAILED; reproducer: $artifacts$a" >&2
      echo "   replay: $build/fuzz/fuzz_$name $artifacts$a" >&2
    done
    status=1
  fi
done
echo "== summary (target, wall, CPU seconds, executions, exec/s, new crashes)"
printf '   %-8s %8s %8s %12s %9s %8s\n' target wall cpu_s execs exec/s crashes
for l in "${summary[@]}"; do echo "   $l"; done
exit $status
