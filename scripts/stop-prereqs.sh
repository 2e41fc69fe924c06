#!/usr/bin/env bash
# Stops what scripts/prereqs.sh started (and nothing else).
state=${LOCKBOX_PREREQ_STATE:-/tmp/lockbox-prereqs}
if [ -f "$state/dockerd.pid" ]; then
  pid=$(cat "$state/dockerd.pid")
  kill "$pid" 2>/dev/null && for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  rm -f "$state/dockerd.pid"
fi
