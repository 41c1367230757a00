#!/bin/sh
# Demo health check: the booted slot's rootfs must say "ok" in /etc/ota/health.
# The updater passes the slot's devices as OTA_SLOT_<IMAGE>; a real device would instead
# check its own services (network up, web UI answering, ...).
verdict=$(debugfs -R 'cat /etc/ota/health' "$OTA_SLOT_ROOTFS" 2>/dev/null)
if [ "$verdict" = "ok" ]; then
  echo "slot $OTA_SLOT ($OTA_VERSION): healthy"
  exit 0
fi
echo "slot $OTA_SLOT ($OTA_VERSION): /etc/ota/health says '${verdict:-nothing}'"
exit 1
