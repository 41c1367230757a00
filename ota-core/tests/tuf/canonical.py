"""Reads a JSON array from stdin and prints, one line per element, the hex of the canonical JSON
bytes securesystemslib produces for it (the encoder python-tuf's CanonicalJSONSerializer uses)."""
import json
import sys

from securesystemslib.formats import encode_canonical

for value in json.load(sys.stdin):
    print(encode_canonical(value).encode("utf-8").hex())
