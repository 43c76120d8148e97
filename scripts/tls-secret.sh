#!/usr/bin/env bash
# Make a self-signed TLS pair for the Ingress experiments, and the kubernetes.io/tls Secret
# that carries it (what `kubectl create secret tls` writes), with the openssl command.
#   scripts/tls-secret.sh NAME HOST [HOST ...] [-o DIR] [-n NAMESPACE]
# writes DIR (default out/tls) /
#   ca.crt       a throwaway CA, to verify with: netlab requests ... --cacert DIR/ca.crt, curl --cacert
#   NAME.crt     the server certificate for HOST... (SANs), signed by that CA
#   NAME.key     its key
#   NAME.yaml    a v1 Secret of type kubernetes.io/tls: netlab apply LAB -f DIR/NAME.yaml
# Every run makes a new CA: apply the Secret and use the ca.crt of the same run.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
OUT=out/tls
NAMESPACE=default
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o) OUT="$2"; shift 2 ;;
    -n) NAMESPACE="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) echo "tls-secret.sh: unknown option $1" >&2; usage 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[ ${#ARGS[@]} -ge 2 ] || usage 2
NAME=${ARGS[0]}
HOSTS=("${ARGS[@]:1}")
command -v openssl >/dev/null || { echo "tls-secret.sh: needs openssl (apt install openssl)" >&2; exit 3; }
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

SANS=$(printf 'DNS:%s,' "${HOSTS[@]}")
SANS=${SANS%,}
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/O=netlab/CN=netlab example CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$TMP/ca.key" -out "$OUT/ca.crt" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -subj "/O=netlab/CN=${HOSTS[0]}" -keyout "$OUT/$NAME.key" -out "$TMP/req.csr" 2>/dev/null
cat > "$TMP/ext.cnf" <<EXT
subjectAltName=$SANS
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in "$TMP/req.csr" -CA "$OUT/ca.crt" -CAkey "$TMP/ca.key" -CAcreateserial -CAserial "$TMP/ca.srl" \
  -days 30 -extfile "$TMP/ext.cnf" -out "$OUT/$NAME.crt" 2>/dev/null
chmod 600 "$OUT/$NAME.key"
cat > "$OUT/$NAME.yaml" <<YAML
# made by scripts/tls-secret.sh for ${HOSTS[*]} (CA: $OUT/ca.crt)
apiVersion: v1
kind: Secret
metadata:
  name: $NAME
  namespace: $NAMESPACE
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 < "$OUT/$NAME.crt")
  tls.key: $(base64 -w0 < "$OUT/$NAME.key")
YAML
echo "wrote $OUT/ca.crt, $OUT/$NAME.crt, $OUT/$NAME.key and the Secret $OUT/$NAME.yaml (${HOSTS[*]})"
