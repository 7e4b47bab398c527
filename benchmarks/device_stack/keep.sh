#!/usr/bin/env bash
# Device side, runs 1..N-1 of a carry: the part this run brought stays in the (ignored) .device_stack/ folder of
# the warm machine's working tree; this only lists what has arrived so far, so a missed 30 s window shows at once.
cd "$(dirname "$0")/../.." && ls -l .device_stack/part-*.d/ 2>/dev/null | grep part- || echo "no parts here yet"
