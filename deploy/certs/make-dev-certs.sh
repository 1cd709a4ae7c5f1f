#!/usr/bin/env bash
# A local CA and the certificates deploy/compose.yaml mounts from this folder, for a laptop
# or a trial only: in production, certificates come from your CA (and Kubernetes Secrets,
# deploy/kubernetes/transport.yaml). Idempotent: keeps what exists; `--force` makes all anew.
#   ca.crt                 the CA every client and server trusts
#   kafka.pem              Kafka's key and certificate (SAN kafka, localhost): a PEM keystore
#   redis.crt, redis.key   Redis's certificate (SAN redis, localhost) and key
#   client.crt, client.key the services' client certificate (Redis asks for one)
# The files are world-readable (0644) because the containers read them as their own users
# (Kafka's appuser, redis, the services' 10001); ca.key stays 0600 and is never mounted by
# anything but this script's next run. Keep this folder out of version control.
set -euo pipefail
cd "$(dirname "$0")"
if [[ "${1:-}" == "--force" ]]; then rm -f ./*.crt ./*.key ./*.pem ./*.srl; fi
if [[ -f ca.crt && -f kafka.pem && -f redis.crt && -f client.crt ]]; then
  echo "certificates exist in $(pwd); --force to make new ones"; exit 0
fi
days=825
umask 022
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
  -days "$days" -subj "/CN=complaints dev CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
chmod 600 ca.key
leaf() {  # name, subject CN, extendedKeyUsage, subjectAltName (or "")
  local name=$1 cn=$2 eku=$3 san=$4 ext
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
  ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku"
  [[ -n "$san" ]] && ext+=$'\n'"subjectAltName=$san"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile <(printf '%s\n' "$ext") -out "$name.crt" 2>/dev/null
  rm -f "$name.csr"
  chmod 644 "$name.key" "$name.crt"
}
leaf kafka kafka serverAuth "DNS:kafka,DNS:localhost"
leaf redis redis serverAuth "DNS:redis,DNS:localhost"
leaf client complaints clientAuth ""
cat kafka.key kafka.crt > kafka.pem && chmod 644 kafka.pem && rm -f kafka.key
echo "made ca.crt, kafka.pem, redis.crt/.key, client.crt/.key in $(pwd)"
