#!/usr/bin/env bash
# Install PoCL, an OpenCL implementation that runs on the CPU, so that the OpenCL (Mali/Adreno)
# kernels of schedules/ can be run and checked on a machine without a GPU.
#
#   sudo bash scripts/install-pocl.sh
#
# Debian packages: pocl-opencl-icd (the PoCL driver) and ocl-icd-libopencl1 (the OpenCL loader).
# PyPI: pyopencl (in the project's `test` extra) launches the generated kernels.
set -euo pipefail
if [ -e /etc/OpenCL/vendors/pocl.icd ]; then
    echo "PoCL is already installed"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq pocl-opencl-icd ocl-icd-libopencl1
echo "PoCL installed"
