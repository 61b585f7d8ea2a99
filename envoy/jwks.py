#!/usr/bin/env python3
"""Prints the JWKS (RFC 7517) of an RSA private key's public half, for Envoy's jwt_authn.

Standard library only: `openssl rsa -text` gives the modulus and the public exponent; they are
written big-endian, base64url without padding (RFC 7518, section 6.3.1), as one RS256 key.

    python3 envoy/jwks.py --kid inferguard-test certs/jwt.key > certs/jwks.json
"""
import argparse
import base64
import json
import re
import subprocess


def b64url_uint(n: int) -> str:
    raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_numbers(key_file: str):
    """(modulus, exponent) of an RSA key in PEM, read with the openssl command line."""
    text = subprocess.run(["openssl", "rsa", "-in", key_file, "-noout", "-text"], check=True,
                          capture_output=True, text=True).stdout
    m = re.search(r"^modulus:\s*\n((?:\s+[0-9a-f:]+\n)+)", text, re.M | re.I)
    e = re.search(r"^publicExponent:\s*(\d+)", text, re.M | re.I)
    if not m or not e:
        raise SystemExit(f"jwks.py: no RSA modulus/exponent in `openssl rsa -text` of {key_file}")
    modulus = int(re.sub(r"[\s:]", "", m.group(1)), 16)
    return modulus, int(e.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kid", required=True, help="key id, matched against the token header's kid")
    p.add_argument("key", help="RSA private key (PEM)")
    a = p.parse_args()
    n, e = public_numbers(a.key)
    if n.bit_length() < 2048:
        raise SystemExit(f"jwks.py: {a.key} is a {n.bit_length()}-bit key; RS256 wants at least 2048")
    jwk = {"kty": "RSA", "kid": a.kid, "use": "sig", "alg": "RS256", "n": b64url_uint(n), "e": b64url_uint(e)}
    print(json.dumps({"keys": [jwk]}, indent=2))


if __name__ == "__main__":
    main()
