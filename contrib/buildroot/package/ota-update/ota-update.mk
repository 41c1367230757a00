################################################################################
#
# ota-update
#
################################################################################

OTA_UPDATE_VERSION = 0.1.0
OTA_UPDATE_SITE = https://downloads.example.com/ota
OTA_UPDATE_SOURCE = ota-$(OTA_UPDATE_VERSION).tar.gz
OTA_UPDATE_LICENSE = Proprietary
# The device crate of the workspace only (its manifest is updater/Cargo.toml): the signing
# tools stay on the vendor's machines.
OTA_UPDATE_SUBDIR = updater

define OTA_UPDATE_INSTALL_CONFIG
	$(INSTALL) -D -m 0644 $(@D)/updater/examples/arm-uboot-board.toml \
		$(TARGET_DIR)/etc/ota/updater.toml
endef
OTA_UPDATE_POST_INSTALL_TARGET_HOOKS += OTA_UPDATE_INSTALL_CONFIG

define OTA_UPDATE_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(@D)/updater/sysvinit/ota-update \
		$(TARGET_DIR)/etc/init.d/S80ota-update
endef

define OTA_UPDATE_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/updater/systemd/ota-boot.service \
		$(TARGET_DIR)/usr/lib/systemd/system/ota-boot.service
	$(INSTALL) -D -m 0644 $(@D)/updater/systemd/ota-update.service \
		$(TARGET_DIR)/usr/lib/systemd/system/ota-update.service
endef

$(eval $(cargo-package))
