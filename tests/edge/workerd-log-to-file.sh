#!/bin/sh
# workerd with its standard output (the worker's log lines) appended to $EDGE_LOG_FILE instead of
# a pipe that Miniflare's Node process reads and prints again. tests/edge/serve.mjs points
# Miniflare here (MINIFLARE_WORKERD_PATH) when EDGE_LOG_FILE is set: the benchmark keeps every
# log line the worker writes, without measuring a relay no deployed worker has.
exec "$EDGE_REAL_WORKERD" "$@" >>"$EDGE_LOG_FILE"
