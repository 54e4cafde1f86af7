# Source this on an offline GPU machine: unpacks the carried Python packages into one site folder and puts it on
# the path.  Usage:  source scripts/gpu_site.sh   (SITE defaults to /tmp/site)
#
# Archives read, where present: .carry/fa4/fa4-site.tar.xz (scripts/fa4_pack.sh: flash-attn 4 and the CuTe DSL)
# and .carry/fa2/flash-attn-site.tar.xz (scripts/flash_attn_build_offline.sh build: flash-attn 2). Both go into
# one folder on purpose: flash-attn 2 is the regular package flash_attn and flash-attn 4 adds flash_attn/cute;
# in two folders Python would look for flash_attn.cute only inside flash-attn 2's folder.
# The CuTe DSL's .pth file is not read for PYTHONPATH entries, so its dsl_packages folder goes on the path here.
SITE=${SITE:-/tmp/site}
mkdir -p "$SITE"
for archive in .carry/fa4/fa4-site.tar.xz .carry/fa2/flash-attn-site.tar.xz "$@"; do
  if [ -f "$archive" ]; then
    tar -C "$SITE" -xJf "$archive" && echo "gpu_site: unpacked $archive into $SITE"
  fi
done
export PYTHONPATH="$SITE:$SITE/nvidia_cutlass_dsl/dsl_packages${PYTHONPATH:+:$PYTHONPATH}"
export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1  # flash-attn 4 keeps JIT-compiled kernels on disk across processes
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/gpu_plugins.sh"  # the pytest plugins, where attnconf is not installed
