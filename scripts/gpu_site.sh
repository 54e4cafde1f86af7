# Source this on an offline GPU machine: unpacks the carried Python packages into one site folder and puts it on
# the path.  Usage:  source scripts/gpu_site.sh   (SITE defaults to /tmp/site)
#
# Archives read, where present: .carry/fa4/fa4-site.tar.xz (scripts/fa4_pack.sh: flash-attn 4 and the CuTe DSL)
# and .carry/fa2/flash-attn-site.tar.xz (scripts/flash_attn_build_offline.sh build: flash-attn 2). Both go into
# one folder on purpose: flash-attn 2 is the regular package flash_attn and flash-attn 4 adds flash_attn/cute;
# in two folders Python would look for flash_attn.cute only inside flash-attn 2's folder.
# The CuTe DSL's .pth file is not read for PYTHONPATH entries, so its dsl_packages folder goes on the path here.
# flash-attn 4's archive and the working tree may not fit one 64 MiB carry: then split it here
# (cd .carry/fa4p && split -b 30M -a 1 ../fa4/fa4-site.tar.xz ""), carry part a in one call that copies it to /tmp
# (cp .carry/fa4p/a /tmp/fa4-part-a), and part b (carry .carry/fa4p/b) in the next call, made at once after it on
# the same, still warm machine: the parts are joined here into .carry/fa4/fa4-site.tar.xz.
SITE=${SITE:-/tmp/site}
mkdir -p "$SITE"
if [ ! -f .carry/fa4/fa4-site.tar.xz ]; then
  part_a=$(ls /tmp/fa4-part-a .carry/fa4p/a 2>/dev/null | head -1)
  part_b=$(ls /tmp/fa4-part-b .carry/fa4p/b 2>/dev/null | head -1)
  if [ -n "$part_a" ] && [ -n "$part_b" ]; then
    mkdir -p .carry/fa4 && cat "$part_a" "$part_b" > .carry/fa4/fa4-site.tar.xz
    echo "gpu_site: joined $part_a and $part_b (sha256 $(sha256sum .carry/fa4/fa4-site.tar.xz | cut -c1-16))"
  else
    echo "gpu_site: no flash-attn 4 archive (parts found: ${part_a:-no a} ${part_b:-no b})"
  fi
fi
for archive in .carry/fa4/fa4-site.tar.xz .carry/fa2/flash-attn-site.tar.xz "$@"; do
  if [ -f "$archive" ]; then
    tar -C "$SITE" -xJf "$archive" && echo "gpu_site: unpacked $archive into $SITE"
  fi
done
export PYTHONPATH="$SITE:$SITE/nvidia_cutlass_dsl/dsl_packages${PYTHONPATH:+:$PYTHONPATH}"
export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1  # flash-attn 4 keeps JIT-compiled kernels on disk across processes
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/gpu_plugins.sh"  # the pytest plugins, where attnconf is not installed
