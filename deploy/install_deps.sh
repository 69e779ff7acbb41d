#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs to build, run and test.
# Only installs what is missing; safe to run again. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  clang clang-tidy libclang-rt-14-dev
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev grpc-proto
  libabsl-dev librocksdb-dev libicu-dev
  libssl-dev nlohmann-json3-dev libcpp-httplib-dev libcurl4-openssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libkainjow-mustache-dev
  python3 python3-grpcio python3-protobuf python3-aiosmtpd
  tzdata
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "Installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
