#!/usr/bin/env bash
# Install Fashion-MNIST (70,000 28x28 clothing images, 10 classes) from Debian's
# dataset-fashion-mnist package: the IDX files land in /usr/share/datasets/fashion-mnist/ and
# tvm_sparse.data.load_fashion_mnist reads them (no download from the program itself).
#
#   sudo bash scripts/install-fashion-mnist.sh
set -euo pipefail
folder=/usr/share/datasets/fashion-mnist
if [ -e "$folder/t10k-labels-idx1-ubyte.gz" ]; then
    echo "Fashion-MNIST is already installed in $folder"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install-fashion-mnist.sh: apt-get is not available; put the four IDX files of Fashion-MNIST in a folder" \
         "and pass it to tvm_sparse.data.load_fashion_mnist(folder)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-fashion-mnist.sh: run it as root (it installs the Debian package dataset-fashion-mnist)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq dataset-fashion-mnist
echo "Fashion-MNIST installed in $folder"
