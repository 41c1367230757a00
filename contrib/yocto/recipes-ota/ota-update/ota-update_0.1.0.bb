SUMMARY = "ota-update: A/B firmware updates with trial boot and fallback"
DESCRIPTION = "Installs signed bundles into the inactive A/B slot, commits them after a \
healthy trial boot, falls back otherwise, and polls a TUF repository."
LICENSE = "CLOSED"

# The static binaries and kit from scripts/dist.sh (one tarball per target).
OTA_TARGET:aarch64 = "aarch64-unknown-linux-musl"
OTA_TARGET:x86-64 = "x86_64-unknown-linux-musl"
SRC_URI = "https://downloads.example.com/ota/ota-${PV}-${OTA_TARGET}.tar.gz;subdir=dist \
           file://updater.toml \
           file://release.pub \
           file://root.json \
"
SRC_URI[sha256sum] = "0000000000000000000000000000000000000000000000000000000000000000"
S = "${WORKDIR}/dist/ota-${PV}-${OTA_TARGET}"
COMPATIBLE_HOST = "(aarch64|x86_64).*-linux"

inherit systemd update-rc.d

SYSTEMD_SERVICE:${PN} = "ota-boot.service ota-update.service"
# Only the verdict is enabled: it starts the daemon (OnSuccess=) once the boot is judged.
SYSTEMD_AUTO_ENABLE:${PN} = "enable"
INITSCRIPT_NAME = "ota-update"
INITSCRIPT_PARAMS = "defaults 80"

do_install() {
    install -D -m 0755 ${S}/bin/ota-update ${D}${bindir}/ota-update
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -D -m 0644 ${S}/lib/systemd/system/ota-boot.service ${D}${systemd_system_unitdir}/ota-boot.service
        install -D -m 0644 ${S}/lib/systemd/system/ota-update.service ${D}${systemd_system_unitdir}/ota-update.service
    fi
    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', 'false', d)}; then
        install -D -m 0755 ${S}/etc/init.d/ota-update ${D}${sysconfdir}/init.d/ota-update
    fi
    install -D -m 0644 ${WORKDIR}/updater.toml ${D}${sysconfdir}/ota/updater.toml
    install -D -m 0644 ${WORKDIR}/release.pub ${D}${sysconfdir}/ota/keys/release.pub
    install -D -m 0644 ${WORKDIR}/root.json ${D}${sysconfdir}/ota/root.json
}

FILES:${PN} += "${systemd_system_unitdir}"
CONFFILES:${PN} = "${sysconfdir}/ota/updater.toml"
# A static, already stripped binary: no shared-library dependencies to find, nothing to strip.
INSANE_SKIP:${PN} += "already-stripped ldflags"
