#!/bin/sh
# health-check.example.sh -- an example [health_check] command for `ota-update boot` on a
# systemd system: the trial boot is healthy when the boot finished, no unit failed and the
# default target is active. Copy it, add your product's own checks at the end, and set
#
#   [health_check]
#   command = ["/usr/libexec/acme/health-check"]
#   timeout_secs = 300        # longer than the slowest boot: the wait below is part of it
#
# It waits for the end of the boot with `systemctl is-system-running --wait`. That cannot
# deadlock with the shipped ota-boot.service (Type=exec, docs/updater.md "systemd
# integration"): its start job is already over while this runs, so the job queue it waits for
# can drain. Under a Type=oneshot unit in the boot transaction it would wait for itself until
# timeout_secs and fail every release.
#
# OTA_HEALTH_IGNORE_UNITS: space-separated units whose failure is not the release's fault
# (e.g. "systemd-networkd-wait-online.service" when a device may boot without its network).
# Output goes to state_dir/health.log; exit status 0 = healthy.
set -u

ignore=" ${OTA_HEALTH_IGNORE_UNITS:-} "

state=$(systemctl is-system-running --wait 2>/dev/null)
echo "system state: ${state:-unknown}"
case "$state" in
running) ;;
degraded)
    failed=""
    for unit in $(systemctl list-units --state=failed --plain --no-legend --no-pager |
        while read -r name _; do echo "$name"; done); do
        case "$ignore" in
        *" $unit "*) echo "ignored failed unit: $unit" ;;
        *) failed="$failed $unit" ;;
        esac
    done
    if [ -n "$failed" ]; then
        echo "failed units:$failed"
        exit 1
    fi
    ;;
*)
    echo "the system did not finish booting"
    exit 1
    ;;
esac

target=$(systemctl get-default)
if ! systemctl is-active --quiet "$target"; then
    echo "the default target $target is not active"
    exit 1
fi

# Product checks go here, e.g.:
#   curl --fail --silent --max-time 10 http://127.0.0.1/ >/dev/null || { echo "web UI down"; exit 1; }

echo "healthy: $target reached, no failed unit"
exit 0
