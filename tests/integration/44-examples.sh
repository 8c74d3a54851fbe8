#!/usr/bin/env bash
# Goal: every configuration we ship passes `ferry check`: deploy/examples/*.yaml (one per
# role), deploy/ferry.example.yaml, the two sites of deploy/docker/ and the ferry.yaml inside the
# Kubernetes ConfigMap of deploy/kubernetes/ferry-sidecar.yaml.  As shipped, the only errors
# are the files that do not exist on this machine (file-missing); with every /etc/ferry/ path
# rewritten to a PKI made at run time by `ferry certs`, `ferry check -c` exits 0 with no error.
# Keys and secrets get the mode they have when deployed (0640 with ferry's group, as the
# systemd unit says; a Kubernetes secret volume is 0440): check warns key-group-readable for
# them and calls nothing an error.  45-layouts runs the same configs with real owners.
# timeout: 120
source "$(dirname "$0")/lib.sh"

W=$T/work
CA=$T/ca
ISS=$T/issued
mkdir -p "$W" "$ISS"
ferry_cmd certs init-ca --dir "$CA" --name "examples CA" >"$T/init-ca.log" 2>&1 ||
    { cat "$T/init-ca.log" >&2; fail "certs init-ca"; }

# ---- the configurations: NAME SOURCE ----
configs=()
for f in "$FERRY_SRC"/deploy/examples/*.yaml; do
    configs+=("examples-$(basename "$f" .yaml)" "$f")
done
[ "${#configs[@]}" -ge 8 ] || fail "expected at least 4 files in deploy/examples, found $((${#configs[@]} / 2))"
configs+=(ferry.example "$FERRY_SRC/deploy/ferry.example.yaml")
configs+=(docker-site-a "$FERRY_SRC/deploy/docker/site-a.yaml")
configs+=(docker-site-b "$FERRY_SRC/deploy/docker/site-b.yaml")

# The ConfigMap's "ferry.yaml: |" block scalar: its lines indented deeper than the key, dedented.
k8s=$W/k8s-sidecar.src.yaml
k8s_configmap_yaml "$k8s"
configs+=(k8s-sidecar "$k8s")

# issue STEM: a node certificate for STEM (NAME.crt/NAME.key), once; prints its directory.
issue() {
    local stem=$1 cn=$1
    [[ $cn == *.* ]] || cn=$cn.example.org
    if [ ! -d "$ISS/$stem" ]; then
        ferry_cmd certs issue --ca "$CA" --name "$cn" --out "$ISS/$stem.tmp" >"$T/issue-$stem.log" 2>&1 ||
            { cat "$T/issue-$stem.log" >&2; fail "certs issue $cn"; }
        mv "$ISS/$stem.tmp/$cn.crt" "$ISS/$stem.tmp/node.crt"
        mv "$ISS/$stem.tmp/$cn.key" "$ISS/$stem.tmp/node.key"
        mv "$ISS/$stem.tmp" "$ISS/$stem"
    fi
    echo "$ISS/$stem"
}

# make_file PATH: create what the config expects at PATH, judged by its name.
make_file() {
    local f=$1 b d
    b=$(basename "$f")
    mkdir -p "$(dirname "$f")"
    case "$b" in
    ca.crt) cp "$CA/ca.crt" "$f" ;;
    *.crt) d=$(issue "${b%.crt}") && cp "$d/node.crt" "$f" ;;
    *.key) d=$(issue "${b%.key}") && cp "$d/node.key" "$f" && chmod 640 "$f" ;;
    *) printf 'secret-for-%s\n' "$b" >"$f" && chmod 640 "$f" ;; # passphrase, proxy-auth secret
    esac
}

# check_json NAME CONFIG: `ferry check -c CONFIG --json` into $W/NAME.json; prints the exit code.
check_json() {
    local rc=0
    ferry_cmd check -c "$2" --json >"$W/$1.json" 2>"$W/$1.err" || rc=$?
    echo "$rc"
}

n=0
for ((i = 0; i < ${#configs[@]}; i += 2)); do
    name=${configs[i]}
    src=${configs[i + 1]}

    # As shipped: valid YAML and schema; the only errors are files missing on this machine.
    rc=$(check_json "$name.orig" "$src")
    python3 - "$W/$name.orig.json" "$rc" <<'PY' || { cat "$W/$name.orig.json" "$W/$name.orig.err" >&2; fail "$name as shipped: errors other than file-missing"; }
import json, sys
d = json.load(open(sys.argv[1]))
bad = [f for f in d["findings"] if f["severity"] == "error" and f["id"] != "file-missing"]
assert not bad, bad
assert sys.argv[2] in ("0", "1"), "exit " + sys.argv[2]
PY

    # Every /etc/ferry/ path in a value (comments aside) made real under $W/NAME/.
    dir=$W/$name
    mkdir -p "$dir"
    paths=$(sed 's/#.*//' "$src" | grep -oE '/etc/ferry/[A-Za-z0-9._/-]+' | sort -u || true)
    [ -n "$paths" ] || fail "$name: no /etc/ferry/ path found"
    for p in $paths; do
        make_file "$dir/${p#/etc/ferry/}"
    done
    sed "s#/etc/ferry/#$dir/#g" "$src" >"$dir/ferry.yaml"

    rc=$(check_json "$name" "$dir/ferry.yaml")
    python3 - "$W/$name.json" <<'PY' || { cat "$W/$name.json" "$W/$name.err" >&2; fail "$name: ferry check found errors"; }
import json, sys
d = json.load(open(sys.argv[1]))
errs = [f for f in d["findings"] if f["severity"] == "error"]
assert d["errors"] == 0 and not errs, errs
assert d["listeners"] >= 1, d
# The deployed 0640 keys are seen as they are: a warning, never a refusal.
assert any(f["id"] == "key-group-readable" for f in d["findings"]), d["findings"]
PY
    [ "$rc" = 0 ] || { cat "$W/$name.err" >&2; fail "$name: ferry check exit $rc, expected 0"; }
    warns=$(python3 -c "import json,sys; print(' '.join(sorted({f['id'] for f in json.load(open(sys.argv[1]))['findings']})) or 'none')" "$W/$name.json")
    pass "$name: ferry check exit 0 (warnings: $warns)"
    n=$((n + 1))
done
pass "$n shipped configurations pass ferry check"
