#!/usr/bin/env python3
"""adainfer-protocol(7) and proto/proto.h agree key for key.

Every key the man page documents (its .Fa arguments) must be a PROTO_K_*
string in proto.h, and every PROTO_K_* key must be documented by the page
(as .Fa), so neither can grow a key the other lacks. The daemon and the
client pack keys through these names, so the page is what goes on the wire.

  protokeys.py MANPAGE PROTO_H
"""
import re
import sys

man_path, header_path = sys.argv[1], sys.argv[2]
man = open(man_path).read()
# the envelope's parts are positions in an array, not keys
ENVELOPE = {"method", "params", "error", "result"}
doc = set(re.findall(r"^\.(?:It )?Fa (\w+)", man, re.M)) - ENVELOPE
header = open(header_path).read()
keys = set(re.findall(r'#define PROTO_K_\w+\s+"(\w+)"', header))
bad = 0
for k in sorted(doc - keys):
    print("FAIL documented in %s, no PROTO_K_* in proto.h: %s" % (man_path, k))
    bad += 1
for k in sorted(keys - doc):
    print("FAIL PROTO_K_* in proto.h, not documented (.Fa) in %s: %s" % (man_path, k))
    bad += 1
print("%d keys documented, %d in proto.h, %d disagreements" % (len(doc), len(keys), bad))
sys.exit(1 if bad else 0)
