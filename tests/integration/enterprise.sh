# enterprise.sh: a corporate PKI made the way an enterprise makes one, with `openssl ca`
# and keys on disk: a root CA and an issuing CA under it, each with its own database and
# CRL. Source after lib.sh.
#
#   ent_pki DIR [OCSP_URL]   DIR/root and DIR/issuing; with OCSP_URL the certificates
#                            the issuing CA signs name that responder in their AIA.
#                            DIR/bundle.pem: issuing + root; DIR/crls.pem: both CRLs
#   ent_issue DIR NAME [URI [CN]]
#                            DIR/agents/NAME/{key,cert}.pem from the issuing CA, SAN URI
#                            (default spiffe://corp.example/agent/NAME), subject
#                            O=Example Corp, CN (default NAME); chain.pem = leaf+issuing
#   ent_dn FILE              the certificate's subject DN in RFC 4514 (what the
#                            identity map's "subject" and "issuer" take)
#   ent_revoke DIR NAME      revoke NAME in the issuing CA's database (OCSP answers so at
#                            once; the CRL says so after ent_crls)
#   ent_crls DIR             regenerate both CRLs and DIR/crls.pem

_ent_conf() {
	local dir=$1 ocsp=${2:-}
	cat >"$dir/openssl.cnf" <<EOF
[ ca ]
default_ca = ent
[ ent ]
dir = $dir
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
certificate = \$dir/ca.pem
private_key = \$dir/ca.key
serial = \$dir/serial
crlnumber = \$dir/crlnumber
default_md = sha256
default_days = 2
default_crl_days = 7
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
organizationName = optional
[ issuing_ext ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ agent_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = \${ENV::ENT_SAN}
authorityKeyIdentifier = keyid
EOF
	if [ -n "$ocsp" ]; then
		echo "authorityInfoAccess = OCSP;URI:$ocsp" >>"$dir/openssl.cnf"
	fi
}

_ent_db() {
	mkdir -p "$1/newcerts"
	: >"$1/index.txt"
	echo 2000 >"$1/serial"
	echo 01 >"$1/crlnumber"
}

ent_pki() {
	local dir=$1 ocsp=${2:-}
	mkdir -p "$dir/root" "$dir/issuing" "$dir/agents"
	_ent_db "$dir/root"
	_ent_db "$dir/issuing"
	_ent_conf "$dir/root"
	_ent_conf "$dir/issuing" "$ocsp"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$dir/root/ca.key" -out "$dir/root/ca.pem" -days 30 \
	    -subj "/O=Example Corp/CN=Example Corp Root CA" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$dir/issuing/ca.key" -out "$dir/issuing/ca.csr" \
	    -subj "/O=Example Corp/CN=Example Corp Issuing CA 1" 2>/dev/null || return 1
	ENT_SAN=DNS:x openssl ca -batch -config "$dir/root/openssl.cnf" -extensions issuing_ext \
	    -days 20 -in "$dir/issuing/ca.csr" -out "$dir/issuing/ca.pem" -notext \
	    2>/dev/null || return 1
	cat "$dir/issuing/ca.pem" "$dir/root/ca.pem" >"$dir/bundle.pem"
	ent_crls "$dir"
}

ent_crls() {
	local dir=$1 l
	for l in root issuing; do
		ENT_SAN=DNS:x openssl ca -batch -config "$dir/$l/openssl.cnf" -gencrl \
		    -out "$dir/$l/crl.pem.tmp" 2>/dev/null || return 1
		mv "$dir/$l/crl.pem.tmp" "$dir/$l/crl.pem"
	done
	cat "$dir/issuing/crl.pem" "$dir/root/crl.pem" >"$dir/crls.pem.tmp"
	mv "$dir/crls.pem.tmp" "$dir/crls.pem"
}

ent_issue() {
	local dir=$1 name=$2 a=$1/agents/$2 uri=${3:-spiffe://corp.example/agent/$2} cn=${4:-$2}
	mkdir -p "$a"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$a/key.pem" \
	    -out "$a/req.pem" -subj "/O=Example Corp/CN=$cn" 2>/dev/null || return 1
	ENT_SAN="URI:$uri" openssl ca -batch \
	    -config "$dir/issuing/openssl.cnf" -extensions agent_ext -days 1 \
	    -in "$a/req.pem" -out "$a/cert.pem" -notext 2>/dev/null || return 1
	cat "$a/cert.pem" "$dir/issuing/ca.pem" >"$a/chain.pem"
}

ent_revoke() {
	local dir=$1 name=$2
	ENT_SAN=DNS:x openssl ca -batch -config "$dir/issuing/openssl.cnf" \
	    -revoke "$dir/agents/$name/cert.pem" 2>/dev/null || return 1
}

ent_dn() {
	openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'
}
