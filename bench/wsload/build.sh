#!/bin/sh
# Builds bench/wsload/wsload from wsload.cpp (needs g++ and OpenSSL's headers, for SHA-1 and
# base64 only: Debian `apt-get install g++ libssl-dev`). bench/run.py runs this when the binary is
# missing or older than the source.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec g++ -O2 -std=c++20 -Wall -Wextra -o "$here/wsload" "$here/wsload.cpp" -lcrypto
