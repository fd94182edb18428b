#!/bin/sh
# Entrypoint guard of every TweetOps container: refuse to start while any environment variable
# still holds a placeholder from .env.example (every one of them contains CHANGE-ME), then run the
# container's own command. POSIX sh, so it works in every image (busybox, Debian, UBI).
set -eu
placeholders=$(env | grep -e '=.*CHANGE-ME' | cut -d= -f1 | sort | tr '\n' ' ' || true)
if [ -n "$placeholders" ]; then
    echo "refusing to start: replace the CHANGE-ME values in .env first (see .env.example): $placeholders" >&2
    exit 78
fi
exec "$@"
