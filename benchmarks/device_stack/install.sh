#!/usr/bin/env bash
# Device side, the last run of a carry: join the parts, check the tarball's sha256, unpack into $SITE (default
# /tmp/site). Then in the same command: export PYTHONPATH=/tmp/site:$PWD  (the repository for bioreview_assets).
# A part missing (the machine went cold between runs) fails here with the list of parts found.
set -euo pipefail
cd "$(dirname "$0")/../.."
SITE=${SITE:-/tmp/site}
if [ -f "$SITE/.stack.sha256" ] && cmp -s "$SITE/.stack.sha256" .device_stack/part-00.d/stack.sha256 2>/dev/null; then
    echo "device_stack: $SITE already holds this stack"; exit 0
fi
# A later run on the same warm machine may come after the tree's ignored parts were dropped (they are kept 30 s):
# /tmp outlives them, so a stack unpacked there by an earlier run of this lease is used as it is.
if [ -f "$SITE/.stack.sha256" ] && [ ! -e .device_stack/part-00.d/stack.sha256 ]; then
    echo "device_stack: no parts in this run; $SITE holds the stack an earlier run unpacked ($(cut -c1-12 "$SITE/.stack.sha256"))"
    exit 0
fi
parts=$(ls .device_stack/part-*.d/part-* 2>/dev/null | sort)
[ -n "$parts" ] || { echo "device_stack: no parts under .device_stack/ (was the machine cold?)"; exit 1; }
expected=$(awk '{print $1}' .device_stack/part-00.d/stack.sha256)
actual=$(cat $parts | sha256sum | awk '{print $1}')
if [ "$expected" != "$actual" ]; then
    echo "device_stack: sha256 mismatch: a part is missing or cut. Parts here:"; ls -l $parts; exit 1
fi
rm -rf "$SITE"; mkdir -p "$SITE"
cat $parts | xz -d -T0 | tar -x -C "$(dirname "$SITE")" --transform "s,^site,$(basename "$SITE"),"
cp .device_stack/part-00.d/stack.sha256 "$SITE/.stack.sha256"
echo "device_stack: unpacked $(du -sh "$SITE" | cut -f1) into $SITE"
