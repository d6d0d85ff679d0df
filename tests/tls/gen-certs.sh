#!/bin/sh
# gen-certs.sh DIR - make the throw-away PKI that tests/tls uses, in DIR.
#
# Everything is generated at run time, so no private key is ever committed.
# `openssl ca` is used because it can set exact validity dates (an expired
# broker certificate, dates in the future); `moat pki` will replace it.
#
#   ca.pem          test CA                      2024-01-01 .. 2037-01-01
#   other-ca.pem    a CA the client does not trust, and the broker does not
#   broker.pem      EC P-256, SAN localhost, 127.0.0.1, ::1   2024-06-01 .. 2035-01-01
#   broker-expired.pem  same key and names, notAfter 2025-02-23
#   broker-rsa.pem  RSA 2048, same names (for the ECDHE-RSA suites)
#   device.pem      CN moat-dev-1, clientAuth    2024-02-01 .. 2036-01-01
#                   also device.der / device.key.der, and device-enc.key
#                   (device.key encrypted with the password "s3cret")
#   rogue.pem       CN moat-dev-2 signed by other-ca (the broker refuses it)
#   other.key       a key that matches no certificate
set -eu
dir=$1
umask 077
CA_NAME=unused
export CA_NAME
mkdir -p "$dir"
cd "$dir"

cat > openssl.cnf <<'CNF'
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = .
database = $dir/$ENV::CA_NAME/index.txt
new_certs_dir = $dir/$ENV::CA_NAME
serial = $dir/$ENV::CA_NAME/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_any ]
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_server ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1

[ v3_client ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

eckey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign CA_NAME SUBJECT_CN KEY OUT EXT START END [selfsign]
sign() {
    ca=$1 cn=$2 key=$3 out=$4 ext=$5 start=$6 end=$7
    openssl req -new -config openssl.cnf -key "$key" -subj "/CN=$cn" -out "$out.csr"
    if [ "$ca" = self ]; then
        name=${out%.pem}
        mkdir -p "$name"
        : > "$name/index.txt"
        echo 1000 > "$name/serial"
        CA_NAME=$name openssl ca -batch -config openssl.cnf -selfsign -keyfile "$key" \
            -in "$out.csr" -out "$out" -extensions "$ext" -notext \
            -startdate "$start" -enddate "$end" 2>/dev/null
    else
        CA_NAME=${ca%.pem} openssl ca -batch -config openssl.cnf -cert "$ca" \
            -keyfile "${ca%.pem}.key" -in "$out.csr" -out "$out" -extensions "$ext" \
            -notext -startdate "$start" -enddate "$end" 2>/dev/null
    fi
    rm -f "$out.csr"
}

eckey ca.key
sign self "moat test CA" ca.key ca.pem v3_ca 20240101000000Z 20370101000000Z
eckey other-ca.key
sign self "other CA" other-ca.key other-ca.pem v3_ca 20240101000000Z 20370101000000Z

eckey broker.key
sign ca.pem broker broker.key broker.pem v3_server 20240601000000Z 20350101000000Z
sign ca.pem broker broker.key broker-expired.pem v3_server 20240601000000Z 20250223000000Z
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out broker-rsa.key 2>/dev/null
sign ca.pem broker-rsa broker-rsa.key broker-rsa.pem v3_server 20240601000000Z 20350101000000Z

eckey device.key
sign ca.pem moat-dev-1 device.key device.pem v3_client 20240201000000Z 20360101000000Z
openssl x509 -in device.pem -outform DER -out device.der
openssl pkey -in device.key -outform DER -out device.key.der
openssl pkey -in device.key -traditional -aes-256-cbc -passout pass:s3cret -out device-enc.key

eckey rogue.key
sign other-ca.pem moat-dev-2 rogue.key rogue.pem v3_client 20240601000000Z 20360101000000Z

eckey other.key
chmod 0644 ./*.pem ./*.der
