#!/bin/sh
# Health check of the QEMU test device: the booted release's root filesystem (mounted by /init
# at /rootfs) must say "ok" in /etc/ota/health. A real device checks its services instead.
verdict=$(cat /rootfs/etc/ota/health 2>/dev/null)
if [ "$verdict" = "ok" ]; then
  echo "slot $OTA_SLOT ($OTA_VERSION): healthy"
  exit 0
fi
echo "slot $OTA_SLOT ($OTA_VERSION): /etc/ota/health says '${verdict:-nothing}'"
exit 1
