#!/bin/sh
# Builds bench/tlsload/tlsload from tlsload.cpp (needs g++ and OpenSSL's headers: Debian
# `apt-get install g++ libssl-dev`). bench/run.py runs this when the binary is missing or older
# than the source.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec g++ -O2 -std=c++17 -Wall -Wextra -o "$here/tlsload" "$here/tlsload.cpp" -lssl -lcrypto
