#!/usr/bin/python3
"""Independent check of a RustBalance descriptor with stem (Debian python3-stem).

usage: stem_check.py ONION_ADDRESS DESCRIPTOR_FILE EXPECTED_INTRO_POINTS

Decrypts the descriptor from the onion address alone, checks the outer
signature and the descriptor-signing-key certificate, and checks that every
intro point's auth-key and enc-key certificate is signed by the
descriptor-signing key. Prints a JSON summary; exits non-zero on any failure.
"""
import json
import sys

import stem.descriptor.hidden_service as hs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def verify(cert, key):
    if cert.signing_key() != key:
        raise SystemExit("certificate not signed by the descriptor-signing key")
    Ed25519PublicKey.from_public_bytes(key).verify(cert.signature, cert.pack()[:-64])


def main():
    addr, path, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = open(path).read()
    desc = hs.HiddenServiceDescriptorV3.from_str(text, validate=True)
    blinded = desc.signing_cert.signing_key()
    desc_key = desc.signing_cert.key
    # The signing cert itself is signed by the blinded key.
    verify(desc.signing_cert, blinded)
    inner = desc.decrypt(addr)
    ips = inner.introduction_points
    if len(ips) != expected:
        raise SystemExit(f"expected {expected} intro points, stem found {len(ips)}")
    for ip in ips:
        verify(ip.auth_key_cert, desc_key)
        verify(ip.enc_key_cert, desc_key)
    print(json.dumps({
        "intro_points": len(ips),
        "revision_counter": desc.revision_counter,
        "lifetime": desc.lifetime,
        "unrecognized_inner_lines": inner.get_unrecognized_lines(),
    }))


if __name__ == "__main__":
    main()
