#!/bin/sh
# Container entry of the Key Vault emulator (docker-compose.yml, local profile): makes a self-signed
# certificate into the shared /certs volume at first start, then serves HTTPS on 8443.
set -eu
CERTS=${CERTS_DIR:-/certs}
if [ ! -f "$CERTS/cert.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" -days 825 \
    -subj "/CN=keyvault-emulator" -addext "subjectAltName=DNS:keyvault-emulator,DNS:localhost" 2>/dev/null
fi
exec /src/node_modules/.bin/tsx /src/stack/keyvault-emulator/main.ts --host 0.0.0.0 --port 8443 \
  --cert "$CERTS/cert.pem" --key "$CERTS/key.pem" --state "$CERTS/state.json"
